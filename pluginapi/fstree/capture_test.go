package fstree

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// buildTree makes a tree with every kind of entry Capture handles and
// returns its root.
func buildTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+7) // streamed, not read ahead
	writeFile(t, filepath.Join(root, "a.txt"), "hello\n", 0o644)
	writeFile(t, filepath.Join(root, "empty"), "", 0o600)
	writeFile(t, filepath.Join(root, "bin/tool"), "#!/bin/sh\necho hi\n", 0o755)
	writeFile(t, filepath.Join(root, "bin/suid"), "x", 0o4755)
	writeFile(t, filepath.Join(root, "bin/sgid"), "y", 0o2711)
	require.NoError(t, os.WriteFile(filepath.Join(root, "big.bin"), big, 0o640))
	writeFile(t, filepath.Join(root, "lib/pkg/__init__.py"), "", 0o644)
	writeFile(t, filepath.Join(root, "lib/pkg/mod.py"), strings.Repeat("x = 1\n", 5000), 0o644)
	writeFile(t, filepath.Join(root, "lib/pkg-extra/z.py"), "z", 0o644) // sorts after lib/pkg's subtree
	require.NoError(t, os.MkdirAll(filepath.Join(root, "empty-dir/nested-empty"), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(root, "sticky"), 0o755))
	chmod(t, filepath.Join(root, "sticky"), 0o1777)
	require.NoError(t, os.Mkdir(filepath.Join(root, "readonly"), 0o755))
	writeFile(t, filepath.Join(root, "readonly/f"), "ro", 0o444)
	require.NoError(t, os.Symlink("../a.txt", filepath.Join(root, "bin/rel-link")))
	require.NoError(t, os.Symlink("/usr/bin/python3", filepath.Join(root, "bin/abs-link")))
	require.NoError(t, os.Symlink("does/not/exist", filepath.Join(root, "dangling")))
	require.NoError(t, os.Symlink("lib", filepath.Join(root, "lib64")))
	require.NoError(t, os.Link(filepath.Join(root, "a.txt"), filepath.Join(root, "lib/hard-a")))
	require.NoError(t, os.Link(filepath.Join(root, "a.txt"), filepath.Join(root, "z-hard-a")))
	if isRoot() {
		require.NoError(t, os.Lchown(filepath.Join(root, "bin/tool"), 1234, 5678))
		require.NoError(t, os.Lchown(filepath.Join(root, "bin/rel-link"), 1234, 5678))
		require.NoError(t, os.Lchown(filepath.Join(root, "lib/pkg"), 4321, 8765))
		// chown cleared it; set again.
		chmod(t, filepath.Join(root, "bin/tool"), 0o755)
	}
	if xattrsSupported(t, root) {
		require.NoError(t, unix.Setxattr(filepath.Join(root, "a.txt"), "user.origin", []byte("test\x00bin"), 0))
		require.NoError(t, unix.Setxattr(filepath.Join(root, "lib"), "user.dir", []byte("d"), 0))
	}
	chmod(t, filepath.Join(root, "readonly"), 0o555)
	setMtimes(t, root, 1_600_000_000_123_456_789)
	return root
}

func TestCaptureOrderAndTypes(t *testing.T) {
	root := buildTree(t)
	w := capture(t, root, CaptureOptions{})
	require.Equal(t, []string{"rootfs"}, w.streams)
	assert.Equal(t, []string{
		"a.txt", "big.bin",
		"bin", "bin/abs-link", "bin/rel-link", "bin/sgid", "bin/suid", "bin/tool",
		"dangling", "empty", "empty-dir", "empty-dir/nested-empty",
		"lib", "lib/hard-a", "lib/pkg", "lib/pkg/__init__.py", "lib/pkg/mod.py", "lib/pkg-extra", "lib/pkg-extra/z.py",
		"lib64", "readonly", "readonly/f", "sticky", "z-hard-a",
	}, paths(w.recs))

	tests := []struct {
		path    string
		typ     pluginapi.EntryType
		mode    uint32
		target  string
		hasBody bool
	}{
		{"a.txt", pluginapi.TypeFile, 0o644, "", true},
		{"big.bin", pluginapi.TypeFile, 0o640, "", true},
		{"empty", pluginapi.TypeFile, 0o600, "", true},
		{"bin/suid", pluginapi.TypeFile, 0o4755, "", true},
		{"bin/sgid", pluginapi.TypeFile, 0o2711, "", true},
		{"sticky", pluginapi.TypeDir, 0o1777, "", false},
		{"readonly", pluginapi.TypeDir, 0o555, "", false},
		{"bin/rel-link", pluginapi.TypeSymlink, 0o777, "../a.txt", false},
		{"bin/abs-link", pluginapi.TypeSymlink, 0o777, "/usr/bin/python3", false},
		{"dangling", pluginapi.TypeSymlink, 0o777, "does/not/exist", false},
		{"lib/hard-a", pluginapi.TypeHardlink, 0o644, "a.txt", false},
		{"z-hard-a", pluginapi.TypeHardlink, 0o644, "a.txt", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := find(t, w.recs, tt.path)
			assert.Equal(t, tt.typ, r.e.Type)
			assert.Equal(t, tt.mode, r.e.Mode)
			assert.Equal(t, tt.target, r.e.LinkTarget)
			assert.Equal(t, tt.hasBody, r.hasBody)
			assert.NotZero(t, r.e.Inode)
			assert.NotZero(t, r.e.CtimeNs)
			assert.NotZero(t, r.e.MtimeNs%1000, "mtime keeps nanoseconds")
			if tt.hasBody {
				want, err := os.ReadFile(filepath.Join(root, tt.path))
				require.NoError(t, err)
				assert.Equal(t, want, r.body)
				assert.Equal(t, int64(len(want)), r.e.Size)
			}
		})
	}
}

func TestCaptureParentIndex(t *testing.T) {
	for _, prints := range []bool{false, true} {
		t.Run(map[bool]string{false: "map", true: "fingerprints"}[prints], func(t *testing.T) {
			testCaptureParentIndex(t, prints)
		})
	}
}

func testCaptureParentIndex(t *testing.T, prints bool) {
	root := buildTree(t)
	first := capture(t, root, CaptureOptions{})
	parent := pluginapi.ParentIndex{"rootfs": {}}
	for _, r := range first.recs {
		if r.e.Type == pluginapi.TypeFile {
			parent["rootfs"][r.e.Path] = pluginapi.IndexEntry{Size: r.e.Size, MtimeNs: r.e.MtimeNs, CtimeNs: r.e.CtimeNs, Inode: r.e.Inode}
		}
	}
	// Change one file's content, and only the mtime of another.
	writeFile(t, filepath.Join(root, "lib/pkg/mod.py"), "changed\n", 0o644)
	ts := []unix.Timespec{unix.NsecToTimespec(1), unix.NsecToTimespec(1_700_000_000_000_000_001)}
	require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "empty"), ts, 0))
	// An index of another stream name must not count.
	other := capture(t, root, withParent(t, CaptureOptions{Stream: "volume:x"}, parent, prints))
	for _, r := range other.recs {
		assert.False(t, r.e.Unchanged, r.e.Path)
	}

	second := capture(t, root, withParent(t, CaptureOptions{}, parent, prints))
	require.Equal(t, paths(first.recs), paths(second.recs))
	for _, r := range second.recs {
		switch {
		case r.e.Path == "lib/pkg/mod.py" || r.e.Path == "empty":
			assert.False(t, r.e.Unchanged, r.e.Path)
			assert.True(t, r.hasBody, r.e.Path)
		case r.e.Type == pluginapi.TypeFile:
			assert.True(t, r.e.Unchanged, r.e.Path)
			assert.False(t, r.hasBody, r.e.Path)
		default:
			assert.False(t, r.e.Unchanged, r.e.Path)
		}
	}
	assert.Equal(t, []byte("changed\n"), find(t, second.recs, "lib/pkg/mod.py").body)
}

func TestCaptureIndexOnly(t *testing.T) {
	root := buildTree(t)
	w := capture(t, root, CaptureOptions{IndexOnly: true})
	full := capture(t, root, CaptureOptions{})
	require.Equal(t, paths(full.recs), paths(w.recs))
	for i, r := range w.recs {
		assert.False(t, r.hasBody, r.e.Path)
		assert.False(t, r.e.Unchanged, r.e.Path)
		assert.Equal(t, full.recs[i].e, r.e)
	}
}

func TestCaptureExcludes(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"keep.py", "x.pyc", "pkg/__pycache__/m.pyc", "pkg/m.py", "pkg/sub/skip/deep/f", "pkg/sub/keep", "skip/top"} {
		writeFile(t, filepath.Join(root, p), p, 0o644)
	}
	tests := []struct {
		name     string
		excludes []string
		want     []string
	}{
		{"none", nil, []string{"keep.py", "pkg", "pkg/__pycache__", "pkg/__pycache__/m.pyc", "pkg/m.py", "pkg/sub", "pkg/sub/keep", "pkg/sub/skip", "pkg/sub/skip/deep", "pkg/sub/skip/deep/f", "skip", "skip/top", "x.pyc"}},
		{"base name glob and dir by base name", []string{"*.pyc", "__pycache__"}, []string{"keep.py", "pkg", "pkg/m.py", "pkg/sub", "pkg/sub/keep", "pkg/sub/skip", "pkg/sub/skip/deep", "pkg/sub/skip/deep/f", "skip", "skip/top"}},
		{"relative path skips the dir wholly", []string{"pkg/sub/skip"}, []string{"keep.py", "pkg", "pkg/__pycache__", "pkg/__pycache__/m.pyc", "pkg/m.py", "pkg/sub", "pkg/sub/keep", "skip", "skip/top", "x.pyc"}},
		{"base name matches at any depth", []string{"skip"}, []string{"keep.py", "pkg", "pkg/__pycache__", "pkg/__pycache__/m.pyc", "pkg/m.py", "pkg/sub", "pkg/sub/keep", "x.pyc"}},
		{"path glob", []string{"pkg/*"}, []string{"keep.py", "pkg", "skip", "skip/top", "x.pyc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := capture(t, root, CaptureOptions{Excludes: tt.excludes})
			assert.Equal(t, tt.want, paths(w.recs))
		})
	}
	err := Capture(context.Background(), root, CaptureOptions{Stream: "rootfs", Excludes: []string{"[bad"}}, &memWriter{})
	assert.Error(t, err, "a malformed pattern is refused up front")
}

func TestCaptureSpecialFiles(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "f"), "f", 0o644)
	require.NoError(t, unix.Mkfifo(filepath.Join(root, "pipe"), 0o644))

	w := capture(t, root, CaptureOptions{})
	assert.Equal(t, []string{"f"}, paths(w.recs), "skipped silently without OnSpecial")

	var noted []string
	w = capture(t, root, CaptureOptions{OnSpecial: func(p, kind string) error {
		noted = append(noted, p+":"+kind)
		return nil
	}})
	assert.Equal(t, []string{"f"}, paths(w.recs))
	assert.Equal(t, []string{"pipe:fifo"}, noted)

	errNo := errors.New("no fifos here")
	err := Capture(context.Background(), root, CaptureOptions{Stream: "rootfs", OnSpecial: func(string, string) error { return errNo }}, &memWriter{})
	assert.ErrorIs(t, err, errNo)
}

func TestCaptureStopsOnWriterErrorAndCancel(t *testing.T) {
	root := t.TempDir()
	for i := range 300 {
		writeFile(t, filepath.Join(root, "d", strings.Repeat("f", 1+i%40)+string(rune('a'+i%26))), strings.Repeat("x", i*100), 0o644)
	}
	err := Capture(context.Background(), root, CaptureOptions{Stream: "rootfs", ReadAheadBytes: 64 << 10}, &memWriter{failAfter: 5})
	assert.ErrorIs(t, err, errWriterStop)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Capture(ctx, root, CaptureOptions{Stream: "rootfs"}, &memWriter{})
	assert.ErrorIs(t, err, context.Canceled)
	// goleak in TestMain checks that no reader or walker goroutine is left.
}

func TestCaptureMissingRoot(t *testing.T) {
	err := Capture(context.Background(), filepath.Join(t.TempDir(), "nope"), CaptureOptions{Stream: "rootfs"}, &memWriter{})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// grownSmallFile writes a small file, takes its entry as the walk would,
// then lets the file grow ("much longer now") after the walk saw it.
func grownSmallFile(t *testing.T) (string, pluginapi.Entry) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	writeFile(t, p, "short", 0o644)
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(p, &st))
	e := entryFromStat("f", &st)
	e.Type, e.Size = pluginapi.TypeFile, st.Size
	require.NoError(t, os.WriteFile(p, []byte("much longer now"), 0o644))
	return p, e
}

func TestReadSmallFileRereadsChangedFile(t *testing.T) {
	p, e := grownSmallFile(t)
	body, err := readSmallFile(unix.AT_FDCWD, p, &e, nil)
	require.NoError(t, err)
	assert.Equal(t, "much longer now", string(body))
	assert.Equal(t, int64(len(body)), e.Size, "entry follows the body it is sent with")

	// Replaced by another file (another inode): refused.
	writeFile(t, p+".new", "other", 0o644)
	require.NoError(t, os.Rename(p+".new", p))
	_, err = readSmallFile(unix.AT_FDCWD, p, &e, nil)
	assert.ErrorIs(t, err, ErrFileChanged)
}

func TestExactReaderShrunkFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	writeFile(t, p, "0123456789", 0o644)
	fd, err := unix.Open(p, unix.O_RDONLY, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	var buf bytes.Buffer
	_, err = (&exactReader{fd: fd, size: 20, path: "f"}).WriteTo(&buf)
	assert.ErrorIs(t, err, ErrFileChanged)
	buf.Reset()
	n, err := (&exactReader{fd: fd, size: 4, path: "f"}).WriteTo(&buf)
	require.NoError(t, err)
	assert.Equal(t, int64(4), n)
	assert.Equal(t, "0123", buf.String())
}

func TestReadXattrsAt(t *testing.T) {
	dir := t.TempDir()
	if !xattrsSupported(t, dir) {
		t.Skipf("the file system of %s does not support user.* xattrs", dir)
	}
	p := filepath.Join(dir, "f")
	writeFile(t, p, "", 0o644)
	require.NoError(t, unix.Setxattr(p, "user.k", []byte("v"), 0))
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	if _, err := listxattrat(fd, "f", make([]byte, 64)); errors.Is(err, unix.ENOSYS) {
		t.Log("kernel without listxattrat: the llistxattr fallback is used")
	} else {
		require.NoError(t, err)
	}
	attrs, err := readXattrsAt(fd, "f", p, nil)
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"user.k": []byte("v")}, attrs)
}

// removingWriter deletes a file when it receives a given entry.
type removingWriter struct {
	memWriter
	on, remove string
}

func (w *removingWriter) WriteEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if e.Path == w.on {
		if err := os.Remove(w.remove); err != nil {
			return err
		}
	}
	return w.memWriter.WriteEntry(ctx, e, body)
}

func TestCaptureFileRemovedBeforeRead(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a"), "a", 0o644)
	require.NoError(t, os.WriteFile(filepath.Join(root, "big"), bytes.Repeat([]byte("b"), 3<<20), 0o644)) // streamed when sent
	writeFile(t, filepath.Join(root, "c"), "c", 0o644)
	w := &removingWriter{on: "a", remove: filepath.Join(root, "big")}
	require.NoError(t, Capture(context.Background(), root, CaptureOptions{Stream: "rootfs"}, w))
	assert.Equal(t, []string{"a", "c"}, paths(w.recs))
}

// TestCaptureParentXattrs: with ParentXattrs, exactly the unchanged files
// with a single link come without xattrs and with XattrsFromParent; every
// other entry is what a capture without it sends.
func TestCaptureParentXattrs(t *testing.T) {
	root := t.TempDir()
	if !xattrsSupported(t, root) {
		t.Skipf("the file system of %s does not support user.* xattrs", root)
	}
	for _, name := range []string{"same", "plain", "changed", "linked"} {
		writeFile(t, filepath.Join(root, name), name+"\n", 0o644)
	}
	require.NoError(t, os.Link(filepath.Join(root, "linked"), filepath.Join(root, "linked2")))
	for _, name := range []string{"same", "changed", "linked"} {
		require.NoError(t, unix.Lsetxattr(filepath.Join(root, name), "user.k", []byte("v-"+name), 0))
	}
	first := capture(t, root, CaptureOptions{})
	parent := pluginapi.ParentIndex{"rootfs": {}}
	for _, r := range first.recs {
		if r.e.Type == pluginapi.TypeFile {
			parent["rootfs"][r.e.Path] = pluginapi.IndexEntry{Size: r.e.Size, MtimeNs: r.e.MtimeNs, CtimeNs: r.e.CtimeNs, Inode: r.e.Inode}
		}
	}
	// Changing an xattr changes the ctime, so the file is not unchanged.
	require.NoError(t, unix.Lsetxattr(filepath.Join(root, "changed"), "user.k", []byte("new"), 0))

	plain := capture(t, root, CaptureOptions{Parent: parent})
	fromParent := capture(t, root, CaptureOptions{Parent: parent, ParentXattrs: true})
	requireXattrsUnread(t, plain.recs, fromParent.recs, "same", "plain")
	assert.True(t, find(t, fromParent.recs, "same").e.Unchanged)
	assert.True(t, find(t, fromParent.recs, "plain").e.Unchanged)
	assert.Equal(t, map[string][]byte{"user.k": []byte("new")}, find(t, fromParent.recs, "changed").e.Xattrs)
	linked := find(t, fromParent.recs, "linked")
	assert.True(t, linked.e.Unchanged, "a file with other names is still unchanged")
	assert.Equal(t, map[string][]byte{"user.k": []byte("v-linked")}, linked.e.Xattrs, "but reads its xattrs")
	assert.Equal(t, map[string][]byte{"user.k": []byte("v-linked")}, find(t, fromParent.recs, "linked2").e.Xattrs)

	// Without a parent index nothing is unchanged, so every file reads its xattrs.
	for _, r := range capture(t, root, CaptureOptions{ParentXattrs: true}).recs {
		assert.False(t, r.e.XattrsFromParent, r.e.Path)
	}
}

// An index-only capture with ParentXattrs reads the xattrs of no regular
// file with a single link (the host judges those by their ctime) but still
// those of directories, symlinks and files with other names; otherwise it
// equals an index-only capture without ParentXattrs.
func TestCaptureIndexOnlyParentXattrs(t *testing.T) {
	root := t.TempDir()
	if !xattrsSupported(t, root) {
		t.Skipf("the file system of %s does not support user.* xattrs", root)
	}
	writeFile(t, filepath.Join(root, "plain"), "plain\n", 0o644)
	writeFile(t, filepath.Join(root, "with"), "with\n", 0o644)
	writeFile(t, filepath.Join(root, "d", "linked"), "linked\n", 0o644)
	require.NoError(t, os.Link(filepath.Join(root, "d", "linked"), filepath.Join(root, "linked2")))
	require.NoError(t, os.Symlink("plain", filepath.Join(root, "sym")))
	for _, name := range []string{"with", "d", "d/linked"} {
		require.NoError(t, unix.Lsetxattr(filepath.Join(root, name), "user.k", []byte("v-"+name), 0))
	}
	full := capture(t, root, CaptureOptions{IndexOnly: true})
	unread := capture(t, root, CaptureOptions{IndexOnly: true, ParentXattrs: true})
	requireXattrsUnread(t, full.recs, unread.recs, "plain", "with")
	assert.Equal(t, map[string][]byte{"user.k": []byte("v-d")}, find(t, unread.recs, "d").e.Xattrs)
	assert.Equal(t, map[string][]byte{"user.k": []byte("v-d/linked")}, find(t, unread.recs, "d/linked").e.Xattrs,
		"a file with other names reads its xattrs")
}

// requireXattrsUnread checks that got equals want, a capture that read
// every xattr, but for the files named, which come with XattrsFromParent
// and no xattrs.
func requireXattrsUnread(t *testing.T, want, got []record, unread ...string) {
	t.Helper()
	require.Equal(t, paths(want), paths(got))
	for i := range got {
		w := want[i]
		assert.False(t, w.e.XattrsFromParent, w.e.Path)
		if slices.Contains(unread, got[i].e.Path) {
			assert.True(t, got[i].e.XattrsFromParent, got[i].e.Path)
			assert.Empty(t, got[i].e.Xattrs, got[i].e.Path)
			w.e.XattrsFromParent, w.e.Xattrs = true, nil
		}
		assert.Equal(t, w, got[i], w.e.Path)
	}
}

// TestCapturePreludeBeforeReads: no file is opened for its body before the
// prelude is done (the readers wait for it, so that it is not left waiting
// for a core behind them while the host has nothing to store): files the
// prelude removes are left out, as files removed before they are read.
func TestCapturePreludeBeforeReads(t *testing.T) {
	root := deepTree(t)
	var files []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	}))
	require.Len(t, files, 121)

	w := &memWriter{}
	opts := CaptureOptions{Stream: "rootfs", Prelude: func(ctx context.Context) error {
		for _, p := range files {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
		return w.WriteMetadata(ctx, pluginapi.Metadata{Version: 1})
	}}
	require.NoError(t, Capture(context.Background(), root, opts, w))
	for _, r := range w.recs {
		assert.NotEqual(t, pluginapi.TypeFile, r.e.Type, "%s: read before the prelude removed it", r.e.Path)
	}
	assert.Len(t, w.recs, 3+9+27+81, "every directory, no file")
}
