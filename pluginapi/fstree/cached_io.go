package fstree

import (
	"errors"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// System calls that stay on the goroutine's P when they cannot block.
//
// A system call made the usual way (unix.Syscall) tells the Go scheduler
// it may block: its P can be handed to another thread meanwhile. In a
// create of venv-full the readers made ~180,000 such calls, each a few
// microseconds long, and the runtime's monitor thread (sysmon), finding
// Ps in system calls on every 20 µs round, kept handing them off (futex
// wake-ups of other threads) and never slowed down its rounds: ~57,000
// nanosleeps per create on the plugin's monitor thread alone, on a
// machine where every system call and wake-up is costly.
//
// A raw call (unix.RawSyscall) keeps the P, which is right when the call
// cannot wait for a disk: reading from the page cache with RWF_NOWAIT
// (which fails with EAGAIN instead of waiting), opening with
// RESOLVE_CACHED (EAGAIN when the lookup needs the disk), fstat and close
// of a file already open. Whatever would block falls back to the usual
// call.

// resolveCached is openat2's RESOLVE_CACHED (Linux 5.12).
const resolveCached = 0x20

var (
	// noCachedOpen and noNowaitRead are set once the kernel or the file
	// system turns out not to support RESOLVE_CACHED or RWF_NOWAIT.
	noCachedOpen atomic.Bool
	noNowaitRead atomic.Bool
)

// openCached opens name in dirFd (a path relative to it, or an absolute
// path and unix.AT_FDCWD) read-only (with O_NOFOLLOW and O_CLOEXEC),
// without giving up the P when the kernel can do it from its caches.
func openCached(dirFd int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if fd, ok, err := openat2Cached(dirFd, name, flags); ok {
		return fd, err
	}
	return unix.Openat(dirFd, name, flags, 0)
}

// openat2Cached opens name in dirFd with openat2 and RESOLVE_CACHED as a
// raw call. ok is false when the caller must open it the usual, blocking
// way: the lookup needs the disk, or the kernel lacks openat2 or
// RESOLVE_CACHED (then noCachedOpen is set and no raw open is tried again).
func openat2Cached(dirFd int, name string, flags uint64) (fd int, ok bool, err error) {
	if noCachedOpen.Load() {
		return -1, false, nil
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, true, err
	}
	how := unix.OpenHow{Flags: flags, Resolve: resolveCached}
	r, err := rawOpenat2(dirFd, p, &how)
	runtime.KeepAlive(p)
	switch err {
	case nil:
		return r, true, nil
	case unix.EAGAIN, unix.EINTR:
		// Not in the caches: the usual, blocking way.
		return -1, false, nil
	case unix.ENOSYS, unix.EINVAL, unix.EPERM:
		// No openat2, or no RESOLVE_CACHED (or a seccomp filter).
		noCachedOpen.Store(true)
		return -1, false, nil
	default:
		return -1, true, err
	}
}

// preadCached reads from fd at off into buf like pread(2); it keeps the P
// while the bytes come from the page cache. nowait reports that the read
// was served from the cache alone: a short read then does not mean the end
// of the file (only part of the range was cached).
func preadCached(fd int, buf []byte, off int64) (n int, nowait bool, err error) {
	if len(buf) > 0 && !noNowaitRead.Load() {
		iov := unix.Iovec{Base: &buf[0]}
		iov.SetLen(len(buf))
		r, _, errno := unix.RawSyscall6(unix.SYS_PREADV2, uintptr(fd), uintptr(unsafe.Pointer(&iov)), 1,
			uintptr(off), 0, unix.RWF_NOWAIT)
		runtime.KeepAlive(buf)
		switch errno {
		case 0:
			if int(r) > 0 {
				return int(r), true, nil
			}
			// 0: the end of the file, or nothing cached; ask again.
		case unix.EAGAIN, unix.EINTR:
		case unix.ENOSYS, unix.EOPNOTSUPP, unix.EINVAL:
			noNowaitRead.Store(true)
		default:
			return 0, false, errno
		}
	}
	for {
		n, err := unix.Pread(fd, buf, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, false, err
	}
}

// fstatRaw is fstat(2) of an open file, which never waits for a disk.
func fstatRaw(fd int, st *unix.Stat_t) error {
	_, _, errno := unix.RawSyscall(unix.SYS_FSTAT, uintptr(fd), uintptr(unsafe.Pointer(st)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// closeRaw is close(2) of a file or directory on a local file system,
// which never waits for a disk (a restored file's data is written back
// later). It is not retried on EINTR: the descriptor is gone either way on
// Linux. Callers closing what they only read ignore its error.
func closeRaw(fd int) error {
	_, _, errno := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// openDirCached opens the directory name in the directory open as dirFd
// (with O_NOFOLLOW and O_CLOEXEC), without giving up the P when the kernel
// can do it from its caches, as it nearly always can for a directory the
// walk has just lstat'ed.
func openDirCached(dirFd int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if fd, ok, err := openat2Cached(dirFd, name, flags); ok {
		return fd, err
	}
	for {
		fd, err := unix.Openat(dirFd, name, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
