package fstree

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xattrsUnsupported reports whether err means the file system (or the file's
// type) has no extended attributes, which is not an error for us.
func xattrsUnsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}

// readXattrs returns the extended attributes of path, not following a
// final symlink. scratch is reused between calls to avoid an allocation for
// the common case of a file without attributes.
func readXattrs(path string, scratch []byte) (map[string][]byte, error) {
	attrs, err := collectXattrs(scratch,
		func(dest []byte) (int, error) { return unix.Llistxattr(path, dest) },
		func(name string, dest []byte) (int, error) { return unix.Lgetxattr(path, name, dest) })
	if err != nil {
		return nil, fmt.Errorf("xattrs of %s: %w", path, err)
	}
	return attrs, nil
}

// readXattrsAt returns the extended attributes of name in the directory
// dirFd (whose path is path), not following a final symlink. It lists them
// with listxattrat(2) (Linux 6.13), which spares the kernel a lookup of the
// whole path for the common case of no attributes, and falls back to
// llistxattr(2) on older kernels.
func readXattrsAt(dirFd int, name, path string, scratch []byte) (map[string][]byte, error) {
	if noListxattrat.Load() {
		return readXattrs(path, scratch)
	}
	attrs, err := collectXattrs(scratch,
		func(dest []byte) (int, error) { return listxattrat(dirFd, name, dest) },
		func(name string, dest []byte) (int, error) { return unix.Lgetxattr(path, name, dest) })
	if errors.Is(err, unix.ENOSYS) {
		noListxattrat.Store(true)
		return readXattrs(path, scratch)
	}
	if err != nil {
		return nil, fmt.Errorf("xattrs of %s: %w", path, err)
	}
	return attrs, nil
}

// noListxattrat is set once the kernel said it has no listxattrat.
var noListxattrat atomic.Bool

func listxattrat(dirFd int, name string, dest []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var d unsafe.Pointer
	if len(dest) > 0 {
		d = unsafe.Pointer(&dest[0])
	}
	n, _, errno := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirFd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(d), uintptr(len(dest)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// readFdXattrs returns the extended attributes of an open file.
func readFdXattrs(fd int, scratch []byte) (map[string][]byte, error) {
	attrs, err := collectXattrs(scratch,
		func(dest []byte) (int, error) { return unix.Flistxattr(fd, dest) },
		func(name string, dest []byte) (int, error) { return unix.Fgetxattr(fd, name, dest) })
	if err != nil {
		return nil, fmt.Errorf("xattrs: %w", err)
	}
	return attrs, nil
}

// collectXattrs lists attribute names with list and reads each with get;
// a file system without xattrs gives none, and an attribute removed
// between the two calls is skipped.
func collectXattrs(scratch []byte, list func([]byte) (int, error), get func(string, []byte) (int, error)) (map[string][]byte, error) {
	if len(scratch) == 0 {
		// An empty buffer would ask for the size instead of the names.
		scratch = make([]byte, 1024)
	}
	n, err := list(scratch)
	if errors.Is(err, unix.ERANGE) {
		n, err = list(nil)
		if err == nil {
			scratch = make([]byte, n)
			n, err = list(scratch)
		}
	}
	if err != nil {
		if xattrsUnsupported(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	attrs := make(map[string][]byte)
	for _, name := range bytes.Split(scratch[:n], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		value, err := getXattr(string(name), get)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listed
		}
		if err != nil {
			return nil, err
		}
		attrs[string(name)] = value
	}
	if len(attrs) == 0 {
		return nil, nil
	}
	return attrs, nil
}

func getXattr(name string, get func(string, []byte) (int, error)) ([]byte, error) {
	for {
		n, err := get(name, nil)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", name, err)
		}
		value := make([]byte, n)
		m, err := get(name, value)
		if errors.Is(err, unix.ERANGE) {
			continue // grew since measured
		}
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", name, err)
		}
		return value[:m], nil
	}
}

// fdXattrNames lists the extended attribute names of an open file.
func fdXattrNames(fd int) ([]string, error) {
	n, err := unix.Flistxattr(fd, nil)
	if err != nil || n == 0 {
		if err != nil && xattrsUnsupported(err) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, n)
	n, err = unix.Flistxattr(fd, buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) > 0 {
			names = append(names, string(name))
		}
	}
	return names, nil
}

// setFdXattrs makes the attributes of an open file exactly attrs: it sets
// every one of attrs and, when prune is set, removes the others.
func setFdXattrs(fd int, attrs map[string][]byte, prune bool) error {
	if prune {
		names, err := fdXattrNames(fd)
		if err != nil {
			return fmt.Errorf("list xattrs: %w", err)
		}
		for _, name := range names {
			if _, keep := attrs[name]; keep {
				continue
			}
			if err := unix.Fremovexattr(fd, name); err != nil && !errors.Is(err, unix.ENODATA) {
				return fmt.Errorf("remove xattr %s: %w", name, err)
			}
		}
	}
	for name, value := range attrs {
		if err := unix.Fsetxattr(fd, name, value, 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}
