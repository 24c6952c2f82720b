package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// countingEngine wraps an engine and counts what its captures send, so a
// test can prove which files were read.
type countingEngine struct {
	pluginapi.Engine
	bodies    atomic.Int64 // file entries sent with a body
	unchanged atomic.Int64 // file entries sent as Unchanged
	// unchangedDirs counts directories sent as Unchanged (whole subtrees).
	unchangedDirs atomic.Int64
	// onEntry, if set, is called before each entry is passed on; an error
	// ends the capture.
	onEntry func(n int64) error
	entries atomic.Int64
}

func (c *countingEngine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	return c.Engine.Capture(ctx, req, &captureCounter{CaptureWriter: w, c: c})
}

type captureCounter struct {
	pluginapi.CaptureWriter
	c *countingEngine
}

func (w *captureCounter) WriteEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	n := w.c.entries.Add(1)
	if w.c.onEntry != nil {
		if err := w.c.onEntry(n); err != nil {
			return err
		}
	}
	if e.Type == pluginapi.TypeDir && e.Unchanged {
		w.c.unchangedDirs.Add(1)
	}
	if e.Type == pluginapi.TypeFile {
		if e.Unchanged {
			w.c.unchanged.Add(1)
		} else if body != nil {
			w.c.bodies.Add(1)
		}
	}
	return w.CaptureWriter.WriteEntry(ctx, e, body)
}

// openManager opens a Manager on a fresh store with the given engines.
func openManager(t testing.TB, engines map[string]pluginapi.Engine) *Manager {
	t.Helper()
	return openManagerAt(t, t.TempDir(), engines)
}

func openManagerAt(t testing.TB, dir string, engines map[string]pluginapi.Engine) *Manager {
	t.Helper()
	m, err := Open(context.Background(), Options{
		StoreDir: dir,
		Engines: func(ctx context.Context, name string) (pluginapi.Engine, error) {
			if e, ok := engines[name]; ok {
				return e, nil
			}
			return nil, ErrEngineNotFound
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// fixedTime gives test files distinct nanosecond mtimes.
var fixedTime = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func writeFile(t testing.TB, p string, data []byte, mode os.FileMode, mtime time.Time) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, data, 0o600))
	require.NoError(t, os.Chmod(p, mode))
	require.NoError(t, os.Chtimes(p, mtime, mtime))
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// makeTree builds a tree with every kind of entry under root.
func makeTree(t testing.TB, root string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(root, 0o755))
	writeFile(t, filepath.Join(root, "a.txt"), []byte("hello\n"), 0o644, fixedTime)
	writeFile(t, filepath.Join(root, "empty"), nil, 0o600, fixedTime.Add(1))
	writeFile(t, filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\necho hi\n"), 0o755, fixedTime.Add(2))
	writeFile(t, filepath.Join(root, "bin", "setuid"), []byte("x"), 0o4750, fixedTime.Add(3))
	// Several chunks, and a compressible tail.
	big := append(randBytes(4<<20+12345), bytes.Repeat([]byte("abc"), 100000)...)
	writeFile(t, filepath.Join(root, "data", "big.bin"), big, 0o640, fixedTime.Add(4))
	// Identical small files share a chunk.
	for _, n := range []string{"x/__init__.py", "y/__init__.py", "z/deep/er/__init__.py"} {
		writeFile(t, filepath.Join(root, "pkg", n), []byte("# same\n"), 0o644, fixedTime.Add(5))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "emptydir", "nested-empty"), 0o750))
	require.NoError(t, os.Symlink("a.txt", filepath.Join(root, "rel-link")))
	require.NoError(t, os.Symlink("/etc/hostname", filepath.Join(root, "abs-link")))
	require.NoError(t, os.Symlink("../nowhere/at/all", filepath.Join(root, "bin", "dangling")))
	require.NoError(t, os.Symlink("bin", filepath.Join(root, "dirlink")))
	require.NoError(t, os.Link(filepath.Join(root, "bin", "tool"), filepath.Join(root, "tool-hardlink")))
	require.NoError(t, os.Link(filepath.Join(root, "bin", "tool"), filepath.Join(root, "data", "tool-2")))
	// An xattr, where the file system allows it.
	if err := unix.Setxattr(filepath.Join(root, "a.txt"), "user.ptest", []byte("v1"), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
		require.NoError(t, err)
	}
	// Directory mtimes last, deepest first.
	var dirs []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != root {
			dirs = append(dirs, p)
		}
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for i, d := range dirs {
		tm := fixedTime.Add(time.Duration(1000 + i))
		require.NoError(t, os.Chtimes(d, tm, tm))
	}
}

// treeEntry is what compareTrees looks at.
type treeEntry struct {
	Mode    fs.FileMode
	MtimeNs int64
	Link    string
	Data    string // sha of content for files
	Xattr   string
	LinkSet string // other names of the same inode, for files
}

// scanTree describes every entry under root (root excluded).
func scanTree(t testing.TB, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	inodes := map[uint64][]string{}
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(p, &st))
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		e := treeEntry{Mode: fi.Mode(), MtimeNs: st.Mtim.Nano()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Link, err = os.Readlink(p)
			require.NoError(t, err)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			e.Data = string(b)
			inodes[st.Ino] = append(inodes[st.Ino], rel)
			buf := make([]byte, 256)
			if n, err := unix.Lgetxattr(p, "user.ptest", buf); err == nil {
				e.Xattr = string(buf[:n])
			}
		}
		out[rel] = e
		return nil
	}))
	for _, names := range inodes {
		sort.Strings(names)
		for _, n := range names {
			e := out[n]
			e.LinkSet = filepathJoinAll(names)
			out[n] = e
		}
	}
	return out
}

func filepathJoinAll(names []string) string {
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(0)
	}
	return b.String()
}

// requireSameTree fails unless the two trees are equal in every respect a
// restore promises.
func requireSameTree(t testing.TB, want, got string) {
	t.Helper()
	w, g := scanTree(t, want), scanTree(t, got)
	for p, we := range w {
		ge, ok := g[p]
		if !ok {
			t.Errorf("%s: missing", p)
			continue
		}
		if we != ge {
			t.Errorf("%s: differs:\n want mode=%v mtime=%d link=%q len=%d xattr=%q links=%q\n got  mode=%v mtime=%d link=%q len=%d xattr=%q links=%q",
				p, we.Mode, we.MtimeNs, we.Link, len(we.Data), we.Xattr, we.LinkSet, ge.Mode, ge.MtimeNs, ge.Link, len(ge.Data), ge.Xattr, ge.LinkSet)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: extra", p)
		}
	}
}

func inode(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}
