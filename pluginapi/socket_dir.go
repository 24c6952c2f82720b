package pluginapi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// socketDirPrefix starts the name of every plugin socket directory, which
// is followed by the host's PID and a random suffix: the PID lets a later
// host tell a directory whose owner was killed (SIGKILL runs no cleanup)
// from one in use.
const socketDirPrefix = "ptest-snap-engine-"

// staleSocketDirAge is how old a dead host's socket directory must be
// before another host removes it. The age guards against a host in
// another PID namespace sharing this temporary directory, whose PID means
// nothing here: its directories are removed only once it has run this
// long without launching an engine.
const staleSocketDirAge = time.Hour

// makeSocketDir makes a directory only this user can enter, named for this
// process, for one plugin's socket.
func makeSocketDir() (string, error) {
	return os.MkdirTemp("", fmt.Sprintf("%s%d-", socketDirPrefix, os.Getpid()))
}

// sweepSocketDirs removes the socket directories in dir left by hosts of
// this user that are gone: named with a PID that no process has, and not
// touched for staleSocketDirAge. It is best effort: what it cannot read
// or remove it leaves.
func sweepSocketDirs(dir string, now time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	uid := os.Getuid()
	for _, e := range ents {
		pid, ok := socketDirPID(e.Name())
		if !ok || !e.IsDir() || pid == os.Getpid() {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < staleSocketDirAge {
			continue
		}
		if st, ok := info.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive (or not ours to signal): maybe in use
		}
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// socketDirPID returns the host PID in a socket directory's name.
func socketDirPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, socketDirPrefix)
	if !ok {
		return 0, false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}
