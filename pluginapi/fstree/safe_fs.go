package fstree

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// beneath is how every directory of a restore target is opened: the path
// must stay beneath the directory it is resolved from and may not cross a
// symlink (nor a /proc magic link), so a symlink planted in the target, or
// created by an earlier entry, can never redirect a write outside it.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openDirBeneath opens the directory rel (slash-separated, "" not allowed)
// beneath the directory open as dirFd.
func openDirBeneath(dirFd int, rel string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: beneath,
	}
	p, err := unix.BytePtrFromString(rel)
	if err != nil {
		return -1, fmt.Errorf("open directory %q: %w", rel, err)
	}
	for {
		fd, err := rawOpenat2(dirFd, p, &how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			// EAGAIN: a rename raced with the lookup (our own workers
			// rename in place); the kernel asks us to try again.
			continue
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENOTDIR):
			return -1, fmt.Errorf("%w: %q is not a directory beneath the target (%v)", pluginapi.ErrUnsafePath, rel, err)
		default:
			return -1, fmt.Errorf("open directory %q: %w", rel, err)
		}
	}
}

// removeAllAt removes name in the directory dirFd and, if it is a directory,
// everything beneath it, never following a symlink.
func removeAllAt(dirFd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirFd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	}
	fd, err := openDirBeneath(dirFd, name)
	if err != nil {
		return err
	}
	// Without root, a read-only directory cannot be emptied; making it
	// writable first is what rm -rf users expect.
	if st.Mode&0o700 != 0o700 {
		_ = unix.Fchmod(fd, st.Mode&0o7777|0o700)
	}
	names, err := readDirNames(fd)
	if err == nil {
		for _, child := range names {
			if err = removeAllAt(fd, child); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirFd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// emptyDir removes everything in the directory open as dirFd (not the
// directory itself), never following a symlink nor leaving it. It lists
// through a fresh open of "." so the offset of dirFd does not matter.
func emptyDir(dirFd int) error {
	fd, err := unix.Openat(dirFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	names, err := readDirNames(fd)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := removeAllAt(dirFd, name); err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
	}
	return nil
}

// removeDirIfSame removes the empty directory dir if it is still the inode
// want describes (not something moved to its name since).
func removeDirIfSame(dir string, want *unix.Stat_t) error {
	parent, err := unix.Open(filepath.Dir(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	name := filepath.Base(dir)
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Dev != want.Dev || st.Ino != want.Ino {
		return nil
	}
	if err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// futimens sets the modification time of an open file to mtimeNs and leaves
// its access time alone. x/sys/unix has no nanosecond futimens, so this is
// utimensat(fd, NULL, ...), which is what libc's futimens does; a raw call,
// like those below.
func futimens(fd int, mtimeNs int64) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtimeNs)}
	_, _, errno := unix.RawSyscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// lutimensAt sets the modification time of name in dirFd without following
// it if it is a symlink.
func lutimensAt(dirFd int, name string, mtimeNs int64) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtimeNs)}
	return unix.UtimesNanoAt(dirFd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// The raw* calls below are the system calls of writing a file or making a
// directory of a restore, made without telling the Go scheduler
// (syscall.RawSyscall): each is short (page-cache work, no device wait),
// and for a call the scheduler knows of, one that took over 20 µs (most
// creations on a loaded machine) had its P taken away by sysmon and handed
// to another thread, to be won back afterwards. A restore of venv-full
// made ~43,000 nanosleep (sysmon polling every 20 µs while it kept finding
// such calls) and ~7,600 futex calls that way, on a machine of 2 cores.
// The price: a goroutine in a raw call keeps its P, so the workers making
// them must not outnumber GOMAXPROCS by much (see DefaultWorkers), and on
// a network file system, where a write or close may wait for the server,
// the P waits as long (a restore target is local in practice).

// rawOpenat is openat(2) of name in dirFd.
func rawOpenat(dirFd int, name string, flags int, mode uint32) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirFd), uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(mode), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(r), nil
	}
}

// rawOpenat2 is openat2(2) of the NUL-terminated path p in dirFd.
func rawOpenat2(dirFd int, p *byte, how *unix.OpenHow) (int, error) {
	r, _, errno := unix.RawSyscall6(unix.SYS_OPENAT2, uintptr(dirFd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(how)), unsafe.Sizeof(*how), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// rawMkdirat is mkdirat(2) of name in dirFd.
func rawMkdirat(dirFd int, name string, mode uint32) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_MKDIRAT, uintptr(dirFd), uintptr(unsafe.Pointer(p)), uintptr(mode))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// rawWriteAll writes all of b to fd, a regular file being restored.
func rawWriteAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}
