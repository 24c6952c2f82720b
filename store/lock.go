package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// dirLock is the store's own lock: an flock on <dir>/lock, taken before
// Badger opens, so a second process never reaches Badger's directory lock
// (whose raw error would say nothing useful). The file holds who holds it,
// for the waiting process to tell its user. flock is released by the kernel
// when the holder dies, so a killed process never leaves a stale lock.
type dirLock struct {
	f *os.File
}

const lockPollInterval = 50 * time.Millisecond

func lockPath(dir string) string { return filepath.Join(dir, "lock") }

// acquireLock takes the lock, waiting up to timeout (calling onWait once
// with the holder's description), or fails with ErrBusy naming the holder.
func acquireLock(ctx context.Context, dir string, timeout time.Duration, onWait func(string)) (*dirLock, error) {
	f, err := os.OpenFile(lockPath(dir), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	waited := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", lockPath(dir), err)
		}
		holder := readHolder(dir)
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: held by %s (waited %s)", ErrBusy, holder, timeout)
		}
		if !waited && onWait != nil {
			onWait(holder)
		}
		waited = true
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%w: held by %s: %w", ErrBusy, holder, ctx.Err())
		case <-time.After(lockPollInterval):
		}
	}
	info := fmt.Sprintf("pid %d, command %q, since %s\n", os.Getpid(), strings.Join(os.Args, " "), time.Now().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0)
	}
	return &dirLock{f: f}, nil
}

// readHolder describes the lock's holder from what it wrote in the file.
func readHolder(dir string) string {
	b, err := os.ReadFile(lockPath(dir))
	s := strings.TrimSpace(string(b))
	if err != nil || s == "" {
		return "another process (unknown pid)"
	}
	return s
}

func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	// Empty the holder info first: a waiter reading it after we let go
	// must not name us.
	_ = l.f.Truncate(0)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}
