package fstree

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// deepTree makes a tree of nested directories, several per level, with a
// file in each, so that directories stay open for their subdirectories
// while others are listed.
func deepTree(t *testing.T) string {
	root := t.TempDir()
	var fill func(dir string, depth int)
	fill = func(dir string, depth int) {
		writeFile(t, filepath.Join(dir, "f.py"), dir, 0o644)
		if depth == 0 {
			return
		}
		for i := range 3 {
			sub := filepath.Join(dir, fmt.Sprintf("d%d", i))
			require.NoError(t, os.Mkdir(sub, 0o755))
			fill(sub, depth-1)
		}
	}
	fill(root, 4)
	return root
}

// TestCaptureClosesDirectories: every directory a capture opens (each is
// kept open until its subdirectories are opened from it) is closed when
// the capture returns, whether it ran to the end, with unchanged
// subtrees, or stopped early.
func TestCaptureClosesDirectories(t *testing.T) {
	root := deepTree(t)
	before := openFDs(t)

	first := capture(t, root, CaptureOptions{})
	assert.Equal(t, before, openFDs(t), "full capture")

	parent := pluginapi.ParentIndex{"rootfs": {}}
	for _, r := range first.recs {
		e := pluginapi.IndexEntry{Size: r.e.Size, MtimeNs: r.e.MtimeNs, CtimeNs: r.e.CtimeNs, Inode: r.e.Inode}
		switch r.e.Type {
		case pluginapi.TypeDir:
			e.Type, e.Size = pluginapi.TypeDir, 0
		case pluginapi.TypeSymlink:
			e.Type = pluginapi.TypeSymlink
		}
		parent["rootfs"][r.e.Path] = e
	}
	writeFile(t, filepath.Join(root, "d1", "d2", "f.py"), "changed", 0o644)
	second := capture(t, root, CaptureOptions{Parent: parent, UnchangedDirs: true})
	assert.Equal(t, before, openFDs(t), "capture with unchanged subtrees")
	assert.True(t, find(t, second.recs, "d0").e.Unchanged)
	assert.False(t, find(t, second.recs, "d1").e.Unchanged)
	assert.Equal(t, []byte("changed"), find(t, second.recs, "d1/d2/f.py").body)

	// An IndexOnly listing opens subdirectories ahead (openSubdir).
	third := capture(t, root, CaptureOptions{Parent: parent, UnchangedDirs: true, IndexOnly: true})
	assert.Equal(t, before, openFDs(t), "index-only capture with unchanged subtrees")
	assert.Equal(t, paths(second.recs), paths(third.recs))

	for _, failAfter := range []int{1, 3, 20} {
		for _, indexOnly := range []bool{false, true} {
			err := Capture(context.Background(), root, CaptureOptions{Stream: "rootfs", IndexOnly: indexOnly}, &memWriter{failAfter: failAfter})
			require.ErrorIs(t, err, errWriterStop)
			assert.Equal(t, before, openFDs(t), "capture (index only: %v) stopped after %d entries", indexOnly, failAfter)
		}
	}
}

// TestOpenDirRefusesSymlinkAndFile: a directory opened from its parent's
// descriptor that is now a symlink (even to a directory) or a file is
// refused with ErrUnsafePath, as openat2's RESOLVE_NO_SYMLINKS refuses it
// by path; the parent is closed after as many opens as it has
// subdirectories, either way.
func TestOpenDirRefusesSymlinkAndFile(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "real"), 0o755))
	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(root, "link")))
	writeFile(t, filepath.Join(root, "file"), "x", 0o644)
	rootFd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(rootFd)
	before := openFDs(t)

	c := &capturer{rootFd: rootFd}
	fd, err := unix.Dup(rootFd)
	require.NoError(t, err)
	h := c.keepDir(fd, 3)
	for _, name := range []string{"link", "file"} {
		_, err := c.openDir(name, &dirFrom{dir: h, name: name})
		assert.ErrorIs(t, err, pluginapi.ErrUnsafePath, name)
	}
	sub, err := c.openDir("real", &dirFrom{dir: h, name: "real"})
	require.NoError(t, err)
	require.NoError(t, unix.Close(sub))
	assert.Equal(t, before, openFDs(t), "the parent is closed after its last subdirectory")

	// One more than counted is opened by its path, not through the
	// closed descriptor.
	sub, err = c.openDir("real", &dirFrom{dir: h, name: "real"})
	require.NoError(t, err)
	var st, want unix.Stat_t
	require.NoError(t, unix.Fstat(sub, &st))
	require.NoError(t, unix.Close(sub))
	require.NoError(t, unix.Lstat(filepath.Join(root, "real"), &want))
	assert.Equal(t, want.Ino, st.Ino)
	c.closeDirs()
	assert.Equal(t, before, openFDs(t))
}

// TestOpenSubdir: a directory is opened as its parent is listed, with the
// statistics of an lstat of it; a symlink to a directory, a file, a name
// that is gone, or a directory past maxDirsOpenAhead are not (the lstat
// then decides, as without opening ahead). A directory opened ahead is
// what its listing takes, and closeDirs closes one never listed.
func TestOpenSubdir(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "real"), 0o755))
	require.NoError(t, os.Symlink("real", filepath.Join(root, "link")))
	writeFile(t, filepath.Join(root, "file"), "x", 0o644)
	rootFd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(rootFd)
	before := openFDs(t)
	cname := func(s string) []byte { return append([]byte(s), 0) }

	c := &capturer{rootFd: rootFd}
	var st, want unix.Stat_t
	for _, name := range []string{"link", "file", "gone"} {
		var k child
		assert.False(t, c.openSubdir(rootFd, cname(name), &k, &st), name)
		assert.False(t, k.dirOpen, name)
	}
	assert.Equal(t, before, openFDs(t))

	var k child
	require.True(t, c.openSubdir(rootFd, cname("real"), &k, &st))
	require.True(t, k.dirOpen)
	require.NoError(t, unix.Lstat(filepath.Join(root, "real"), &want))
	want.Atim, st.Atim = unix.Timespec{}, unix.Timespec{} // listing it may move the atime
	assert.Equal(t, want, st)
	assert.EqualValues(t, 1, c.openAhead.Load())

	// Its job's listing takes the descriptor as it is.
	j := &dirJob{rel: "real", from: dirFrom{name: "real", fd: int(k.dirFd), open: true}}
	fd, err := c.openDir("real", &j.from)
	require.NoError(t, err)
	assert.Equal(t, int(k.dirFd), fd)
	assert.False(t, j.from.open)
	assert.Zero(t, c.openAhead.Load())
	require.NoError(t, unix.Close(fd))

	// One never listed is closed at the end.
	var k2 child
	require.True(t, c.openSubdir(rootFd, cname("real"), &k2, &st))
	c.openJobs = append(c.openJobs, &dirJob{from: dirFrom{fd: int(k2.dirFd), open: true}})
	c.closeDirs()
	assert.Equal(t, before, openFDs(t))

	c.openAhead.Store(maxDirsOpenAhead)
	var k3 child
	assert.False(t, c.openSubdir(rootFd, cname("real"), &k3, &st), "past maxDirsOpenAhead")
	assert.Equal(t, before, openFDs(t))
}

// TestCaptureWideTreeOrder: a tree with more directories than the readers
// may list ahead of the walk (maxAheadDirs) is sent whole, in pre-order
// with siblings sorted, and every directory is closed after — the walk
// lists the directories the held-back readers have not started itself.
// With a parent, an unchanged subtree is one entry and a changed file deep
// in another is found.
func TestCaptureWideTreeOrder(t *testing.T) {
	root := t.TempDir()
	var want []string
	for i := range 40 {
		top := fmt.Sprintf("p%02d", i)
		want = append(want, top)
		for k := range 16 {
			sub := fmt.Sprintf("%s/s%02d", top, k)
			require.NoError(t, os.MkdirAll(filepath.Join(root, sub, "leaf"), 0o755))
			writeFile(t, filepath.Join(root, sub, "a.py"), sub, 0o644)
			writeFile(t, filepath.Join(root, sub, "leaf", "b.py"), sub, 0o644)
			want = append(want, sub, sub+"/a.py", sub+"/leaf", sub+"/leaf/b.py")
		}
	}
	require.Greater(t, 40*16*2, maxAheadDirs)
	before := openFDs(t)

	first := capture(t, root, CaptureOptions{})
	assert.Equal(t, want, paths(first.recs))
	assert.Equal(t, before, openFDs(t))

	parent := pluginapi.ParentIndex{"rootfs": {}}
	for _, r := range first.recs {
		e := pluginapi.IndexEntry{Size: r.e.Size, MtimeNs: r.e.MtimeNs, CtimeNs: r.e.CtimeNs, Inode: r.e.Inode}
		if r.e.Type == pluginapi.TypeDir {
			e.Type, e.Size = pluginapi.TypeDir, 0
		}
		parent["rootfs"][r.e.Path] = e
	}
	writeFile(t, filepath.Join(root, "p37", "s09", "leaf", "b.py"), "changed", 0o644)
	for _, prints := range []bool{false, true} {
		second := capture(t, root, withParent(t, CaptureOptions{UnchangedDirs: true}, parent, prints))
		assert.Equal(t, before, openFDs(t))
		assert.True(t, find(t, second.recs, "p00").e.Unchanged)
		assert.False(t, find(t, second.recs, "p37").e.Unchanged)
		assert.True(t, find(t, second.recs, "p37/s08").e.Unchanged)
		assert.Equal(t, []byte("changed"), find(t, second.recs, "p37/s09/leaf/b.py").body)
		assert.Len(t, second.recs, 40+15+4, "prints %v", prints)

		// An IndexOnly listing (subdirectories opened ahead) finds the
		// same, and one stopped early closes every directory it
		// opened ahead, listed or not.
		third := capture(t, root, withParent(t, CaptureOptions{UnchangedDirs: true, IndexOnly: true}, parent, prints))
		assert.Equal(t, before, openFDs(t))
		assert.Equal(t, paths(second.recs), paths(third.recs))
		for _, failAfter := range []int{1, 2} {
			err := Capture(context.Background(), root, CaptureOptions{Stream: "rootfs", IndexOnly: true}, &memWriter{failAfter: failAfter})
			require.ErrorIs(t, err, errWriterStop)
			assert.Equal(t, before, openFDs(t), "stopped after %d entries", failAfter)
		}
	}
}

// TestCapturePrelude: the prelude runs before the stream begins (an
// engine's metadata comes first), and its error ends the capture as it is,
// with every directory the walk had opened meanwhile closed.
func TestCapturePrelude(t *testing.T) {
	root := deepTree(t)
	before := openFDs(t)

	w := &memWriter{}
	opts := CaptureOptions{Stream: "rootfs", Prelude: func(ctx context.Context) error {
		assert.Empty(t, w.streams, "prelude before BeginStream")
		return w.WriteMetadata(ctx, pluginapi.Metadata{Version: 1})
	}}
	require.NoError(t, Capture(context.Background(), root, opts, w))
	assert.Len(t, w.meta, 1)
	assert.Equal(t, []string{"rootfs"}, w.streams)
	assert.Equal(t, paths(capture(t, root, CaptureOptions{}).recs), paths(w.recs))

	errPrelude := errors.New("no metadata")
	w = &memWriter{}
	opts.Prelude = func(context.Context) error { return errPrelude }
	err := Capture(context.Background(), root, opts, w)
	assert.Same(t, errPrelude, err)
	assert.Empty(t, w.streams)
	assert.Empty(t, w.recs)
	assert.Equal(t, before, openFDs(t))
}

// TestReadOpenDirRawOrNot: a directory listed as an IndexOnly capture lists
// it (raw system calls, subdirectories opened as they are listed) and the
// usual way gives the same children.
func TestReadOpenDirRawOrNot(t *testing.T) {
	root := deepTree(t)
	writeFile(t, filepath.Join(root, "d1", "g.txt"), "g", 0o600)
	require.NoError(t, os.Symlink("g.txt", filepath.Join(root, "d1", "link")))
	for _, rel := range []string{"", "d1", "d2/d0"} {
		list := func(indexOnly bool) []child {
			fd, err := unix.Open(filepath.Join(root, rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			require.NoError(t, err)
			defer unix.Close(fd)
			c := &capturer{prefix: root + "/", opts: CaptureOptions{Stream: "rootfs", IndexOnly: indexOnly}, rawList: indexOnly}
			kids, excluded, err := c.readOpenDir(fd, rel, newListScratch())
			require.NoError(t, err)
			assert.False(t, excluded)
			for i := range kids {
				isDir := kids[i].st.Mode&unix.S_IFMT == unix.S_IFDIR
				assert.Equal(t, isDir && indexOnly, kids[i].dirOpen, kids[i].rel)
			}
			c.closeOpened(kids)
			assert.Zero(t, c.openAhead.Load())
			for i := range kids {
				kids[i].dirFd = 0
			}
			return kids
		}
		raw, usual := list(true), list(false)
		assert.Equal(t, usual, raw, rel)
		assert.NotEmpty(t, raw, rel)
	}
}
