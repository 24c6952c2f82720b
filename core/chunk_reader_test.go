package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// TestRestoreReadsAChunkReferencedAgainOnce: a file whose copy comes much
// later in the snapshot (past the read-ahead window and the LRU of recent
// chunks) is still read from the store once, and the trees the walk that
// finds such chunks read (one of them twice) are all handed over.
func TestRestoreReadsAChunkReferencedAgainOnce(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	license := []byte("Permission is hereby granted, free of charge, to any person obtaining a copy\n")
	for _, d := range []string{"a", "b", "c"} {
		require.NoError(t, os.MkdirAll(filepath.Join(src, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(src, "a", "LICENSE"), license, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "c", "LICENSE"), license, 0o644))
	// d is a copy of a: one tree, walked twice.
	require.NoError(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "d", "LICENSE"), license, 0o644))
	for _, d := range []string{"a", "d"} {
		require.NoError(t, os.Chtimes(filepath.Join(src, d, "LICENSE"), fixedTime, fixedTime))
	}
	// Filler between them: more than restoreAheadBytes+recentChunksBytes
	// in files of one chunk each, small enough for the LRU, distinct.
	const fillerFile = 200 << 10
	n := (restoreAheadBytes+recentChunksBytes)/fillerFile + 16
	rnd := rand.NewChaCha8([32]byte{1})
	block := make([]byte, fillerFile)
	for i := range n {
		_, _ = rnd.Read(block)
		require.NoError(t, os.WriteFile(filepath.Join(src, "b", fmt.Sprintf("%04d", i)), block, 0o644))
	}
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)

	distinct := map[store.Hash]bool{}
	var walk func(h store.Hash)
	walk = func(h store.Hash) {
		tree, err := m.store.GetTree(ctx, h)
		require.NoError(t, err)
		for _, n := range tree.Nodes {
			for _, c := range n.Content {
				distinct[c] = true
			}
			if n.Type == store.NodeDir {
				walk(n.Subtree)
			}
		}
	}
	walk(snap.Streams[0].Root)
	root, err := m.store.GetTree(ctx, snap.Streams[0].Root)
	require.NoError(t, err)
	subtrees := map[string]store.Hash{}
	for _, n := range root.Nodes {
		subtrees[n.Name] = n.Subtree
	}
	require.Equal(t, subtrees["a"], subtrees["d"], "a and d share their tree")

	rr := newRestoreReader(ctx, m.store, snap, nil, false, nil, 0, nil)
	defer rr.close()
	got := map[string][]byte{}
	for {
		_, e, body, err := rr.Next(ctx)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if body != nil {
			b, err := io.ReadAll(body)
			require.NoError(t, err)
			got[e.Path] = b
		}
	}
	assert.Equal(t, license, got["a/LICENSE"])
	assert.Equal(t, license, got["c/LICENSE"])
	assert.Equal(t, license, got["d/LICENSE"])
	rr.chunks.mu.Lock()
	defer rr.chunks.mu.Unlock()
	assert.EqualValues(t, len(distinct), rr.chunks.fetched, "each chunk read once")
	assert.Empty(t, rr.chunks.kept, "nothing kept after its last reference")
	assert.Empty(t, rr.chunks.trees, "every tree read ahead was used")
	assert.Zero(t, rr.chunks.treeNodes)
}

// TestRestoreBrokenPackReferenceNamesFile: a small file's chunk is read
// through its pack (GetChunkFunc); a reference to a pack that is not there
// fails the restore naming the snapshot and the file, and leaves nothing.
func TestRestoreBrokenPackReferenceNamesFile(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	dir := t.TempDir()
	eng := map[string]pluginapi.Engine{"dir": newDirEngine()}
	m := openManagerAt(t, dir, eng)
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	root, err := m.Store().GetTree(ctx, snap.Streams[0].Root)
	require.NoError(t, err)
	h := findNode(root, "a.txt").Content[0]
	require.NoError(t, m.Close())
	corruptChunk(t, dir, h) // its value is a pack reference: now to no pack

	m = openManagerAt(t, dir, eng)
	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst})
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrCorrupt) || errors.Is(err, store.ErrNotFound), "%v", err)
	assert.Contains(t, err.Error(), `"a.txt"`)
	assert.Contains(t, err.Error(), snap.ID)
	assert.Contains(t, err.Error(), h.Short())
	_, err = os.Lstat(dst)
	assert.ErrorIs(t, err, os.ErrNotExist, "the new target is removed")
}

// TestChunkReaderGuessesPlaces: read in the order they were captured, as
// an in-place restore reads them (no reference count, no resolved
// references), small files' chunks are mostly found right after the
// previous file's without a lookup (store.GetChunkPinnedGuess), and every
// file's bytes are its own.
func TestChunkReaderGuessesPlaces(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	rnd := rand.New(rand.NewPCG(7, 7))
	want := map[string][]byte{}
	for _, d := range []string{"a", "a/b", "c"} {
		require.NoError(t, os.MkdirAll(filepath.Join(src, d), 0o755))
		for i := range 150 {
			b := make([]byte, 1+rnd.IntN(6000))
			for k := range b {
				b[k] = byte('a' + rnd.IntN(20))
			}
			p := fmt.Sprintf("%s/f%03d.py", d, i)
			want[p] = b
			require.NoError(t, os.WriteFile(filepath.Join(src, p), b, 0o644))
		}
	}
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)

	cr := newChunkReader(ctx, m.store, 0, nil)
	defer cr.close()
	got := map[string][]byte{}
	var walk func(h store.Hash, dir string)
	walk = func(h store.Hash, dir string) {
		tree, err := m.store.GetTree(ctx, h)
		require.NoError(t, err)
		for _, n := range tree.Nodes {
			p := filepath.Join(dir, n.Name)
			if n.Type == store.NodeDir {
				walk(n.Subtree, p)
				continue
			}
			require.Len(t, n.Content, 1, p)
			f, err := cr.request(ctx, n.Content[0], chunkWeightAt(n.Size, 0), n.Size)
			require.NoError(t, err)
			<-f.done
			require.NoError(t, f.err, p)
			got[p] = bytes.Clone(f.data)
			cr.release(f, chunkWeightAt(n.Size, 0))
		}
	}
	walk(snap.Streams[0].Root, "")
	assert.Equal(t, want, got)
	fetched, guessed, right := cr.counts()
	assert.EqualValues(t, len(want), fetched)
	assert.Greater(t, right, fetched*8/10, "most found where guessed (guessed %d)", guessed)
}
