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

// A pack's members are laid out by kind (Writer.PutChunkKind), in arrival
// order within a kind; a pack of one kind stays in arrival order. Every
// member reads back from its place.
func TestPackGroupsKinds(t *testing.T) {
	for name, tc := range map[string]struct {
		kinds []string // of the files, in turn
		want  []string // the kinds' order in the pack
	}{
		"mixed":    {kinds: []string{".pyc", ".py", ""}, want: []string{"", ".py", ".pyc"}},
		"one kind": {kinds: []string{".py"}, want: []string{".py"}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, "")
			w, err := s.NewWriter(ctx)
			require.NoError(t, err)
			defer w.Abort()
			files := testFiles(31, 12, 3000)
			names := sortedKeys(files)
			byKind := map[string][]Hash{}
			hs := make([]Hash, len(names))
			for i, name := range names {
				k := tc.kinds[i%len(tc.kinds)]
				hs[i], err = w.PutChunkKind(ctx, files[name], k)
				require.NoError(t, err)
				byKind[k] = append(byKind[k], hs[i])
			}
			require.NoError(t, s.packer.flush())
			require.NoError(t, s.chunks.flush())

			next := 0
			for _, k := range tc.want {
				for _, h := range byKind[k] {
					v, err := s.value(chunkKey(h))
					require.NoError(t, err)
					require.True(t, isRef(v))
					_, off, n, err := decodeRef(v)
					require.NoError(t, err)
					assert.Equal(t, next, off, "kind %q", k)
					next = off + n
				}
			}
			for i, name := range names {
				got, err := s.GetChunk(ctx, hs[i])
				require.NoError(t, err)
				assert.Equal(t, files[name], got, name)
			}
		})
	}
}
