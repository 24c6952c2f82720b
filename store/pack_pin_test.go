package store

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// packsOf returns the distinct packs holding the files' chunks, in file
// order, with one packed chunk of each.
func packsOf(t *testing.T, s *Store, files map[string][]byte, chunks map[string][]Hash) ([]packID, []Hash) {
	t.Helper()
	var ids []packID
	var member []Hash
	seen := map[packID]bool{}
	for _, name := range sortedKeys(files) {
		for _, h := range chunks[name] {
			v, err := s.value(chunkKey(h))
			require.NoError(t, err)
			if !isRef(v) {
				continue
			}
			id, _, _, err := decodeRef(v)
			require.NoError(t, err)
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
				member = append(member, h)
			}
		}
	}
	return ids, member
}

// A pack's pooled buffer is not reused while a reader holds a pin on it,
// though the pack left the cache long ago and many other packs were
// decompressed into pooled buffers since; and reading after the pins are
// gone still returns every chunk intact.
func TestPinnedPackOutlivesEviction(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(11, 800, 30000) // ~24 MB of small files: ~12 packs
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)
	ids, _ := packsOf(t, s, files, chunks)
	require.Greater(t, len(ids), packCacheEntries+2, "more packs than the cache holds")

	p, err := s.pack(ids[0])
	require.NoError(t, err)
	want := bytes.Clone(p.raw)
	for round := 0; round < 3; round++ {
		for _, id := range ids[1:] {
			q, err := s.pack(id)
			require.NoError(t, err)
			s.packCache.unpin(q)
		}
	}
	s.packCache.mu.Lock()
	evicted := p.evicted
	s.packCache.mu.Unlock()
	assert.True(t, evicted, "the first pack left the cache")
	assert.True(t, bytes.Equal(want, p.raw), "a pinned pack's bytes stay as they were")
	s.packCache.unpin(p)

	for name, data := range files {
		var got []byte
		for _, h := range chunks[name] {
			b, err := s.GetChunk(ctx, h)
			require.NoError(t, err, name)
			got = append(got, b...)
		}
		require.True(t, bytes.Equal(data, got), name)
	}
}

// Many readers, through GetChunk and GetChunkFunc, over more packs than the
// cache holds, in random order, so packs are evicted and their buffers
// reused while others read: every chunk is read intact (each is verified
// against its hash, so a buffer reused too early shows as ErrCorrupt).
func TestPackBuffersReusedUnderConcurrentReads(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(12, 800, 30000)
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)
	var all []Hash
	for _, name := range sortedKeys(files) {
		all = append(all, chunks[name]...)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16*len(all))
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range len(all) / 2 {
				h := all[rng.IntN(len(all))]
				if g%2 == 0 {
					if _, err := s.GetChunk(ctx, h); err != nil {
						errs <- err
					}
					continue
				}
				done := make(chan struct{})
				s.GetChunkFunc(ctx, h, func(_ []byte, err error) {
					if err != nil {
						errs <- err
					}
					close(done)
				})
				<-done
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// pinnedRead reads h through GetChunkPinnedFrom and waits for the result.
func pinnedRead(t *testing.T, s *Store, h Hash) ([]byte, ChunkPin) {
	t.Helper()
	type res struct {
		b   []byte
		pin ChunkPin
		err error
	}
	c := make(chan res, 1)
	s.GetChunkPinnedFrom(context.Background(), h, nil, func(b []byte, pin ChunkPin, err error) { c <- res{b, pin, err} })
	r := <-c
	require.NoError(t, r.err)
	return r.b, r.pin
}

// GetChunkPinnedFrom hands out a packed chunk in place in its pack: the
// bytes stay intact while pinned though every pack is evicted and many
// decompressed into pooled buffers since; once packHeldMax packs are held
// out of the cache it copies instead (no pin), so pins cannot hold more
// packs than that; and after every pin is released the buffers are reused
// and reading still returns every chunk intact.
func TestPinnedChunksOutliveEvictionAndAreBounded(t *testing.T) {
	s := openTest(t, "")
	files := testFiles(13, 2400, 30000) // ~72 MB of small files: ~36 packs
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)
	ids, members := packsOf(t, s, files, chunks)
	require.Greater(t, len(ids), packCacheEntries+packHeldMax+2, "more packs than the cache and the pins may hold")

	type held struct {
		want []byte
		got  []byte
		pin  ChunkPin
	}
	var hs []held
	pinned, copied := 0, 0
	for _, h := range members {
		want, err := s.GetChunk(context.Background(), h)
		require.NoError(t, err)
		got, pin := pinnedRead(t, s, h)
		require.Equal(t, want, got)
		if pin.Pinned() {
			pinned++
		} else {
			copied++
		}
		hs = append(hs, held{want, got, pin})
	}
	assert.GreaterOrEqual(t, pinned, packHeldMax, "chunks are handed out in place")
	assert.Positive(t, copied, "past packHeldMax held packs, chunks are copied")
	assert.LessOrEqual(t, int(s.packCache.held.Load()), packHeldMax+packCacheEntries, "pins hold a bounded number of packs")
	for _, x := range hs {
		assert.True(t, bytes.Equal(x.want, x.got), "a pinned chunk's bytes stay as they were")
	}
	for _, x := range hs {
		x.pin.Release()
	}
	assert.Zero(t, s.packCache.held.Load(), "no pack is held once every pin is released")
	for name, data := range files {
		var got []byte
		for _, h := range chunks[name] {
			b, pin := pinnedRead(t, s, h)
			got = append(got, b...)
			pin.Release()
		}
		require.True(t, bytes.Equal(data, got), name)
	}
}
