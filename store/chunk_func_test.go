package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fileChunks returns the chunks of the root tree's files by name.
func fileChunks(t *testing.T, s *Store, snap *Snapshot) map[string][]Hash {
	t.Helper()
	root, err := s.GetTree(context.Background(), snap.Streams[0].Root)
	require.NoError(t, err)
	out := map[string][]Hash{}
	for _, n := range root.Nodes {
		if n.Type == NodeFile {
			out[n.Name] = n.Content
		}
	}
	return out
}

// getFunc calls GetChunkFunc and returns a channel with its one result.
func getFunc(s *Store, h Hash) (<-chan []byte, <-chan error, *atomic.Int32) {
	data, errs := make(chan []byte, 1), make(chan error, 1)
	calls := &atomic.Int32{}
	s.GetChunkFunc(context.Background(), h, func(b []byte, err error) {
		calls.Add(1)
		data <- b
		errs <- err
	})
	return data, errs, calls
}

func TestGetChunkFuncQueuesOnAPackBeingLoaded(t *testing.T) {
	s := openTest(t, "")
	files := testFiles(7, 40, 3000)
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)
	h := chunks["f0005.py"][0]
	v, err := s.value(chunkKey(h))
	require.NoError(t, err)
	id, _, _, err := decodeRef(v)
	require.NoError(t, err)

	// Another reader is loading the pack: the chunk waits for it without
	// blocking the caller, and is delivered by the loader.
	_, load, leader := s.packCache.begin(id)
	require.True(t, leader)
	data, errs, calls := getFunc(s, h)
	assert.Zero(t, calls.Load(), "queued, not waited for")
	raw, err := s.loadPack(id)
	waiters := s.packCache.finish(id, load, raw, err)
	for _, w := range waiters {
		w(load.p, load.err)
	}
	s.packCache.unpin(load.p) // the leader's pin
	require.NoError(t, <-errs)
	assert.Equal(t, files["f0005.py"], <-data)
	assert.Equal(t, int32(1), calls.Load())

	// Now cached: delivered before GetChunkFunc returns.
	data, errs, calls = getFunc(s, chunks["f0006.py"][0])
	assert.Equal(t, int32(1), calls.Load())
	require.NoError(t, <-errs)
	assert.Equal(t, files["f0006.py"], <-data)
}

func TestGetChunkFuncConcurrentAndCorrupt(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	// Enough small files for several packs, and a large unpacked one.
	files := testFiles(8, 300, 20000)
	files["zz-big.so"] = testFiles(9, 1, 3<<20)["f0000.py"]
	snap := writeSnapshot(t, s, "snap", files)
	chunks := fileChunks(t, s, snap)

	bad := chunks["f0100.py"][0]
	alterPacked(t, s, bad)
	v, err := s.value(chunkKey(bad))
	require.NoError(t, err)
	id, _, _, err := decodeRef(v)
	require.NoError(t, err)
	s.packCache.drop(id)

	type result struct {
		name string
		k    int
		data []byte
		err  error
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	jobs := make(chan result)
	for range 6 {
		wg.Go(func() {
			for j := range jobs {
				s.GetChunkFunc(ctx, chunks[j.name][j.k], func(b []byte, err error) {
					mu.Lock()
					results = append(results, result{j.name, j.k, b, err})
					mu.Unlock()
				})
			}
		})
	}
	want := 0
	for _, name := range sortedKeys(files) {
		for k := range chunks[name] {
			jobs <- result{name: name, k: k}
			want++
		}
	}
	close(jobs)
	wg.Wait()
	require.Len(t, results, want, "every done called once, by the time every loader returned")
	got := map[string][]byte{}
	for _, r := range results {
		if chunks[r.name][r.k] == bad {
			require.ErrorIs(t, r.err, ErrCorrupt)
			assert.Contains(t, r.err.Error(), bad.String(), "the error names the chunk")
			continue
		}
		require.NoError(t, r.err, r.name)
		got[r.name] = append(got[r.name], r.data...) // chunks of one file arrive in any order
	}
	for name, data := range files {
		if name == "f0100.py" {
			continue
		}
		if len(chunks[name]) == 1 {
			assert.Equal(t, data, got[name], name)
		} else {
			assert.Len(t, got[name], len(data), name)
		}
	}
}
