package fstree

import (
	"context"
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

	for _, failAfter := range []int{1, 3, 20} {
		err := Capture(context.Background(), root, CaptureOptions{Stream: "rootfs"}, &memWriter{failAfter: failAfter})
		require.ErrorIs(t, err, errWriterStop)
		assert.Equal(t, before, openFDs(t), "capture stopped after %d entries", failAfter)
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
		_, err := c.openDir(name, dirFrom{dir: h, name: name})
		assert.ErrorIs(t, err, pluginapi.ErrUnsafePath, name)
	}
	sub, err := c.openDir("real", dirFrom{dir: h, name: "real"})
	require.NoError(t, err)
	require.NoError(t, unix.Close(sub))
	assert.Equal(t, before, openFDs(t), "the parent is closed after its last subdirectory")

	// One more than counted is opened by its path, not through the
	// closed descriptor.
	sub, err = c.openDir("real", dirFrom{dir: h, name: "real"})
	require.NoError(t, err)
	var st, want unix.Stat_t
	require.NoError(t, unix.Fstat(sub, &st))
	require.NoError(t, unix.Close(sub))
	require.NoError(t, unix.Lstat(filepath.Join(root, "real"), &want))
	assert.Equal(t, want.Ino, st.Ino)
	c.closeDirs()
	assert.Equal(t, before, openFDs(t))
}

// TestReadDirEntriesShortIsEnd: a directory whose entries take many
// getdents64 buffers, on every file system this test's temporary
// directory may be, is listed whole whether a short read is taken for its
// end or not, and a capture lists every entry of it and of its
// subdirectories.
func TestReadDirEntriesShortIsEnd(t *testing.T) {
	root := t.TempDir()
	big := filepath.Join(root, "big")
	require.NoError(t, os.Mkdir(big, 0o755))
	var want []string
	for i := range 1500 {
		// Names of 200 bytes: ~30 records fill a 32 KiB buffer.
		name := fmt.Sprintf("%04d-%0196d", i, 0)
		writeFile(t, filepath.Join(big, name), "", 0o644)
		want = append(want, name)
	}
	for i := range 3 {
		sub := filepath.Join(big, fmt.Sprintf("sub%d", i))
		require.NoError(t, os.Mkdir(sub, 0o755))
		writeFile(t, filepath.Join(sub, "f"), "x", 0o644)
		want = append(want, fmt.Sprintf("sub%d", i))
	}
	fd, err := unix.Open(big, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	for _, short := range []bool{false, true} {
		_, err := unix.Seek(fd, 0, 0)
		require.NoError(t, err)
		ents, err := readDirEntriesUntil(fd, short)
		require.NoError(t, err)
		var names []string
		for _, de := range ents {
			names = append(names, de.name)
		}
		assert.ElementsMatch(t, want, names, "short is end: %v", short)
	}
	w := capture(t, root, CaptureOptions{})
	assert.Len(t, w.recs, 1+len(want)+3)
	for i := range 3 {
		find(t, w.recs, fmt.Sprintf("big/sub%d/f", i))
	}
}

// TestFillsDirents: only ext4 and tmpfs are trusted to fill the buffer.
func TestFillsDirents(t *testing.T) {
	assert.True(t, fillsDirents(0xEF53), "ext4")
	assert.True(t, fillsDirents(0x01021994), "tmpfs")
	for name, magic := range map[string]int64{"fuse": 0x65735546, "nfs": 0x6969, "overlayfs": 0x794c7630, "btrfs": 0x9123683E, "xfs": 0x58465342} {
		assert.False(t, fillsDirents(magic), name)
	}
}
