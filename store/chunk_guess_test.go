package store

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// guessed reads h through GetChunkPinnedGuess, waits for the result and
// returns a copy of the bytes (the pin released) with the place found.
func guessed(s *Store, h Hash, guess ChunkPlace) ([]byte, ChunkPlace, error) {
	type res struct {
		b     []byte
		place ChunkPlace
		err   error
	}
	c := make(chan res, 1)
	s.GetChunkPinnedGuess(context.Background(), h, nil, guess, nil, func(b []byte, pin ChunkPin, place ChunkPlace, err error) {
		c <- res{bytes.Clone(b), place, err}
		pin.Release()
	})
	r := <-c
	return r.b, r.place, r.err
}

// Files read in the order they were stored: each one's chunk is found
// right after the previous one's (ChunkPlace.After) without a lookup, and
// is the file's bytes. A wrong guess — a place past the chunk, past the
// pack's end, in a pack not decompressed — still gives the right bytes,
// by a lookup, and decompresses nothing for the guess.
func TestGetChunkPinnedGuess(t *testing.T) {
	s := openTest(t, "")
	files := testFiles(21, 300, 3000)
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)
	names := sortedKeys(files)

	var place ChunkPlace
	hits := 0
	for i, name := range names {
		require.Len(t, chunks[name], 1)
		guess := place.After(0, len(files[name]))
		b, got, err := guessed(s, chunks[name][0], guess)
		require.NoError(t, err, name)
		require.Equal(t, files[name], b, name)
		require.True(t, got.Known(), "a packed chunk's place: %s", name)
		if i > 0 && got == guess {
			hits++
		}
		place = got
	}
	assert.Greater(t, hits, len(names)*9/10, "most chunks lie right after the previous one")
	assert.EqualValues(t, hits, s.packGuesses.Load())

	first, second := chunks[names[0]][0], chunks[names[1]][0]
	_, p0, err := guessed(s, first, ChunkPlace{})
	require.NoError(t, err)
	for _, wrong := range []ChunkPlace{
		p0.After(1, len(files[names[1]])),         // one byte off
		p0.After(0, len(files[names[1]])-1),       // one byte short
		p0.After(packTarget+packMaxChunk, 100),    // past the pack's end
		ChunkPlace{},                              // none
		p0.After(0, packMaxChunk+1),               // longer than a packed chunk
		{ref: packRef{off: 0, n: 3000}, ok: true}, // a pack that is not there
	} {
		before := s.packGuesses.Load()
		b, got, err := guessed(s, second, wrong)
		require.NoError(t, err)
		assert.Equal(t, files[names[1]], b)
		assert.True(t, got.Known())
		assert.NotEqual(t, wrong, got)
		assert.Equal(t, before, s.packGuesses.Load(), "not found where guessed")
	}

	// A pack that is not decompressed is not decompressed for a guess:
	// the chunk is looked up, and its pack loaded for it, once.
	right := p0.After(0, len(files[names[1]]))
	s.packCache = packCache{}
	loads, hitsBefore := s.packLoads.Load(), s.packGuesses.Load()
	b, got, err := guessed(s, second, right)
	require.NoError(t, err)
	assert.Equal(t, files[names[1]], b)
	assert.Equal(t, right, got)
	assert.Equal(t, hitsBefore, s.packGuesses.Load(), "looked up")
	assert.Equal(t, loads+1, s.packLoads.Load())
}

// A chunk altered in its pack is never handed out where it was guessed:
// its bytes do not hash to it, so it is looked up, and reported corrupt
// naming it.
func TestGetChunkPinnedGuessCorrupt(t *testing.T) {
	s := openTest(t, "")
	files := testFiles(22, 50, 3000)
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)
	names := sortedKeys(files)
	prev, bad := chunks[names[9]][0], chunks[names[10]][0]
	alterPacked(t, s, bad)
	s.packCache = packCache{}

	_, p, err := guessed(s, prev, ChunkPlace{})
	require.NoError(t, err)
	guess := p.After(0, len(files[names[10]]))
	_, _, err = guessed(s, bad, guess)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), bad.String())
	assert.Zero(t, s.packGuesses.Load())
}

// A guess into a pack being decompressed waits for it, on the goroutine
// decompressing it, as GetChunkFunc does: then a right guess is the chunk
// without a lookup, and a wrong one is looked up there. placed says where
// a looked-up chunk is before its pack is read.
func TestGetChunkPinnedGuessIntoLoadingPack(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(23, 40, 3000)
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)
	names := sortedKeys(files)
	_, p0, err := guessed(s, chunks[names[0]][0], ChunkPlace{})
	require.NoError(t, err)

	type res struct {
		b     []byte
		place ChunkPlace
		err   error
	}
	for _, c := range []struct {
		name  string
		guess ChunkPlace
		hit   bool
	}{
		{"right", p0.After(0, len(files[names[1]])), true},
		{"wrong", p0.After(7, len(files[names[1]])), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.packCache = packCache{}
			id := p0.ref.id
			_, load, leader := s.packCache.begin(id)
			require.True(t, leader)
			hits := s.packGuesses.Load()
			got := make(chan res, 1)
			var placedAt []ChunkPlace
			s.GetChunkPinnedGuess(ctx, chunks[names[1]][0], nil, c.guess, func(p ChunkPlace) { placedAt = append(placedAt, p) },
				func(b []byte, pin ChunkPin, place ChunkPlace, err error) {
					got <- res{bytes.Clone(b), place, err}
					pin.Release()
				})
			select {
			case <-got:
				t.Fatal("handed out before its pack was decompressed")
			default:
			}
			raw, err := s.loadPack(id)
			require.NoError(t, err)
			waiters := s.packCache.finish(id, load, raw, err)
			require.Len(t, waiters, 1, "queued on the load")
			for _, w := range waiters {
				w(load.p, load.err)
			}
			s.packCache.unpin(load.p)
			r := <-got
			require.NoError(t, r.err)
			assert.Equal(t, files[names[1]], r.b)
			want := p0.After(0, len(files[names[1]]))
			assert.Equal(t, want, r.place)
			if c.hit {
				assert.Equal(t, hits+1, s.packGuesses.Load())
				assert.Empty(t, placedAt, "no lookup")
			} else {
				assert.Equal(t, hits, s.packGuesses.Load())
				assert.Equal(t, []ChunkPlace{want}, placedAt, "looked up")
			}
		})
	}
}
