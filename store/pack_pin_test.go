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
