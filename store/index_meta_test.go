package store

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIndexDirMeta: a directory's chunk with the records of its
// subdirectories and symlinks is version 2, decodes to them after its
// files' (Kind set, paths under the prefix) and is as long as indexDirLen
// says; one without them is version 1, byte for byte what earlier versions
// wrote; meta records out of order or of a file's kind are corrupt.
func TestIndexDirMeta(t *testing.T) {
	d := newIndexDir()
	d.records["a.py"] = IndexRecord{Size: 1, MtimeNs: 9, CtimeNs: 3, Inode: 4}
	meta := map[string]IndexRecord{
		"sub":  {Kind: IndexDir, CtimeNs: 100, Inode: 7},
		"link": {Kind: IndexSymlink, CtimeNs: 50, Inode: 1 << 40},
	}
	plain := encodeIndexDir(d, map[string]Hash{"sub": {1}}, nil)
	assert.Equal(t, byte(indexNodeVersion), plain[1])
	b := encodeIndexDir(d, map[string]Hash{"sub": {1}}, meta)
	assert.Equal(t, byte(indexNodeVersionMeta), b[1])
	assert.Equal(t, plain[2:], b[2:len(plain)], "version 1 followed by the records")
	n, ok := indexDirLen(append(b, 'I', 1, 0, 0))
	require.True(t, ok)
	assert.Equal(t, len(b), n)

	recs, children, err := decodeIndexDir(b, "lib/", true, nil)
	require.NoError(t, err)
	assert.Equal(t, []indexEntry{
		{path: "lib/a.py", end: len("lib/a.py"), r: d.records["a.py"]},
		{path: "lib/link", r: meta["link"]},
		{path: "lib/sub", r: meta["sub"]},
	}, recs)
	assert.Equal(t, []indexChild{{prefix: "lib/sub/", h: Hash{1}}}, children)

	for name, bad := range map[string][]byte{
		"unsorted":  bytes.Replace(b, []byte("\x04link"), []byte("\x04zzzz"), 1),
		"file kind": encodeIndexDir(d, nil, map[string]IndexRecord{"f": {Kind: IndexFile}}),
		"truncated": b[:len(b)-1],
		"empty":     append(append([]byte{}, plain...), 0),
	} {
		if name == "empty" {
			bad[1] = indexNodeVersionMeta
		}
		_, _, err := decodeIndexDir(bad, "", true, nil)
		assert.ErrorIs(t, err, ErrCorrupt, name)
	}
}

// TestParentChangeIndexWithDirs: a change index stored with directory and
// symlink records reads back, through ChangeIndex (restores), as its files
// alone, through ParentChangeIndexVisit (creates) with those records and
// the hash of every directory's chunk, and through
// ChangeIndexWithDirsVisit (in-place restores) with those records;
// PutIndexDir refuses a file's record among them.
func TestParentChangeIndexWithDirs(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	_, err = w.PutIndexDir(ctx, nil, nil, map[string]IndexRecord{"f": {Size: 1}})
	require.Error(t, err)

	file := IndexRecord{Size: 3, MtimeNs: 4, CtimeNs: 5, Inode: 6}
	subIndex, err := w.PutIndexDir(ctx, map[string]IndexRecord{"m.py": file}, nil, nil)
	require.NoError(t, err)
	libMeta := map[string]IndexRecord{"pkg": {Kind: IndexDir, CtimeNs: 7, Inode: 8}, "link": {Kind: IndexSymlink, CtimeNs: 9, Inode: 10}}
	libIndex, err := w.PutIndexDir(ctx, nil, map[string]Hash{"pkg": subIndex}, libMeta)
	require.NoError(t, err)
	rootIndex, err := w.PutIndexDir(ctx, nil, map[string]Hash{"lib": libIndex},
		map[string]IndexRecord{"lib": {Kind: IndexDir, CtimeNs: 11, Inode: 12}, "empty": {Kind: IndexDir, CtimeNs: 13, Inode: 14}})
	require.NoError(t, err)
	tree, err := w.PutTree(ctx, &Tree{})
	require.NoError(t, err)
	snap := &Snapshot{ID: "one", Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: tree}}}
	require.NoError(t, w.CommitIndexed(ctx, snap, map[string]Hash{"rootfs": rootIndex}))

	got, err := s.ChangeIndex(ctx, "one")
	require.NoError(t, err)
	assert.Equal(t, ChangeIndex{"rootfs": {"lib/pkg/m.py": file}}, got)

	w, err = s.NewWriter(ctx)
	require.NoError(t, err)
	defer w.Abort()
	require.NoError(t, w.UseParent(ctx, "one"))
	// ParentChangeIndexVisit hands over every record, each once, and
	// the hash of every directory's chunk.
	idx, dirs, err := parentIndex(t, ctx, w)
	require.NoError(t, err)
	assert.Equal(t, ChangeIndex{"rootfs": {
		"lib/pkg/m.py": file,
		"lib/pkg":      libMeta["pkg"],
		"lib/link":     libMeta["link"],
		"lib":          {Kind: IndexDir, CtimeNs: 11, Inode: 12},
		"empty":        {Kind: IndexDir, CtimeNs: 13, Inode: 14},
	}}, idx)
	assert.Equal(t, ParentIndexDirs{"rootfs": {"lib": libIndex, "lib/pkg": subIndex}}, dirs)
	assert.Equal(t, got, filesOf(idx), "without dirs: the files alone")

	// ChangeIndexWithDirsVisit (in-place restores) hands over the same
	// records, each once, by snapshot ID.
	visited := ChangeIndex{}
	dirsOf, err := ChangeIndexWithDirsVisit(ctx, s, "one", func(stream, path string, r IndexRecord) {
		if visited[stream] == nil {
			visited[stream] = map[string]IndexRecord{}
		}
		assert.NotContains(t, visited[stream], path)
		visited[stream][path] = r
	})
	require.NoError(t, err)
	assert.Equal(t, idx, visited)
	// And then gives a directory's files again, one directory at a time.
	files, err := dirsOf.Files(ctx, "rootfs", "lib/pkg")
	require.NoError(t, err)
	assert.Equal(t, map[string]IndexRecord{"lib/pkg/m.py": file}, files)
	for _, dir := range []string{"", "lib", "empty", "nowhere"} {
		files, err = dirsOf.Files(ctx, "rootfs", dir)
		require.NoError(t, err)
		assert.Empty(t, files, dir)
	}
	files, err = dirsOf.Files(ctx, "other", "lib/pkg")
	require.NoError(t, err)
	assert.Empty(t, files)
	_, err = ChangeIndexWithDirsVisit(ctx, s, "none", func(string, string, IndexRecord) {})
	assert.ErrorIs(t, err, ErrNotFound)
}

// TestIndexDirsFilesOfSplitDirectories: the files of directories large
// enough to be stored in fragments (tree_split.go), the root's included,
// come whole from IndexDirs.Files.
func TestIndexDirsFilesOfSplitDirectories(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := map[string]IndexRecord{}
	for i := range 400 {
		files[fmt.Sprintf("top_module_%03d.py", i)] = IndexRecord{Size: int64(i), MtimeNs: 1e18 + int64(i), CtimeNs: 1e18 + int64(i), Inode: uint64(1000 + i)}
		files[fmt.Sprintf("pkg/sub_module_%03d.py", i)] = IndexRecord{Size: int64(i), MtimeNs: 2e18 + int64(i), CtimeNs: 2e18 + int64(i), Inode: uint64(5000 + i)}
	}
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	tree, err := w.PutTree(ctx, &Tree{})
	require.NoError(t, err)
	snap := &Snapshot{ID: "big", Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: tree}}}
	require.NoError(t, w.Commit(ctx, snap, ChangeIndex{"rootfs": files}))
	dirsOf, err := ChangeIndexWithDirsVisit(ctx, s, "big", func(string, string, IndexRecord) {})
	require.NoError(t, err)
	require.Greater(t, len(dirsOf.streams["rootfs"].chunks["pkg"]), 1, "pkg is split")
	want := map[string]map[string]IndexRecord{"": {}, "pkg": {}}
	for p, r := range files {
		dir, _ := splitDir(p)
		want[dir][p] = r
	}
	for dir, w := range want {
		got, err := dirsOf.Files(ctx, "rootfs", dir)
		require.NoError(t, err)
		assert.Equal(t, w, got, dir)
	}
}

// splitDir splits a path into its directory ("" at the top) and name.
func splitDir(p string) (string, string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// parentIndex collects what ParentChangeIndexVisit hands over, asserting
// that no record comes twice.
func parentIndex(t *testing.T, ctx context.Context, w *Writer) (ChangeIndex, ParentIndexDirs, error) {
	t.Helper()
	idx := ChangeIndex{}
	dirs, err := ParentChangeIndexVisit(ctx, w, func(stream, path string, r IndexRecord) {
		if idx[stream] == nil {
			idx[stream] = map[string]IndexRecord{}
		}
		assert.NotContains(t, idx[stream], path)
		idx[stream][path] = r
	})
	return idx, dirs, err
}

// filesOf is idx without its directories' and symlinks' records.
func filesOf(idx ChangeIndex) ChangeIndex {
	files := ChangeIndex{}
	for st, m := range idx {
		files[st] = map[string]IndexRecord{}
		for p, r := range m {
			if r.Kind == IndexFile {
				files[st][p] = r
			}
		}
	}
	return files
}
