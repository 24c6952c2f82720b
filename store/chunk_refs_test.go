package store

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// getFrom reads h through GetChunkFuncFrom and waits for the result.
func getFrom(s *Store, h Hash, refs *ChunkRefs) ([]byte, error) {
	type res struct {
		b   []byte
		err error
	}
	c := make(chan res, 1)
	s.GetChunkFuncFrom(context.Background(), h, refs, func(b []byte, err error) { c <- res{b, err} })
	r := <-c
	return r.b, r.err
}

// ResolveChunks finds exactly the packed chunks asked for (not the chunks
// stored alone, not unknown ones), and reading through its references
// gives every file's bytes, verified.
func TestResolveChunks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(13, 300, 20000)
	files["zz-big.so"] = testFiles(14, 1, 3<<20)["f0000.py"]
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)

	var hs []Hash
	packed := 0
	for _, name := range sortedKeys(files) {
		hs = append(hs, chunks[name]...)
		if name != "zz-big.so" {
			packed += len(chunks[name])
		}
	}
	hs = append(hs, hs[:5]...)             // duplicates
	hs = append(hs, SumChunk([]byte("?"))) // not stored
	refs, err := s.ResolveChunks(ctx, hs)
	require.NoError(t, err)
	assert.Equal(t, packed, refs.Len(), "every packed chunk, once; no big or unknown one")
	for _, h := range chunks["zz-big.so"] {
		_, ok := refs.ref(h)
		assert.False(t, ok, "a chunk stored alone is looked up as before")
	}
	for _, name := range sortedKeys(files) {
		var got []byte
		for _, h := range chunks[name] {
			b, err := getFrom(s, h, refs)
			require.NoError(t, err, name)
			got = append(got, b...)
		}
		assert.Equal(t, files[name], got, name)
	}
	_, err = getFrom(s, SumChunk([]byte("?")), refs)
	require.ErrorIs(t, err, ErrNotFound)
}

// References resolved before GC repacked their chunks are stale: the pack
// they name is gone. Reading through them still gives the right bytes (the
// reader looks the chunk up again), and a corrupt packed chunk is still
// reported as corrupt.
func TestResolvedChunksAfterRepackAndCorruption(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(15, 200, 3000)
	writeSnapshot(t, s, "all", files)
	few := map[string][]byte{}
	for _, name := range sortedKeys(files)[:10] {
		few[name] = files[name]
	}
	snap := writeSnapshot(t, s, "few", few)
	chunks := fileChunks(t, s, snap)
	var hs []Hash
	for _, name := range sortedKeys(few) {
		hs = append(hs, chunks[name]...)
	}
	refs, err := s.ResolveChunks(ctx, hs)
	require.NoError(t, err)
	require.Equal(t, len(hs), refs.Len())

	require.NoError(t, s.DeleteSnapshot(ctx, "all"))
	_, err = s.GC(ctx)
	require.NoError(t, err)
	for _, h := range hs {
		r, _ := refs.ref(h)
		v, err := s.value(chunkKey(h))
		require.NoError(t, err)
		id, _, _, err := decodeRef(v)
		require.NoError(t, err)
		require.NotEqual(t, r.id, id, "repacked: the resolved reference is stale")
	}
	s.packCache = packCache{} // nothing of the old packs left in memory
	for _, name := range sortedKeys(few) {
		b, err := getFrom(s, chunks[name][0], refs)
		require.NoError(t, err, name)
		assert.Equal(t, few[name], b, name)
	}

	bad := chunks[sortedKeys(few)[3]][0]
	refs, err = s.ResolveChunks(ctx, []Hash{bad})
	require.NoError(t, err)
	alterPacked(t, s, bad)
	s.packCache = packCache{}
	_, err = getFrom(s, bad, refs)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), bad.String())
}
