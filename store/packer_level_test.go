package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
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

// TestFirstPacksAlternateLevels: a first snapshot's packs are compressed
// at the codec's level and at SpeedFastest in turn (firstFastEvery), each
// pack byte for byte what its level makes of its members; a store opened
// with an explicit CompressionLevel compresses every pack at that level.
func TestFirstPacksAlternateLevels(t *testing.T) {
	for name, level := range map[string]int{"default": 0, "explicit level 2": 2} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(ctx, Options{Dir: t.TempDir(), CompressionLevel: level})
			require.NoError(t, err)
			defer s.Close()
			w, err := s.NewWriter(ctx)
			require.NoError(t, err)
			defer w.Abort()
			// 9 files of 240 KiB fill a pack: 4 packs, sealed in turn.
			files := testFiles(41, 36, 240<<10)
			var order []packID
			for _, name := range sortedKeys(files) {
				h, err := w.PutChunkKind(ctx, files[name], ".py")
				require.NoError(t, err)
				require.NoError(t, s.chunks.flush())
				v, err := s.value(chunkKey(h))
				if err != nil {
					continue // still in the open pack
				}
				id, _, _, err := decodeRef(v)
				require.NoError(t, err)
				if len(order) == 0 || order[len(order)-1] != id {
					order = append(order, id)
				}
			}
			require.Len(t, order, 4)
			for i, id := range order {
				stored, err := s.value(packKey(id))
				require.NoError(t, err)
				raw, err := s.loadPack(id)
				require.NoError(t, err)
				want, other := zstd.SpeedDefault, zstd.SpeedFastest
				if level == 0 && (i+1)%firstFastEvery == 0 {
					want, other = other, want
				}
				assert.Equal(t, s.codec.EncodeLevel(nil, raw, want), stored, "pack %d", i+1)
				assert.NotEqual(t, s.codec.EncodeLevel(nil, raw, other), stored, "pack %d", i+1)
			}
		})
	}
}
