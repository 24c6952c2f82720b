package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/internal/venvfull"
)

// commitIndex commits a snapshot with only a change index (and a trivial
// tree) and returns the writer's stats.
func commitIndex(t testing.TB, s *Store, id string, idx ChangeIndex) WriterStats {
	ctx := context.Background()
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	root, err := w.PutTree(ctx, &Tree{})
	require.NoError(t, err)
	snap := &Snapshot{ID: id, Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: root}}}
	require.NoError(t, w.Commit(ctx, snap, idx))
	return w.Stats()
}

func TestChangeIndexRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	idx := ChangeIndex{
		"rootfs": {
			"a/b/c.py":   {Size: 10, MtimeNs: 1700000000000000001, CtimeNs: 1700000000000000002, Inode: 99},
			"a/b/d.py":   {Size: 0, MtimeNs: -5, CtimeNs: 3, Inode: 1},
			"a/b":        {Size: 4096, MtimeNs: 1, CtimeNs: 1, Inode: 1 << 62},
			"a":          {Size: 4096},
			"zzz/ünï.so": {Size: 1 << 40},
			"top":        {Size: 1},
		},
		"volume:data": {"x": {Size: 1}},
		"empty":       {},
	}
	commitIndex(t, s, "one", idx)
	got, err := s.ChangeIndex(ctx, "one")
	require.NoError(t, err)
	assert.Equal(t, idx, got)

	// An unchanged index costs nothing new; one changed file costs its
	// directory's chunk and its parents'.
	st := commitIndex(t, s, "two", idx)
	assert.Zero(t, st.NewChunks)
	idx["rootfs"]["a/b/c.py"] = IndexRecord{Size: 11}
	st = commitIndex(t, s, "three", idx)
	assert.Equal(t, int64(3), st.NewChunks, "the index chunks of a/b, a and the root")

	// GC keeps index chunks of live snapshots.
	require.NoError(t, s.DeleteSnapshot(ctx, "one"))
	_, err = s.GC(ctx)
	require.NoError(t, err)
	got, err = s.ChangeIndex(ctx, "three")
	require.NoError(t, err)
	assert.Equal(t, idx, got)
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)

	// Decoding hostile index chunks never panics.
	b := encodeIndexDir(buildIndexDirs(idx["rootfs"]), map[string]Hash{"a": {1}}, nil)
	for i := range b {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0xff
		_, _, _ = decodeIndexDir(bad, "", true, nil)
	}
	_, _, err = decodeIndexDir(b[:len(b)-1], "", false, nil)
	assert.ErrorIs(t, err, ErrCorrupt)
}

// TestIndexDirDecode: a chunk decodes to its records with their full
// paths and its subdirectories in name order; one whose names are not
// sorted and unique, as encodeIndexDir writes them, is corrupt.
func TestIndexDirDecode(t *testing.T) {
	d := newIndexDir()
	d.records["b.py"] = IndexRecord{Size: 2, MtimeNs: 5, CtimeNs: 6, Inode: 7}
	d.records["a.py"] = IndexRecord{Size: 1, MtimeNs: 9, CtimeNs: -1, Inode: 1 << 63}
	b := encodeIndexDir(d, map[string]Hash{"z": {2}, "m": {1}}, nil)
	recs, children, err := decodeIndexDir(b, "lib/", true, []indexEntry{{path: "kept"}})
	require.NoError(t, err)
	require.Len(t, recs, 3)
	assert.Equal(t, "kept", recs[0].path, "appended to what the caller passed")
	assert.Equal(t, "lib/a.py", recs[1].path)
	assert.Equal(t, d.records["a.py"], recs[1].r)
	assert.Equal(t, "lib/b.py", recs[2].path)
	assert.Equal(t, d.records["b.py"], recs[2].r)
	assert.Equal(t, []indexChild{{prefix: "lib/m/", h: Hash{1}}, {prefix: "lib/z/", h: Hash{2}}}, children)

	recs, _, err = decodeIndexDir(b, "lib/", false, nil)
	require.NoError(t, err)
	assert.Empty(t, recs[0].path, "no paths when not asked for")

	// Swap the two record names (same length): no longer sorted.
	bad := bytes.Replace(bytes.Replace(b, []byte("a.py"), []byte("x.py"), 1), []byte("b.py"), []byte("a.py"), 1)
	_, _, err = decodeIndexDir(bad, "", true, nil)
	assert.ErrorIs(t, err, ErrCorrupt)
	bad = bytes.Replace(b, []byte("\x01z"), []byte("\x01m"), 1)
	_, _, err = decodeIndexDir(bad, "", true, nil)
	assert.ErrorIs(t, err, ErrCorrupt, "duplicate subdirectory")
}

// FuzzDecodeIndexDir: hostile index chunks never panic, fail with
// ErrCorrupt, and a chunk that decodes yields paths under its prefix and
// is as long as indexDirLen says.
func FuzzDecodeIndexDir(f *testing.F) {
	d := newIndexDir()
	d.records["a.py"] = IndexRecord{Size: 1, MtimeNs: 9, CtimeNs: 3, Inode: 4}
	d.records["b"] = IndexRecord{Size: 4096}
	f.Add(encodeIndexDir(d, map[string]Hash{"sub": {1}}, nil))
	f.Add(encodeIndexDir(newIndexDir(), nil, nil))
	f.Add(encodeIndexDir(d, map[string]Hash{"sub": {1}}, map[string]IndexRecord{
		"sub": {Kind: IndexDir, CtimeNs: 5, Inode: 6}, "link": {Kind: IndexSymlink, CtimeNs: 7, Inode: 8}}))
	// A large directory's root (tree_split.go).
	big := newIndexDir()
	for i := range 300 {
		big.records[fmt.Sprintf("module_%03d.py", i)] = IndexRecord{Size: int64(i), Inode: uint64(i)}
	}
	root, frags := encodeIndexParts(big, nil, nil)
	require.NotEmpty(f, frags)
	f.Add(root)
	f.Fuzz(func(t *testing.T, data []byte) {
		// indexDirLen (index_packs.go) claims a prefix at most; a chunk
		// that decodes is all of it.
		n, ok := indexDirLen(data)
		require.True(t, !ok || (n > 0 && n <= len(data)))
		recs, children, err := decodeIndexDir(data, "p/", true, nil)
		if err == nil {
			require.Equal(t, len(data), n)
		}
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		if data[1] == indexNodeRootVersion {
			// A root: its fragments, at its own path.
			require.Empty(t, recs)
			for _, c := range children {
				require.Equal(t, "p/", c.prefix)
			}
			return
		}
		for _, r := range recs {
			require.True(t, strings.HasPrefix(r.path, "p/"))
		}
		for i, c := range children {
			require.True(t, strings.HasPrefix(c.prefix, "p/") && strings.HasSuffix(c.prefix, "/"))
			if i > 0 {
				require.Less(t, children[i-1].prefix[:len(children[i-1].prefix)-1], c.prefix[:len(c.prefix)-1])
			}
		}
	})
}

// BenchmarkChangeIndexVenvFull measures the change index of venv-full:
// what the first snapshot's index stores, what an unchanged second one
// adds, next to the same index as JSON.
func BenchmarkChangeIndexVenvFull(b *testing.B) {
	files := venvIndexRecords(b)
	idx := ChangeIndex{"rootfs": files}
	var first, second WriterStats
	for i := 0; i < b.N; i++ {
		s := openTest(b, "")
		first = commitIndex(b, s, "one", idx)
		second = commitIndex(b, s, "two", idx)
	}
	js, _ := json.Marshal(idx)
	b.ReportMetric(float64(len(files)), "entries")
	b.ReportMetric(float64(first.StoredBytes)/1e3, "kB-first-snapshot")
	b.ReportMetric(float64(second.StoredBytes)/1e3, "kB-unchanged-snapshot")
	b.ReportMetric(float64(len(js))/1e3, "kB-json")
}

// venvIndexRecords returns the change-index records of every entry of the
// venv-full dataset (skipping the benchmark when it is absent).
func venvIndexRecords(b *testing.B) map[string]IndexRecord {
	b.Helper()
	venvFull := venvfull.Dir(b)
	files := map[string]IndexRecord{}
	err := filepath.WalkDir(venvFull, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(venvFull, p)
		files[rel] = IndexRecord{Size: info.Size(), MtimeNs: info.ModTime().UnixNano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return files
}
