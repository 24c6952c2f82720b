package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// walkIndexPacks reads the change index under root through p, one chunk
// at a time, checking each against GetChunk; it returns the records and
// the chunks' hashes in the order read.
func walkIndexPacks(t *testing.T, s *Store, p *indexPacks, root Hash) (map[string]IndexRecord, []Hash) {
	t.Helper()
	ctx := context.Background()
	out := map[string]IndexRecord{}
	var order []Hash
	var walk func(h Hash, prefix string)
	walk = func(h Hash, prefix string) {
		b, err := p.get(ctx, h)
		require.NoError(t, err)
		want, err := s.GetChunk(ctx, h)
		require.NoError(t, err)
		require.Equal(t, want, b, "chunk %s", h)
		order = append(order, h)
		recs, children, err := decodeIndexDir(b, prefix, true, nil)
		require.NoError(t, err)
		for _, r := range recs {
			out[r.path] = r.r
		}
		for _, c := range children {
			walk(c.h, c.prefix)
		}
	}
	walk(root, "")
	return out, order
}

// putIndexedSnapshot stores dirs directories of files small files each,
// their chunks packed, and a change index: directory by directory
// (PutIndexDir, the index in packs of its own) or, with whole, all at once
// by Commit after the files (the index sharing a pack with them, as stores
// written before PutIndexDir have it). It returns the index.
func putIndexedSnapshot(t *testing.T, s *Store, id string, dirs, files int, whole bool) ChangeIndex {
	ctx := context.Background()
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	want := ChangeIndex{"rootfs": {}}
	root := &Tree{}
	rootIndex := map[string]Hash{}
	for d := range dirs {
		name := fmt.Sprintf("d%03d", d)
		sub := &Tree{}
		recs := map[string]IndexRecord{}
		for f := range files {
			data := randomBytes(uint64(d*1000+f), 300)
			h, err := w.PutChunk(ctx, data)
			require.NoError(t, err)
			fn := fmt.Sprintf("f%03d.py", f)
			sub.Nodes = append(sub.Nodes, Node{Name: fn, Type: NodeFile, Size: 300, Content: []Hash{h}})
			r := IndexRecord{Size: 300, MtimeNs: int64(1e18 + d), CtimeNs: int64(f), Inode: uint64(d*1000 + f)}
			recs[fn] = r
			want["rootfs"][name+"/"+fn] = r
		}
		h, err := w.PutTree(ctx, sub)
		require.NoError(t, err)
		root.Nodes = append(root.Nodes, Node{Name: name, Type: NodeDir, Subtree: h})
		if !whole {
			rootIndex[name], err = w.PutIndexDir(ctx, recs, nil, nil)
			require.NoError(t, err)
		}
	}
	rootH, err := w.PutTree(ctx, root)
	require.NoError(t, err)
	snap := &Snapshot{ID: id, Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: rootH}}}
	if whole {
		require.NoError(t, w.Commit(ctx, snap, want))
		return want
	}
	ir, err := w.PutIndexDir(ctx, nil, rootIndex, nil)
	require.NoError(t, err)
	require.NoError(t, w.CommitIndexed(ctx, snap, map[string]Hash{"rootfs": ir}))
	return want
}

func indexRoot(t *testing.T, s *Store, id string) Hash {
	t.Helper()
	roots, err := s.indexRoots(id)
	require.NoError(t, err)
	return roots["rootfs"]
}

// TestIndexPacksOwnPacks: an index stored directory by directory is read
// back with one Badger lookup per pack it fills, not one per chunk, and
// every chunk is the one GetChunk returns.
func TestIndexPacksOwnPacks(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	want := putIndexedSnapshot(t, s, "one", 200, 20, false)
	require.NoError(t, s.Close())
	s = openTest(t, dir)

	p := newIndexPacks(s)
	got, order := walkIndexPacks(t, s, p, indexRoot(t, s, "one"))
	assert.Equal(t, want["rootfs"], got)
	// The top directory, with 200 subdirectories, is split in fragments
	// (tree_split.go).
	rb, err := s.GetChunk(context.Background(), indexRoot(t, s, "one"))
	require.NoError(t, err)
	frags, err := decodeIndexRoot(rb[2:], "")
	require.NoError(t, err)
	assert.Len(t, order, 201+len(frags), "the 200 directories, the top one's fragments and its root")
	assert.LessOrEqual(t, p.lookups.Load(), int64(2), "one lookup leads into each of the index's pack(s)")

	idx, err := s.ChangeIndex(context.Background(), "one")
	require.NoError(t, err)
	assert.Equal(t, want, idx)
}

// TestIndexPacksMixedPacks: an index whose chunks share a pack with file
// chunks (Commit with the whole index, as older stores hold it) reads
// back the same, the pack scanned from the chunk a lookup points at.
func TestIndexPacksMixedPacks(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	want := putIndexedSnapshot(t, s, "one", 100, 20, true)
	require.NoError(t, s.Close())
	s = openTest(t, dir)

	p := newIndexPacks(s)
	got, _ := walkIndexPacks(t, s, p, indexRoot(t, s, "one"))
	assert.Equal(t, want["rootfs"], got)
	idx, err := s.ChangeIndex(context.Background(), "one")
	require.NoError(t, err)
	assert.Equal(t, want, idx)
}

// TestIndexPacksCorrupt: an index chunk altered inside its pack is never
// served: reading the index fails with ErrCorrupt naming that chunk,
// whichever chunk of the pack it is.
func TestIndexPacksCorrupt(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	putIndexedSnapshot(t, s, "one", 30, 10, false)
	_, order := walkIndexPacks(t, s, newIndexPacks(s), indexRoot(t, s, "one"))
	for _, victim := range []Hash{order[0], order[1], order[len(order)/2], order[len(order)-1]} {
		// The same snapshot (same chunks) in a store of its own.
		dir := t.TempDir()
		s := openTest(t, dir)
		putIndexedSnapshot(t, s, "one", 30, 10, false)
		alterPacked(t, s, victim)
		require.NoError(t, s.Close())
		s = openTest(t, dir)
		_, err := s.ChangeIndex(ctx, "one")
		require.ErrorIs(t, err, ErrCorrupt)
		assert.Contains(t, err.Error(), victim.String())
	}
}

// TestIndexDirLen: the length of an index chunk is found at the start of
// any bytes, and nothing is claimed of a truncated one.
func TestIndexDirLen(t *testing.T) {
	d := newIndexDir()
	d.records["a.py"] = IndexRecord{Size: 1, MtimeNs: 9, CtimeNs: -3, Inode: 4}
	d.records["b"] = IndexRecord{Size: 4096}
	for _, b := range [][]byte{encodeIndexDir(d, map[string]Hash{"sub": {1}, "t": {2}}, nil), encodeIndexDir(newIndexDir(), nil, nil)} {
		n, ok := indexDirLen(append(append([]byte(nil), b...), 'I', 1, 0xff))
		assert.True(t, ok)
		assert.Equal(t, len(b), n)
		for cut := range len(b) {
			_, ok := indexDirLen(b[:cut])
			assert.False(t, ok, "cut at %d", cut)
		}
	}
}
