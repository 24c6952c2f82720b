package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIncrementalPacksCompressHarder: the packs of a Writer with a parent
// (the second snapshot of an env: few bytes, what changed) are compressed
// at incrementalPackLevel, smaller than the same chunks packed by a Writer
// without one (a first snapshot, at the codec's level).
func TestIncrementalPacksCompressHarder(t *testing.T) {
	ctx := context.Background()
	words := []string{"import", "def", "return", "self", "value", "class", "object", "None", "raise", "error", "for", "in", "range", "len", "print"}
	var chunks [][]byte
	x := uint64(1)
	for i := range 64 {
		var b []byte
		for len(b) < 16<<10 {
			x = x*6364136223846793005 + 1442695040888963407
			b = append(b, words[(x>>33)%uint64(len(words))]...)
			b = append(b, " \n"[(x>>40)%2])
		}
		chunks = append(chunks, append(b, fmt.Sprint(i)...))
	}
	stored := func(withParent bool) int64 {
		s := openTest(t, "")
		w, err := s.NewWriter(ctx)
		require.NoError(t, err)
		h, err := w.PutTree(ctx, &Tree{})
		require.NoError(t, err)
		require.NoError(t, w.Commit(ctx, &Snapshot{ID: "base", Engine: "dir", EnvID: "e", CreatedAt: time.Now(),
			Streams: []Stream{{Name: "rootfs", Root: h}}}, nil))
		w, err = s.NewWriter(ctx)
		require.NoError(t, err)
		defer w.Abort()
		if withParent {
			require.NoError(t, w.UseParent(ctx, "base"))
		}
		for _, c := range chunks {
			_, err := w.PutChunk(ctx, c)
			require.NoError(t, err)
		}
		require.NoError(t, s.packer.flush())
		return w.Stats().StoredBytes
	}
	first, second := stored(false), stored(true)
	t.Logf("1 MiB of text packed: %d bytes without a parent, %d with", first, second)
	assert.Less(t, second, first)
}
