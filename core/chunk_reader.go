package core

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/pypj/ptest-snap/store"
)

const (
	// defaultRestoreWorkers read, decompress and verify chunks ahead of the
	// engine. Decompression and hashing are CPU-bound; with 2 cores, 3 keeps
	// both busy while one waits on Badger.
	defaultRestoreWorkers = 3
	// restoreAheadBytes bounds the chunk bytes fetched ahead of the engine.
	restoreAheadBytes = 32 << 20
	// recentChunksBytes bounds the cache of chunks already handed out, so a
	// chunk shared by files close together (identical small files are
	// common in a venv) is read from the store once.
	recentChunksBytes = 8 << 20
	// recentChunkMax: larger chunks are not kept once consumed.
	recentChunkMax = 1 << 20
	// keptChunksBytes bounds the chunks kept for a later reference (see
	// chunkReader.again).
	keptChunksBytes = 16 << 20
	// aheadTreeNodes bounds the nodes of the trees countRefs read and
	// keeps for the producer (about 200 bytes each).
	aheadTreeNodes = 64 << 10
	// countedChunksMax bounds countRefs's count (about 50 bytes a chunk);
	// a larger snapshot is restored without it. venv-full has 34,470.
	countedChunksMax = 1 << 18
)

// chunkFuture is a chunk being fetched; done closes when data or err is set.
type chunkFuture struct {
	h    store.Hash
	done chan struct{}
	data []byte
	err  error
	// pin holds the decompressed pack data lies in, until the last
	// reference is released (store.GetChunkPinnedFrom); a chunk kept for
	// later (recent, kept) is copied out and holds none.
	pin  store.ChunkPin
	refs int // guarded by chunkReader.mu
	// settled: data, pin and err are set; dropped: the last reference
	// went before that, so the worker releases the pin. Both guarded by
	// chunkReader.mu.
	settled, dropped bool
	// size is the chunk's length when the request knew it (a file of
	// one chunk), else 0; prev is the chunk requested from the store
	// before this one, until this one is placed; place is where this one
	// lies, once placed: guessed, found by a lookup (before its pack is
	// read) or read (store.ChunkPlace; none for a chunk stored alone).
	// Guarded by chunkReader.mu; they let a worker guess where the next
	// chunks lie (chunkReader.guessLocked).
	size   int
	prev   *chunkFuture
	place  store.ChunkPlace
	placed bool
}

// chunkReader fetches chunks ahead of their use with a bounded pool of
// workers and a bounded number of bytes in flight. Each chunk is fetched
// once while any reference to it is pending, and kept a little longer in a
// small LRU of recently used chunks, or until its next reference when the
// snapshot references it again further on.
type chunkReader struct {
	st   *store.Store
	sem  *semaphore.Weighted
	jobs chan *chunkFuture
	wg   sync.WaitGroup

	mu       sync.Mutex
	inflight map[store.Hash]*chunkFuture
	recent   map[store.Hash]*list.Element // value: *chunkFuture
	lru      *list.List
	lruBytes int
	fetched  int64 // chunks read from the store
	// lastJob is the chunk last handed to the workers (chunkFuture.prev);
	// guessed and guessedRight count the guesses tried and right.
	lastJob               *chunkFuture
	guessed, guessedRight int64

	// again counts, for each chunk the snapshot references more than
	// once, the references not yet requested; nil until countRefs has
	// walked the snapshot, meanwhile requested counts the requests.
	again     map[store.Hash]int32
	requested map[store.Hash]int32
	// counted: again holds every chunk referenced further on (countRefs
	// walked the whole snapshot), so a released chunk it lacks is not
	// kept in recent: nothing will ask for it again.
	counted bool
	// kept holds chunks again says are referenced further on, so that
	// such a reference, which is often far from the first (the same
	// LICENSE or __init__.py in two packages), does not read the chunk
	// again: a small chunk is read by decompressing its whole pack.
	kept      map[store.Hash]*chunkFuture
	keptBytes int
	// noRecent: released chunks are not kept in recent. An in-place
	// restore (which does not count references) writes few files, and
	// copying out each chunk it read for a reference that rarely comes
	// cost more than reading one again from its pack, which the store
	// most likely still holds decompressed: on venv-full after change
	// small, awscli's 11.8 MB cloned, ~0.07 s of the host's CPU here.
	noRecent bool

	// trees are the trees countRefs read, for the producer's walk, which
	// reads the same trees in the same order, mostly later: read and
	// decoded once, not twice. The balance of an entry is the times
	// countRefs passed it minus the times the producer did; its tree is
	// nil when the producer was first or there was no room.
	trees     map[store.Hash]*aheadTree
	treeNodes int
	treesDone bool // countRefs is not walking (any more)

	// refs, once countRefs has resolved them, says where the snapshot's
	// packed chunks are, so the workers need no Badger lookup for them
	// (store.ChunkRefs). An in-place restore (no countRefs) does not
	// resolve them: resolving the ~6,300 chunks beneath a directory the
	// target lacks (awscli, undoing change small on venv-full) in one
	// pass, on a goroutine of its own as the walk reached it, was measured
	// without gain — the pass took 12-25 ms, about what the lookups it
	// saved cost (Badger's share of the host's CPU was ~10 ms), and the
	// host's CPU stayed at 204 ms median either way (perf, 6 alternating
	// warm runs each). It finds most of them where it guesses instead,
	// right after the chunk read before (guessLocked), with no lookup and
	// no pass.
	refs atomic.Pointer[store.ChunkRefs]
}

type aheadTree struct {
	tree    *store.Tree
	balance int
}

// newChunkReader starts the workers and, when snap is not nil, a walk of
// its trees that finds the chunks referenced more than once (countRefs);
// with snap nil (an in-place restore) no chunk is kept once released.
func newChunkReader(ctx context.Context, st *store.Store, workers int, snap *store.Snapshot) *chunkReader {
	if workers <= 0 {
		workers = defaultRestoreWorkers
	}
	cr := &chunkReader{
		st:        st,
		sem:       semaphore.NewWeighted(restoreAheadBytes),
		jobs:      make(chan *chunkFuture, 256),
		inflight:  map[store.Hash]*chunkFuture{},
		recent:    map[store.Hash]*list.Element{},
		lru:       list.New(),
		requested: map[store.Hash]int32{},
		kept:      map[store.Hash]*chunkFuture{},
		trees:     map[store.Hash]*aheadTree{},
	}
	for i := 0; i < workers; i++ {
		cr.wg.Add(1)
		go cr.work(ctx)
	}
	cr.treesDone = snap == nil
	cr.noRecent = snap == nil
	if snap != nil {
		cr.wg.Add(1)
		go func() {
			defer cr.wg.Done()
			cr.countRefs(ctx, snap)
		}()
	}
	return cr
}

// countRefs walks snap's trees, as the restore's producer does but without
// waiting for anything, and sets again. Measured on venv-full: 536 chunks
// are referenced 2,285 times, and reading them again cost 48 of a
// restore's 139 pack decompressions (0.3 s of CPU). The walk alone costs
// 0.1 s, mostly reading the 7,963 trees, which the producer then takes
// from it (trees) instead of reading them itself. On error (the
// producer's own walk reports it) or past countedChunksMax no chunk is
// kept.
func (cr *chunkReader) countRefs(ctx context.Context, snap *store.Snapshot) {
	defer func() {
		cr.mu.Lock()
		defer cr.mu.Unlock()
		cr.treesDone = true
		for h, a := range cr.trees {
			if a.balance <= 0 {
				delete(cr.trees, h)
			}
		}
	}()
	counts := map[store.Hash]int32{}
	var walk func(root store.Hash) error
	walk = func(root store.Hash) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		tree, err := cr.st.GetTree(ctx, root)
		if err != nil {
			return err
		}
		cr.offerTree(root, tree)
		for i := range tree.Nodes {
			n := &tree.Nodes[i]
			for _, h := range n.Content {
				counts[h]++
			}
			if len(counts) > countedChunksMax {
				return errTooManyChunks
			}
			if n.Type == store.NodeDir {
				if err := walk(n.Subtree); err != nil {
					return err
				}
			}
		}
		return nil
	}
	again := map[store.Hash]int32{}
	for _, s := range snap.Streams {
		if walk(s.Root) != nil {
			// Stop counting requests; keep nothing.
			cr.mu.Lock()
			cr.again, cr.requested = again, nil
			cr.mu.Unlock()
			return
		}
	}
	cr.resolve(ctx, counts)
	cr.mu.Lock()
	defer cr.mu.Unlock()
	for h, n := range counts {
		if n -= cr.requested[h]; n > 0 && counts[h] > 1 {
			again[h] = n
		}
	}
	cr.again, cr.requested = again, nil
	cr.counted = true
	// Chunks released before again was known are still in the LRU.
	for h, el := range cr.recent {
		if f := el.Value.(*chunkFuture); again[h] > 0 && cr.keptBytes+len(f.data) <= keptChunksBytes {
			cr.lru.Remove(el)
			delete(cr.recent, h)
			cr.lruBytes -= len(f.data)
			cr.kept[h] = f
			cr.keptBytes += len(f.data)
		}
	}
}

var errTooManyChunks = errors.New("too many chunks to count")

// resolve finds where the counted chunks are stored, in one ordered pass
// (store.ResolveChunks), for the workers. The chunks requested meanwhile
// were looked up one by one; on error every chunk is.
func (cr *chunkReader) resolve(ctx context.Context, counts map[store.Hash]int32) {
	hs := make([]store.Hash, 0, len(counts))
	for h := range counts {
		hs = append(hs, h)
	}
	if refs, err := cr.st.ResolveChunks(ctx, hs); err == nil {
		cr.refs.Store(refs)
	}
}

// offerTree keeps a tree countRefs read for the producer, unless the
// producer read it already or the trees kept are too many.
func (cr *chunkReader) offerTree(h store.Hash, t *store.Tree) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	a := cr.trees[h]
	if a == nil {
		a = &aheadTree{}
		cr.trees[h] = a
	}
	a.balance++
	switch {
	case a.balance == 0:
		delete(cr.trees, h)
	case a.balance > 0 && a.tree == nil && cr.treeNodes+len(t.Nodes) <= aheadTreeNodes:
		a.tree = t
		cr.treeNodes += len(t.Nodes)
	}
}

// tree returns the tree root for the producer's walk, from countRefs when
// it read it already. The tree is shared: neither may modify it.
func (cr *chunkReader) tree(ctx context.Context, h store.Hash) (*store.Tree, error) {
	cr.mu.Lock()
	a := cr.trees[h]
	if a == nil {
		if cr.treesDone {
			cr.mu.Unlock()
			return cr.st.GetTree(ctx, h)
		}
		a = &aheadTree{}
		cr.trees[h] = a
	}
	a.balance--
	t := a.tree
	if a.balance <= 0 && t != nil {
		a.tree = nil
		cr.treeNodes -= len(t.Nodes)
	}
	if a.balance == 0 {
		delete(cr.trees, h)
	}
	cr.mu.Unlock()
	if t != nil {
		return t, nil
	}
	return cr.st.GetTree(ctx, h)
}

// countRequest notes one more request of h; cr.mu is held.
func (cr *chunkReader) countRequest(h store.Hash) {
	if cr.again == nil {
		cr.requested[h]++
		return
	}
	if n, ok := cr.again[h]; ok {
		if n <= 1 {
			delete(cr.again, h)
		} else {
			cr.again[h] = n - 1
		}
	}
}

func (cr *chunkReader) work(ctx context.Context) {
	defer cr.wg.Done()
	for f := range cr.jobs {
		if err := ctx.Err(); err != nil {
			f.err = err
			close(f.done)
			continue
		}
		// Not GetChunk: a worker does not wait for a pack another
		// worker is decompressing, it moves on to the next chunks and
		// so starts on the next pack (GetChunkFunc says why).
		cr.mu.Lock()
		guess := cr.guessLocked(f)
		if guess.Known() {
			cr.guessed++
		}
		cr.mu.Unlock()
		placed := func(place store.ChunkPlace) {
			cr.mu.Lock()
			cr.placeLocked(f, place)
			cr.mu.Unlock()
		}
		cr.st.GetChunkPinnedGuess(ctx, f.h, cr.refs.Load(), guess, placed, func(data []byte, pin store.ChunkPin, place store.ChunkPlace, err error) {
			cr.mu.Lock()
			f.data, f.pin, f.err, f.settled = data, pin, err, true
			cr.placeLocked(f, place)
			if guess.Known() && place == guess {
				cr.guessedRight++
			}
			dropped := f.dropped
			cr.mu.Unlock()
			close(f.done)
			if dropped {
				pin.Release()
			}
		})
	}
}

// guessBack bounds how many chunks still being read a guess steps over.
const guessBack = 8

// guessLocked returns where f's chunk most likely lies, if its length is
// known: right after the last chunk requested before it whose place is
// known, past the lengths of those requested between, which are still
// being looked up (store.GetChunkPinnedGuess says why, and why a wrong guess is
// harmless). cr.mu is held.
func (cr *chunkReader) guessLocked(f *chunkFuture) store.ChunkPlace {
	if f.size <= 0 {
		return store.ChunkPlace{}
	}
	skip := 0
	q := f.prev
	for range guessBack {
		switch {
		case q == nil:
			return store.ChunkPlace{}
		case q.placed:
			return q.place.After(skip, f.size)
		case q.size <= 0:
			return store.ChunkPlace{}
		}
		skip += q.size
		q = q.prev
	}
	return store.ChunkPlace{}
}

// placeLocked notes where f's chunk lies, found by a lookup or read; cr.mu
// is held. A guess is not noted before it is checked: noted, a wrong one
// (a chunk stored before, in another pack) made the chunks guessed after
// it wrong too, each a hash and a lookup — undoing change small on
// venv-full, 4,745-4,990 of 6,287 chunks found where guessed against
// 6,046 (-v).
func (cr *chunkReader) placeLocked(f *chunkFuture, place store.ChunkPlace) {
	f.place, f.placed, f.prev = place, true, nil
}

// chunkWeightAt is the memory reserved for chunk k of a file of size: an
// upper bound of its length, as every chunk but the last is at least the
// chunker's Min and none is longer than its Max.
func chunkWeightAt(size int64, k int) int64 {
	left := size - int64(k)*int64(store.DefaultChunkerParams.Min)
	if left < 1 {
		return 1
	}
	if max := int64(store.DefaultChunkerParams.Max); left > max {
		return max
	}
	return left
}

// request returns a future for chunk h, reserving weight bytes (released
// by release). It blocks while too many bytes are ahead. size is the
// chunk's length if known (a file of one chunk), else 0.
func (cr *chunkReader) request(ctx context.Context, h store.Hash, weight int64, size int64) (*chunkFuture, error) {
	if err := cr.sem.Acquire(ctx, weight); err != nil {
		return nil, err
	}
	cr.mu.Lock()
	cr.countRequest(h)
	if f, ok := cr.inflight[h]; ok {
		f.refs++
		cr.mu.Unlock()
		return f, nil
	}
	if f, ok := cr.kept[h]; ok {
		delete(cr.kept, h)
		cr.keptBytes -= len(f.data)
		f.refs = 1
		cr.inflight[h] = f
		cr.mu.Unlock()
		return f, nil
	}
	if el, ok := cr.recent[h]; ok {
		f := el.Value.(*chunkFuture)
		cr.lru.Remove(el)
		delete(cr.recent, h)
		cr.lruBytes -= len(f.data)
		f.refs = 1
		cr.inflight[h] = f
		cr.mu.Unlock()
		return f, nil
	}
	f := &chunkFuture{h: h, done: make(chan struct{}), refs: 1, prev: cr.lastJob}
	if size > 0 && size <= math.MaxInt32 {
		f.size = int(size)
	}
	cr.lastJob = f
	cr.inflight[h] = f
	cr.fetched++
	cr.mu.Unlock()
	select {
	case cr.jobs <- f:
		return f, nil
	case <-ctx.Done():
		f.err = ctx.Err()
		close(f.done)
		return f, nil
	}
}

// release drops one reference to f and the weight reserved for it.
func (cr *chunkReader) release(f *chunkFuture, weight int64) {
	cr.sem.Release(weight)
	var pin store.ChunkPin
	// The pack goes back after the lock: unpinning takes the store's.
	defer func() { pin.Release() }()
	cr.mu.Lock()
	defer cr.mu.Unlock()
	f.refs--
	if f.refs > 0 {
		return
	}
	delete(cr.inflight, f.h)
	if !f.settled {
		f.dropped = true // still being fetched (the reader gave up); drop it
		return
	}
	pin, f.pin = f.pin, store.ChunkPin{}
	if f.err != nil || len(f.data) > recentChunkMax {
		return
	}
	keep := cr.again[f.h] > 0 && cr.keptBytes+len(f.data) <= keptChunksBytes
	if !keep && (cr.counted && cr.again[f.h] == 0 || cr.noRecent) {
		return // not referenced again, or not worth keeping
	}
	if pin.Pinned() {
		// Kept beyond this reference: its own copy, not its pack.
		f.data = bytes.Clone(f.data)
	}
	if keep {
		cr.kept[f.h] = f
		cr.keptBytes += len(f.data)
		return
	}
	cr.recent[f.h] = cr.lru.PushFront(f)
	cr.lruBytes += len(f.data)
	for cr.lruBytes > recentChunksBytes {
		el := cr.lru.Back()
		old := el.Value.(*chunkFuture)
		cr.lru.Remove(el)
		delete(cr.recent, old.h)
		cr.lruBytes -= len(old.data)
	}
}

// counts returns the chunks read from the store, and of them those whose
// place was guessed and those found there (guessLocked).
func (cr *chunkReader) counts() (fetched, guessed, right int64) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.fetched, cr.guessed, cr.guessedRight
}

// close stops the workers; no request may follow.
func (cr *chunkReader) close() {
	close(cr.jobs)
	cr.wg.Wait()
}
