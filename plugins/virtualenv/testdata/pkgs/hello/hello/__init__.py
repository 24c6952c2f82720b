import sys


def main():
    print("hello from", sys.prefix)
    return 0
