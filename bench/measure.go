package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Sample is one timed run of one tool.
type Sample struct {
	Wall   time.Duration `json:"wall_ns"`
	CPU    time.Duration `json:"cpu_ns"`
	MaxRSS int64         `json:"max_rss_bytes"`
	// Bytes is what the tool stored (archive, repository, store growth),
	// when the scenario measures it; 0 otherwise.
	Bytes int64 `json:"bytes,omitempty"`
}

// command is one child process to time.
type command struct {
	argv []string
	env  []string // added to the environment
	dir  string
}

func cmd(argv ...string) command { return command{argv: argv} }

// shell runs a pipeline through sh -c; wait4 accounts for every process of the
// pipeline, since sh waits for them.
func shell(script string) command { return command{argv: []string{"sh", "-c", script}} }

func (c command) withEnv(kv ...string) command {
	c.env = append(append([]string(nil), c.env...), kv...)
	return c
}

func (c command) String() string { return strings.Join(c.argv, " ") }

// measure runs c and returns its wall time, CPU time (user + system, children
// included) and peak RSS, from wait4. Output is kept for the error message.
func measure(ctx context.Context, c command) (Sample, error) {
	if len(c.argv) == 0 {
		return Sample{}, fmt.Errorf("measure: empty command")
	}
	x := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	x.Env = append(os.Environ(), c.env...)
	x.Dir = c.dir
	var out bytes.Buffer
	x.Stdout = &out
	x.Stderr = &out
	start := time.Now()
	err := x.Run()
	wall := time.Since(start)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w\n%s", c, err, tail(out.String(), 2000))
	}
	s := Sample{Wall: wall}
	if ru, ok := x.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		s.MaxRSS = ru.Maxrss * 1024 // Linux reports KiB
	}
	return s, nil
}

// run runs c untimed (setup steps), failing with its output.
func run(ctx context.Context, c command) error {
	_, err := measure(ctx, c)
	return err
}

// output runs c untimed and returns its standard output.
func output(ctx context.Context, c command) (string, error) {
	x := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	x.Env = append(os.Environ(), c.env...)
	x.Dir = c.dir
	var stderr bytes.Buffer
	x.Stderr = &stderr
	b, err := x.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", c, err, tail(stderr.String(), 2000))
	}
	return string(b), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// diskUsage returns the bytes a path occupies on disk (allocated blocks, as
// du reports), so preallocated or sparse files count what they really take.
func diskUsage(path string) (int64, error) {
	var total int64
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	return total, err
}

// syncDisks flushes dirty pages so that one tool's writes are not charged to
// the next tool's time.
func syncDisks() { syscall.Sync() }

// warmCache reads the tree at root into the page cache as a warm run
// leaves it: every directory listed, every entry's inode stat'ed, every
// regular file read to its end.
func warmCache(ctx context.Context, root string) error {
	buf := make([]byte, 1<<20)
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := d.Info(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		for {
			if _, err := f.Read(buf); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	})
}
