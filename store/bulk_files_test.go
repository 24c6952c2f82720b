package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bulkLocators returns the locators of every key whose value lies in a
// bulk file, by key.
func bulkLocators(t *testing.T, s *Store) map[string]bulkLoc {
	t.Helper()
	out := map[string]bulkLoc{}
	require.NoError(t, s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.KeyCopy(nil)
			if k[0] != kindChunk && k[0] != kindPack {
				continue
			}
			err := item.Value(func(v []byte) error {
				if !isBulkLoc(v) {
					return nil
				}
				l, err := decodeBulkLoc(v)
				out[string(k)] = l
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	}))
	return out
}

// bigFiles are files stored as chunks above packMaxChunk (incompressible).
func bigFiles(seed uint64, n int) map[string][]byte {
	files := map[string][]byte{}
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("lib%02d.so", i)] = randomBytes(seed+uint64(i), 600<<10)
	}
	return files
}

func TestBulkFilesHoldPacksAndBigChunks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	files := testFiles(1, 200, 3000)
	for k, v := range bigFiles(50, 3) {
		files[k] = v
	}
	files["zeros.bin"] = make([]byte, 600<<10) // compresses to a few bytes
	snap := writeSnapshot(t, s, "one", files)

	locs := bulkLocators(t, s)
	zeros := SumChunk(make([]byte, 600<<10))
	assert.False(t, isBulkLoc(badgerValue(t, s, chunkKey(zeros))), "a large chunk that compresses to little stays inline")
	var packs, chunks int
	for k, l := range locs {
		if k[0] == kindPack {
			packs++
		} else {
			chunks++
		}
		info, err := os.Stat(s.files.path(l.id))
		require.NoError(t, err)
		assert.Equal(t, l.off+l.n, info.Size())
	}
	assert.Positive(t, packs, "packs are in bulk files")
	assert.GreaterOrEqual(t, chunks, 3, "large chunks are in bulk files")
	ents, err := os.ReadDir(filepath.Join(dir, bulkDirName))
	require.NoError(t, err)
	assert.Len(t, ents, len(locs), "one file per value")

	// Sizes count the files.
	u, err := s.Usage(ctx)
	require.NoError(t, err)
	var inFiles int64
	for _, l := range locs {
		inFiles += l.n
	}
	assert.GreaterOrEqual(t, u.StoredBytes, inFiles)
	assert.Greater(t, u.DiskBytes, inFiles)
	assert.Greater(t, u.ChunkBytes, int64(3*600<<10))
	for name, data := range files {
		var h Hash
		root, err := s.GetTree(ctx, snap.Streams[0].Root)
		require.NoError(t, err)
		for _, n := range root.Nodes {
			if n.Name == name {
				h = n.Content[0]
			}
		}
		n, err := s.ChunkStoredSize(ctx, h)
		require.NoError(t, err)
		assert.Positive(t, n)
		if len(data) <= packMaxChunk {
			continue
		}
		b, err := s.GetChunk(ctx, h)
		require.NoError(t, err)
		assert.Equal(t, data[:len(b)], b)
	}

	// Read back after reopening, every chunk verified.
	require.NoError(t, s.Close())
	s = openTest(t, dir)
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}

// TestVerifyMissingBulkFile: a pack file or a large chunk's file that is
// gone is reported for every path that needs it, and reading it names
// the file.
func TestVerifyMissingBulkFile(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(2, 200, 3000)
	for k, v := range bigFiles(60, 1) {
		files[k] = v
	}
	snap := writeSnapshot(t, s, "snap", files)
	root, err := s.GetTree(ctx, snap.Streams[0].Root)
	require.NoError(t, err)
	var bigH, smallH Hash
	for _, n := range root.Nodes {
		switch n.Name {
		case "lib00.so":
			bigH = n.Content[0]
		case "f0003.py":
			smallH = n.Content[0]
		}
	}
	l, err := decodeBulkLoc(badgerValue(t, s, chunkKey(bigH)))
	require.NoError(t, err)
	require.NoError(t, os.Remove(s.files.path(l.id)))
	id, _, _, err := decodeRef(badgerValue(t, s, chunkKey(smallH)))
	require.NoError(t, err)
	pl, err := decodeBulkLoc(badgerValue(t, s, packKey(id)))
	require.NoError(t, err)
	require.NoError(t, os.Remove(s.files.path(pl.id)))
	s.packCache.drop(id)

	_, err = s.GetChunk(ctx, bigH)
	require.ErrorIs(t, err, ErrCorrupt, "a key whose file is gone is damage, not an absent chunk")
	assert.Contains(t, err.Error(), s.files.path(l.id), "the error names the file")
	_, err = s.GetChunk(ctx, smallH)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), s.files.path(pl.id))

	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	paths := map[string]bool{}
	for _, p := range rep.Problems {
		assert.Equal(t, "snap", p.SnapshotID)
		assert.ErrorIs(t, p.Err, ErrCorrupt)
		paths[p.Path] = true
	}
	for _, p := range []string{"lib00.so", "a-sub/lib00.so", "f0003.py", "a-sub/f0003.py"} {
		assert.True(t, paths[p], "%s reported: %v", p, rep.Problems)
	}

	// A truncated file is corrupt, named too.
	require.NoError(t, os.WriteFile(s.files.path(l.id), []byte{1, 2, 3}, 0o644))
	_, err = s.GetChunk(ctx, bigH)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), s.files.path(l.id))
}

// TestGCRemovesBulkFiles: deleting a snapshot and collecting removes its
// files; orphans (a crash between writing a file and committing its key)
// go too, but never a file a live writer has not committed yet.
func TestGCRemovesBulkFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	keep := writeSnapshot(t, s, "keep", testFiles(3, 50, 3000))
	keepFiles := bulkLocators(t, s)
	drop := testFiles(4, 300, 3000)
	for k, v := range bigFiles(70, 4) {
		drop[k] = v
	}
	writeSnapshot(t, s, "drop", drop)
	require.Greater(t, len(bulkLocators(t, s)), len(keepFiles)+4)

	// An orphan left by a crash, and a file a live writer is writing.
	var orphan bulkID
	orphan[0] = 0xaa
	require.NoError(t, os.WriteFile(s.files.path(orphan), bytes.Repeat([]byte{7}, 5000), 0o644))
	f, _, err := s.files.create([]byte{0, 3, 1, 2, 3})
	require.NoError(t, err)

	require.NoError(t, s.DeleteSnapshot(ctx, "drop"))
	st, err := s.GC(ctx)
	require.NoError(t, err)
	assert.Greater(t, st.ChunksDeleted, int64(300))

	live := map[bulkID]bool{}
	for _, l := range bulkLocators(t, s) {
		live[l.id] = true
	}
	on, err := s.files.list()
	require.NoError(t, err)
	for id := range on {
		if id == f.id {
			continue
		}
		assert.True(t, live[id], "file %s is referenced", id)
	}
	assert.Contains(t, on, f.id, "a pending file survives GC")
	assert.NotContains(t, on, orphan, "an orphan is removed")
	assert.Len(t, on, len(live)+1)

	// Once the writer is done without committing, it is an orphan too.
	require.NoError(t, s.files.syncFiles([]bulkFile{f}))
	s.files.done(f.id)
	_, err = s.GC(ctx)
	require.NoError(t, err)
	on, err = s.files.list()
	require.NoError(t, err)
	assert.NotContains(t, on, f.id)

	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	_, err = s.Snapshot(ctx, keep.ID)
	require.NoError(t, err)
}

// TestInlineValuesStayReadable: a store written before bulk files (packs
// and large chunks inline in Badger, format 1) opens, reads, verifies and
// collects, and is marked format 2.
func TestInlineValuesStayReadable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	files := testFiles(5, 100, 3000)
	for k, v := range bigFiles(80, 2) {
		files[k] = v
	}
	writeSnapshot(t, s, "old", files)
	// Turn the store into the old layout: values back inline, no files.
	locs := bulkLocators(t, s)
	require.NotEmpty(t, locs)
	require.NoError(t, s.db.Update(func(txn *badger.Txn) error {
		for k, l := range locs {
			v, _, err := s.files.read(l)
			if err != nil {
				return err
			}
			if err := txn.Set([]byte(k), bytes.Clone(v)); err != nil {
				return err
			}
		}
		return txn.Set(metaKey("format"), []byte{1})
	}))
	for _, l := range locs {
		require.NoError(t, s.files.remove(l.id))
	}
	require.NoError(t, s.Close())

	s = openTest(t, dir)
	assert.Empty(t, bulkLocators(t, s))
	assert.Equal(t, []byte{StoreFormat}, badgerValue(t, s, metaKey("format")), "marked format 2 on open")
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Positive(t, rep.Chunks)
	u, err := s.Usage(ctx)
	require.NoError(t, err)
	assert.Greater(t, u.StoredBytes, int64(2*600<<10))

	// New values go to files beside the old ones; deleting the old
	// snapshot and collecting reclaims both kinds.
	more := testFiles(6, 100, 3000)
	for k, v := range bigFiles(90, 2) {
		more[k] = v
	}
	writeSnapshot(t, s, "new", more)
	assert.NotEmpty(t, bulkLocators(t, s))
	require.NoError(t, s.DeleteSnapshot(ctx, "old"))
	st, err := s.GC(ctx)
	require.NoError(t, err)
	assert.Greater(t, st.BytesReclaimed, int64(2*600<<10))
	rep, err = s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, 1, rep.Snapshots)
}
