package store

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every file stored as one chunk is packed, up to packMaxChunk (the
// chunker's Min); one byte more is stored alone. Both read back, from a
// reopened store too.
func TestPackLimit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	files := map[string][]byte{
		"at-limit.py":  testFiles(21, 1, packMaxChunk)["f0000.py"],
		"over-limit.h": testFiles(22, 1, packMaxChunk+1)["f0000.py"],
		"small.py":     testFiles(23, 1, 100<<10)["f0000.py"],
	}
	require.Equal(t, DefaultChunkerParams.Min, packMaxChunk, "files of one chunk are all packable")
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)
	for name, packed := range map[string]bool{"at-limit.py": true, "over-limit.h": false, "small.py": true} {
		require.Len(t, chunks[name], 1, name)
		v, err := s.value(chunkKey(chunks[name][0]))
		require.NoError(t, err)
		assert.Equal(t, packed, isRef(v), name)
		if packed {
			_, _, n, err := decodeRef(v)
			require.NoError(t, err)
			assert.Equal(t, len(files[name]), n, name)
		}
	}
	require.NoError(t, s.Close())

	s = openTest(t, dir)
	for name, data := range files {
		got, err := s.GetChunk(ctx, chunks[name][0])
		require.NoError(t, err, name)
		assert.Equal(t, data, got, name)
	}
}

// A reference longer than packMaxChunk is corrupt; one of the old limit
// (64 KiB, stores written before format 1.2) is not.
func TestDecodeRefLimit(t *testing.T) {
	var id packID
	_, _, n, err := decodeRef(encodeRef(id, 0, 64<<10))
	require.NoError(t, err)
	assert.Equal(t, 64<<10, n)
	_, _, _, err = decodeRef(encodeRef(id, packTarget, packMaxChunk))
	require.NoError(t, err)
	_, _, _, err = decodeRef(encodeRef(id, 0, packMaxChunk+1))
	assert.ErrorIs(t, err, ErrCorrupt)
}
