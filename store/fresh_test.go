package store

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// freshState returns whether the queue answers has from memory, and how
// many chunks it remembers.
func freshState(s *Store) (bool, int) {
	s.chunks.mu.Lock()
	defer s.chunks.mu.Unlock()
	return s.chunks.fresh, len(s.chunks.written)
}

// putAll puts every file of files (small ones packed, a large one alone)
// through a new Writer and returns it with the hashes.
func putAll(t *testing.T, s *Store, files [][]byte) (*Writer, []Hash) {
	t.Helper()
	ctx := context.Background()
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	var hs []Hash
	for _, f := range files {
		h, err := w.PutChunk(ctx, f)
		require.NoError(t, err)
		hs = append(hs, h)
	}
	return w, hs
}

func freshFiles() [][]byte {
	files := [][]byte{bytes.Repeat([]byte("large chunk stored alone "), 8<<10)} // 200 KiB
	for _, b := range testFiles(7, 20, 3000) {
		files = append(files, b)
	}
	return files
}

func TestFreshStoreDeduplicatesFromMemory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir})
	require.NoError(t, err)
	fresh, _ := freshState(s)
	require.True(t, fresh, "a new store holds no chunk")

	files := freshFiles()
	writeSnapshot(t, s, "one", testFiles(7, 20, 3000))
	w1, hs := putAll(t, s, files)
	require.NoError(t, w1.Commit(ctx, &Snapshot{ID: "two", Engine: "dir", EnvID: "env1", Streams: nil}, nil))
	fresh, n := freshState(s)
	require.True(t, fresh)
	assert.GreaterOrEqual(t, n, len(files), "every written chunk is remembered")

	// A second writer finds them all without Badger.
	w2, hs2 := putAll(t, s, files)
	assert.Equal(t, hs, hs2)
	assert.Zero(t, w2.Stats().NewChunks, "chunks written by this process are found")
	w2.Abort()
	for i, h := range hs {
		ok, err := s.HasChunk(ctx, h)
		require.NoError(t, err)
		assert.True(t, ok)
		got, err := s.GetChunk(ctx, h)
		require.NoError(t, err)
		assert.Equal(t, files[i], got)
	}
	ok, err := s.HasChunk(ctx, SumChunk([]byte("never stored")))
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, s.Close())

	// Reopened with chunks in it: lookups go to Badger again, with the
	// same answers.
	s = openTest(t, dir)
	fresh, _ = freshState(s)
	assert.False(t, fresh, "a store with chunks is not fresh")
	w3, _ := putAll(t, s, files)
	assert.Zero(t, w3.Stats().NewChunks)
	w3.Abort()
}

// GC deletes chunks, so after it has must not answer from what the queue
// wrote: a chunk GC deleted is stored again when put again.
func TestFreshStoreEndsAtGC(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := freshFiles()
	w1, hs := putAll(t, s, files)
	root, err := w1.PutTree(ctx, &Tree{Nodes: []Node{{Name: "big", Type: NodeFile, Mode: 0o644, Size: int64(len(files[0])), Content: []Hash{hs[0]}}}})
	require.NoError(t, err)
	require.NoError(t, w1.Commit(ctx, &Snapshot{ID: "drop", Engine: "dir", EnvID: "env1", Streams: []Stream{{Name: "rootfs", Root: root}}}, nil))
	w1b, _ := putAll(t, s, files)
	w1b.Abort()
	require.NoError(t, s.DeleteSnapshot(ctx, "drop"))

	st, err := s.GC(ctx)
	require.NoError(t, err)
	require.Greater(t, st.ChunksDeleted, int64(0))
	fresh, _ := freshState(s)
	assert.False(t, fresh)
	ok, err := s.HasChunk(ctx, hs[0])
	require.NoError(t, err)
	assert.False(t, ok, "GC deleted it")

	w2, _ := putAll(t, s, files)
	assert.Equal(t, int64(len(files)), w2.Stats().NewChunks, "deleted chunks are stored again")
	root, err = w2.PutTree(ctx, &Tree{Nodes: []Node{{Name: "big", Type: NodeFile, Mode: 0o644, Size: int64(len(files[0])), Content: []Hash{hs[0]}}}})
	require.NoError(t, err)
	require.NoError(t, w2.Commit(ctx, &Snapshot{ID: "keep", Engine: "dir", EnvID: "env1", Streams: []Stream{{Name: "rootfs", Root: root}}}, nil))
	got, err := s.GetChunk(ctx, hs[0])
	require.NoError(t, err)
	assert.Equal(t, files[0], got)
}

func TestFreshStoreGivesUpPastItsBound(t *testing.T) {
	ctx := context.Background()
	defer func(n int) { freshMaxChunks = n }(freshMaxChunks)
	freshMaxChunks = 5
	s := openTest(t, "")
	files := freshFiles()
	w1, hs := putAll(t, s, files)
	require.NoError(t, w1.Commit(ctx, &Snapshot{ID: "one", Engine: "dir", EnvID: "env1"}, nil))
	fresh, n := freshState(s)
	assert.False(t, fresh)
	assert.Zero(t, n, "the set is dropped")
	w2, hs2 := putAll(t, s, files)
	assert.Equal(t, hs, hs2)
	assert.Zero(t, w2.Stats().NewChunks, "found in Badger")
	w2.Abort()
}
