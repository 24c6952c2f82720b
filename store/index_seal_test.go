package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommitIndexedSealsIndexPacksAside: a change index large enough to
// fill several packs, whose packs commit seals on goroutines of their own
// (Writer.sealAsync), reads back whole after the store is reopened; the
// Writer leaves that mode once its index is stored.
func TestCommitIndexedSealsIndexPacksAside(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)

	want := map[string]IndexRecord{}
	subs := map[string]Hash{}
	// ~60 directories of 2,000 records, each chunk well under
	// packMaxChunk: several packs of index chunks.
	for d := 0; d < 60; d++ {
		files := map[string]IndexRecord{}
		for f := 0; f < 2000; f++ {
			r := IndexRecord{Size: int64(d*7919 + f), MtimeNs: int64(f) * 1e9, CtimeNs: int64(d) * 1e9, Inode: uint64(d*100000 + f)}
			name := fmt.Sprintf("module_%04d_%d.py", f, d*31+f)
			files[name] = r
			want[fmt.Sprintf("d%02d/%s", d, name)] = r
		}
		h, err := w.PutIndexDir(ctx, files, nil, nil)
		require.NoError(t, err)
		subs[fmt.Sprintf("d%02d", d)] = h
	}
	meta := map[string]IndexRecord{}
	for name := range subs {
		meta[name] = IndexRecord{Kind: IndexDir}
	}
	root, err := w.PutIndexDir(ctx, nil, subs, meta)
	require.NoError(t, err)
	tree, err := w.PutTree(ctx, &Tree{})
	require.NoError(t, err)
	snap := &Snapshot{ID: "big", Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: tree}}}
	require.NoError(t, w.CommitIndexed(ctx, snap, map[string]Hash{"rootfs": root}))
	assert.False(t, w.sealAsync.Load(), "the Writer seals in turn again after its index")
	require.NoError(t, s.Close())

	s = openTest(t, dir)
	got, err := s.ChangeIndex(ctx, "big")
	require.NoError(t, err)
	assert.Equal(t, ChangeIndex{"rootfs": want}, got)
}

// TestKeptBufs: a keptBufs hands back what it kept, last in first out, and
// keeps no more than max.
func TestKeptBufs(t *testing.T) {
	k := keptBufs{max: 2}
	assert.Nil(t, k.get())
	a, b, c := make([]byte, 1), make([]byte, 2), make([]byte, 3)
	assert.True(t, k.put(&a))
	assert.True(t, k.put(&b))
	assert.False(t, k.put(&c), "full")
	assert.Len(t, *k.get(), 2)
	assert.Len(t, *k.get(), 1)
	assert.Nil(t, k.get())
}
