package store

import (
	"bytes"
	"container/list"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// Small chunks are stored in packs.
//
// Why (measured on venv-full, the 37,725 files of at most 64 KiB, 193 MB of
// their 350 MB; compress.BenchmarkVenvLevels and a one-off breakdown; the
// limit is 256 KiB since, see packMaxChunk):
//
//	each file its own zstd frame (level default)            72.6 MB
//	+ 112 KiB dictionary trained on the first 8 MiB         68.1 MB (training 4.6 s, encoding 2x slower)
//	+ 112 KiB dictionary trained on 8 MiB spread samples    66.9 MB (training 54 s)
//	+ 512 KiB dictionary, 16 MiB spread samples             66.0 MB (training 86 s)
//	packs of the files of one directory, <= 256 KiB         62.1 MB
//	packs in arrival (walk) order, <= 256 KiB               59.6 MB
//	packs in arrival (walk) order, <= 1 MiB                 56.2 MB
//	packs in arrival (walk) order, <= 2 MiB                 55.3 MB
//	packs in arrival (walk) order, <= 4 MiB                 54.6 MB
//
// A dictionary only shares what all files have in common; a pack also shares
// what neighbouring files have in common (a module's .py and its siblings,
// a dist-info's files), which is most of what a solid tar.zst finds. With
// the large files (46 MB compressed) the store lands near 105 MB for the
// venv against the 110 MB target only with packs, so the store packs.
//
// A packed chunk keeps its own key ('c' hash) and identity: trees, dedup and
// GC still speak of chunks. Its value is a reference (pack id, offset,
// length) instead of the compressed bytes; the pack ('p' id) holds the
// members' raw bytes, concatenated in arrival order and compressed as one
// frame. A pack and its members' references are written in one Badger
// transaction, so a reference never points to a pack that is not there.
// Pack ids are random, never content hashes: a pack GC is deleting can
// never be re-created under the same id by a concurrent writer.
//
// Reading one small file decompresses its whole pack, so readers keep the
// last few packs decompressed (packCache); a restore reads files in tree
// order, which is close to the order they were packed in. A restore's
// readers do not wait for a pack another one is decompressing
// (Store.GetChunkFunc), so the next packs are decompressed meanwhile.
const (
	// packMaxChunk: chunks up to this size are packed; above it a chunk is
	// compressed alone. 256 KiB, the chunker's Min, so that every file
	// stored as one chunk is packed: files of 64-256 KiB (50 MB of
	// venv-full: large modules, their .pyc, C headers) share as much with
	// their neighbours as smaller ones. Measured on venv-full (single
	// chunks in walk order, 2 MiB packs, SpeedDefault, stored MB of
	// packs + chunks alone): 64 KiB 55.3 + 46.0 = 101.3 MB, 128 KiB
	// 70.4 + 27.7 = 98.1 MB, 256 KiB 80.3 + 17.4 = 97.7 MB, for the same
	// compression CPU. A create of venv-full through the CLI, alternating
	// 3 runs each: store 107.54-107.59 MB with 64 KiB, 104.03-104.07 MB
	// with 256 KiB, CPU 3.9-4.4 s either way. A restore decompresses
	// each pack about once either way; reading one such file alone costs
	// a 2 MiB pack instead of its own chunk.
	//
	// Stores written with 64 KiB stay readable (a reference may only be
	// shorter than the limit); format-1 readers would reject a longer
	// reference as corrupt, so they are refused the record (FormatMajor 2).
	packMaxChunk = 256 << 10
	// packTarget: a pack is sealed once its raw bytes reach this. 2 MiB
	// rather than 1: 1 MB smaller and 10 % less compression CPU for the
	// venv's small files (one thread: 1.06 -> 0.96 s); with large chunks
	// at SpeedFastest it is what kept the store under 110 MB
	// (core.BenchmarkVenvFull store-MB 110.7 with 1 MiB packs, 109.8 with
	// 2 MiB; bigChunkLevel says why large chunks stay at the default). A restore reads files in pack order, so it still
	// decompresses each pack about once (BenchmarkStoreVenvFull pack-loads
	// 151 for 91 packs, reading every file through GetChunk; a core
	// restore of venv-full, which keeps chunks referenced again, 98 for
	// 91, against 137 without that); the cost is 8 more MiB of decompressed packs in
	// the cache and 1 MiB more per pack being filled or sealed. References
	// of stores written with 1 MiB packs stay valid (offsets only grow).
	packTarget = 2 << 20
	// packCacheEntries decompressed packs are kept for readers.
	packCacheEntries = 8
)

type packID [16]byte

// String is the hex form, for messages.
func (id packID) String() string { return hex.EncodeToString(id[:]) }

// refMarker starts a chunk value that is a pack reference; compress's
// methods are small numbers, so the first byte tells them apart.
const refMarker = 0x80

func encodeRef(id packID, off, n int) []byte {
	b := append([]byte{refMarker}, id[:]...)
	b = binary.AppendUvarint(b, uint64(off))
	return binary.AppendUvarint(b, uint64(n))
}

func isRef(v []byte) bool { return len(v) > 0 && v[0] == refMarker }

func decodeRef(v []byte) (id packID, off, n int, err error) {
	if len(v) < 1+len(id)+2 || v[0] != refMarker {
		return id, 0, 0, fmt.Errorf("%w: bad pack reference", ErrCorrupt)
	}
	copy(id[:], v[1:])
	rest := v[1+len(id):]
	o, k := binary.Uvarint(rest)
	if k <= 0 || o > packTarget+packMaxChunk {
		return id, 0, 0, fmt.Errorf("%w: bad pack reference offset", ErrCorrupt)
	}
	l, k2 := binary.Uvarint(rest[k:])
	if k2 <= 0 || l > packMaxChunk || k+k2 != len(rest) {
		return id, 0, 0, fmt.Errorf("%w: bad pack reference length", ErrCorrupt)
	}
	return id, int(o), int(l), nil
}

func packKey(id packID) []byte { return append([]byte{kindPack}, id[:]...) }

type packMember struct {
	off, n int
	w      *Writer
}

type packBuf struct {
	id      packID
	raw     []byte
	members map[Hash]packMember
	order   []Hash
	// first: a member came from a Writer without a parent (a first
	// snapshot, an import): the pack takes the codec's level, not
	// incrementalPackLevel.
	first bool
	// kinds are the members' kinds (Writer.PutChunkKind), in order;
	// mixed is set once two differ.
	kinds []string
	mixed bool
}

// incrementalPackLevel is the zstd level of packs whose every member comes
// from a Writer with a parent (UseParent): the second snapshot of an env,
// whose packs hold only what changed. Their bytes are few, so a stronger
// level costs little time and is what brings a small change's growth
// under the per-file zstd -3 size of the changed files (issue 2). The new
// file chunks of venv-full's change `small` (5.4 MB in 2 MiB packs, one
// thread): SpeedDefault 1,577 kB in 98 ms, SpeedBetterCompression 1,503 kB
// in 169 ms, SpeedBestCompression 1,412 kB in 697 ms (too slow for a
// second create of ~1.4 s CPU). A first snapshot (350 MB of packs) keeps
// the default, measured for its time (bigChunkLevel).
const incrementalPackLevel = zstd.SpeedBetterCompression

// firstFastEvery: of a first snapshot's packs, every firstFastEvery-th one
// sealed is compressed at SpeedFastest, the others at the codec's level
// (SpeedDefault), when the store runs at its default level. The packs are
// most of a first create's compression CPU (issue 2: the initial create
// must come down to 1.5x tar | zstd -1), and the store's size target
// (110 MB for venv-full) leaves room for some of them, not all, at the
// fastest level.
//
// Measured on the 129 packs of a venv-full store (272 MB raw, one thread's
// CPU from CLOCK_THREAD_CPUTIME_ID, best of 3 per pack): SpeedDefault
// 79.91 MB in 1.16 s, SpeedFastest 86.76 MB in 0.89 s, so every pack at
// SpeedFastest would add 6.85 MB and the store (104.6 MB) would pass the
// target. What the default level buys per CPU is much the same in every
// pack: 45-90 ms of one thread per MB saved for 100 of the 129, and no
// cheap predictor picks better packs than chance by more than a few per
// cent: at ~3.4 MB of growth, packs with the most .pyc (>= 55 % of their
// bytes) save 181 ms, those with the most non-text bytes 182 ms, every
// other pack 170-197 ms, the best packs in hindsight 215 ms. Giving
// like kinds different levels does not pay either: .pyc alone in packs
// at SpeedFastest beside the rest at SpeedDefault (a simulation of the
// packer on venv-full's files in walk order) is 84.80 MB against 78.94
// for all at SpeedDefault, for 0.17 s: a module's .pyc shares much with
// its .py in the same frame (a frame per kind within each pack: +3.2 MB
// at SpeedDefault). Nor do order or size rescue SpeedFastest: all packs
// at SpeedFastest in walk order 85.48 MB, grouped by kind 85.76, each
// .pyc right after its .py 84.90, 4 MiB packs 86.34.
//
// So every other pack: about 3.4 MB more (the store near 108 MB, its
// margin to 110 MB still 2 MB) for about 0.18 s of one thread's CPU. The
// count is the store process's, so which packs are fast varies with the
// workers' timing but how many does not. A level set in Options
// (CompressionLevel) applies to every pack as before.
const firstFastEvery = 2

// packer collects small new chunks into the open pack and seals full packs
// into the chunk queue. Members of the open pack and of packs being sealed
// are readable from here.
type packer struct {
	s       *Store
	mu      sync.Mutex
	sealed  *sync.Cond // signalled when a pack leaves sealing
	open    *packBuf
	sealing map[*packBuf]struct{}
	// mixFirst: a first snapshot's packs alternate levels (firstFastEvery);
	// firstSealed counts them.
	mixFirst    bool
	firstSealed atomic.Int64
	// asyncErr is the first error of a pack sealed on its own goroutine
	// (Writer.sealAsync), returned by every flush after it: a Writer may
	// rely on a member of that pack, so no commit may succeed. Guarded
	// by mu.
	asyncErr error
}

func (p *packer) init(s *Store) {
	p.s = s
	p.mixFirst = s.opts.CompressionLevel == 0
	p.sealed = sync.NewCond(&p.mu)
	p.sealing = map[*packBuf]struct{}{}
}

// packBufPool recycles the raw buffers of packs (2 MiB each, one per ~300
// small files: otherwise the largest source of garbage); packBufsKept
// holds the first few of them out of the collector's reach (keptBufs).
var packBufPool = sync.Pool{New: func() any { b := make([]byte, 0, packBufCap); return &b }}

// packBufsKept: a create has an open pack, one being laid out by kind and
// one sealing per worker at most; a restore's pack cache holds
// packCacheEntries, so it still takes most of its buffers from the pool.
var packBufsKept = keptBufs{max: 6}

// keptBufs is a free list of large buffers that, unlike a sync.Pool, the
// garbage collector does not empty. A create collects every ~80 ms (GOGC
// 25, cmd/ptest-snap), and a sync.Pool drops what it holds within two
// collections: an initial create of venv-full made 12-18 new pack buffers
// (2.25 MiB each) and grew 28-30 encoding scratch buffers (58 MB in all),
// each zeroed by the runtime and faulted in anew, for the 4-6 of each it
// uses at once. It keeps at most max buffers, for the life of the process.
type keptBufs struct {
	mu   sync.Mutex
	bufs []*[]byte
	max  int
}

// get returns a kept buffer, or nil when there is none.
func (k *keptBufs) get() *[]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := len(k.bufs)
	if n == 0 {
		return nil
	}
	b := k.bufs[n-1]
	k.bufs[n-1] = nil
	k.bufs = k.bufs[:n-1]
	return b
}

// put keeps b unless max buffers are kept already; it reports whether it
// did.
func (k *keptBufs) put(b *[]byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.bufs) >= k.max {
		return false
	}
	k.bufs = append(k.bufs, b)
	return true
}

func newPackBuf() *packBuf {
	b := &packBuf{members: map[Hash]packMember{}, raw: getPackBuf()}
	_, _ = rand.Read(b.id[:])
	return b
}

// add puts a chunk of a kind in the open pack, sealing it when full.
func (p *packer) add(w *Writer, h Hash, data []byte, kind string) error {
	p.mu.Lock()
	if p.open == nil {
		p.open = newPackBuf()
	}
	b := p.open
	if _, ok := b.members[h]; ok {
		p.mu.Unlock()
		return nil
	}
	b.members[h] = packMember{off: len(b.raw), n: len(data), w: w}
	b.order = append(b.order, h)
	if w == nil || !w.hasParent.Load() {
		b.first = true
	}
	b.mixed = b.mixed || len(b.kinds) > 0 && b.kinds[0] != kind
	b.kinds = append(b.kinds, kind)
	b.raw = append(b.raw, data...)
	if len(b.raw) < packTarget {
		p.mu.Unlock()
		return nil
	}
	p.open = nil
	p.sealing[b] = struct{}{}
	p.mu.Unlock()
	if w != nil && w.sealAsync.Load() {
		// flush waits for it (b is in p.sealing until seal ends).
		go func() {
			if err := p.seal(b); err != nil {
				p.mu.Lock()
				if p.asyncErr == nil {
					p.asyncErr = err
				}
				p.mu.Unlock()
			}
		}()
		return nil
	}
	return p.seal(b)
}

// seal compresses a pack (outside the lock, so workers keep packing) and
// queues it with its members' references as one group.
func (p *packer) seal(b *packBuf) error {
	if b.mixed {
		p.group(b)
	}
	level := incrementalPackLevel
	if b.first {
		level = 0
		if p.mixFirst && p.firstSealed.Add(1)%firstFastEvery == 0 {
			level = zstd.SpeedFastest
		}
	}
	pe, stored, err := p.s.putFile(packKey(b.id), b.raw, func(dst, src []byte) []byte { return p.s.codec.EncodeLevel(dst, src, level) })
	if err == nil {
		group := make([]kv, 0, 1+len(b.order))
		group = append(group, pe)
		for _, h := range b.order {
			m := b.members[h]
			group = append(group, kv{key: chunkKey(h), val: encodeRef(b.id, m.off, m.n), meta: metaRef})
			// Each member's share of the pack's stored size.
			m.w.addStored(int64(stored) * int64(m.n) / int64(max(len(b.raw), 1)))
		}
		err = p.s.chunks.add(group)
	} else {
		// Writers may have found members of this pack (packer.has) and
		// rely on it: no commit may succeed now.
		p.s.chunks.fail(err)
	}
	p.mu.Lock()
	delete(p.sealing, b)
	p.sealed.Broadcast()
	p.mu.Unlock()
	// No reader can reach b any more (get holds p.mu): reuse its buffer.
	putPackBuf(b.raw)
	return err
}

// group lays the members of a pack leaving the open slot out by kind,
// in arrival order within a kind. Arrival (walk) order already puts a
// module's files together; grouping them by kind inside the pack as well
// (a directory's .py files, then its .pyc, then its dist-info's files)
// lets zstd find more of what like files share, within the pack's one
// frame. Measured on venv-full (single chunks up to 256 KiB in walk
// order, 2 MiB packs, SpeedDefault): 80.30 MB of packs in arrival order,
// 79.44 MB grouped by extension; with the 64 KiB limit 55.29 against
// 54.61 MB. It costs one copy of the pack (a pooled buffer); readers of
// the pack's members (get, has, size) see it before or after, under p.mu.
func (p *packer) group(b *packBuf) {
	idx := make([]int, len(b.order))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(i, j int) int { return strings.Compare(b.kinds[i], b.kinds[j]) })
	raw := getPackBuf()
	order := make([]Hash, 0, len(b.order))
	members := make(map[Hash]packMember, len(b.members))
	for _, i := range idx {
		h := b.order[i]
		m := b.members[h]
		members[h] = packMember{off: len(raw), n: m.n, w: m.w}
		order = append(order, h)
		raw = append(raw, b.raw[m.off:m.off+m.n]...)
	}
	p.mu.Lock()
	old := b.raw
	b.raw, b.members, b.order = raw, members, order
	p.mu.Unlock()
	putPackBuf(old)
}

// flush seals the open pack, however small, and waits for packs other
// goroutines are sealing: a writer may have found one of its chunks in a
// pack another goroutine is compressing, and Commit needs every chunk it
// references in the queue before it flushes the queue.
func (p *packer) flush() error {
	p.mu.Lock()
	b := p.open
	p.open = nil
	var err error
	if b != nil && len(b.order) > 0 {
		p.sealing[b] = struct{}{}
		p.mu.Unlock()
		err = p.seal(b)
		p.mu.Lock()
	}
	for len(p.sealing) > 0 {
		p.sealed.Wait()
	}
	if err == nil {
		err = p.asyncErr
	}
	p.mu.Unlock()
	return err
}

// has reports whether a chunk is in the open pack or one being sealed.
func (p *packer) has(h Hash) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open != nil {
		if _, ok := p.open.members[h]; ok {
			return true
		}
	}
	for b := range p.sealing {
		if _, ok := b.members[h]; ok {
			return true
		}
	}
	return false
}

// size returns the length of a chunk held in an unsealed or sealing pack.
func (p *packer) size(h Hash) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open != nil {
		if m, ok := p.open.members[h]; ok {
			return m.n, true
		}
	}
	for b := range p.sealing {
		if m, ok := b.members[h]; ok {
			return m.n, true
		}
	}
	return 0, false
}

// get returns a copy of a chunk held in an unsealed or sealing pack.
func (p *packer) get(h Hash) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open != nil {
		if m, ok := p.open.members[h]; ok {
			return bytes.Clone(p.open.raw[m.off : m.off+m.n]), true
		}
	}
	for b := range p.sealing {
		if m, ok := b.members[h]; ok {
			return bytes.Clone(b.raw[m.off : m.off+m.n]), true
		}
	}
	return nil, false
}

// packCache keeps the last few decompressed packs. Packs are immutable and
// their ids never reused, so a cached pack is never stale.
//
// A pack's bytes are in a pooled buffer (getPackBuf): decompressing into
// fresh memory cost a restore of venv-full ~200 MB of allocation (98 packs
// of 2 MiB), zeroed by the Go runtime and faulted in anew. So every reader
// holds a pin while it reads a pack's bytes and unpins it after (packPin);
// the buffer goes back to the pool only once the pack has left the cache
// and the last pin is gone. A reader copies what it needs out before it
// unpins.
type packCache struct {
	mu      sync.Mutex
	lru     *list.List // of *cachedPack, most recent first
	items   map[packID]*list.Element
	loading map[packID]*packLoad
	// held counts the packs out of the cache still pinned (their memory
	// is not back in the pool): Store.GetChunkPinnedFrom stops pinning
	// while it is packHeldMax or more. Written under mu.
	held atomic.Int32
}

// packHeldMax bounds the packs pinned chunks keep out of the cache (2 MiB
// each). A restore reading ahead of the engine holds chunks of the last
// ~32 MiB of files it read (core's restoreAheadBytes), from ~16 packs when
// they are read in the order they were packed.
const packHeldMax = 24

// holdsTooMany reports whether packHeldMax packs are held out of the cache.
func (c *packCache) holdsTooMany() bool { return c.held.Load() >= packHeldMax }

// cachedPack is one decompressed pack; pins and evicted are guarded by
// packCache.mu.
type cachedPack struct {
	id      packID
	raw     []byte
	pins    int
	evicted bool // out of the cache: its buffer is freed with the last pin
}

// packLoad is one decompression in progress; done closes when it ends.
type packLoad struct {
	done chan struct{}
	p    *cachedPack // pinned for every reader of the load; nil on error
	err  error
	// waiters are readers that did not wait (Store.GetChunkFunc): the
	// goroutine doing the load calls each once it is done. blocked counts
	// the readers waiting on done. Both guarded by packCache.mu until the
	// load leaves packCache.loading.
	waiters []func(p *cachedPack, err error)
	blocked int
}

// packBufCap is the capacity of a pooled pack buffer (packBufPool, shared
// with the writers): the largest pack a writer seals, packTarget plus one
// chunk. A larger pack (none is written) gets its own memory.
const packBufCap = packTarget + packMaxChunk

func getPackBuf() []byte {
	if b := packBufsKept.get(); b != nil {
		return (*b)[:0]
	}
	return (*packBufPool.Get().(*[]byte))[:0]
}

func putPackBuf(b []byte) {
	if cap(b) != packBufCap {
		return
	}
	b = b[:0]
	if !packBufsKept.put(&b) {
		packBufPool.Put(&b)
	}
}

// unpin drops a reader's pin of p (nil: nothing); p's bytes must not be
// used afterwards.
func (c *packCache) unpin(p *cachedPack) {
	if p == nil {
		return
	}
	c.mu.Lock()
	p.pins--
	free := p.pins == 0 && p.evicted
	if free {
		c.held.Add(-1)
	}
	c.mu.Unlock()
	if free {
		putPackBuf(p.raw)
	}
}

// evictLocked takes p out of the cache's accounting; c.mu is held.
func (c *packCache) evictLocked(p *cachedPack) {
	p.evicted = true
	if p.pins == 0 {
		putPackBuf(p.raw)
	} else {
		c.held.Add(1)
	}
}

// getLocked returns the cached pack id, pinned.
func (c *packCache) getLocked(id packID) (*cachedPack, bool) {
	if c.items == nil {
		return nil, false
	}
	e, ok := c.items[id]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	p := e.Value.(*cachedPack)
	p.pins++
	return p, true
}

// begin returns the cached pack (pinned), or the load to wait for (whose
// pack is pinned for the caller once done closes), or a new load the
// caller must do (leader) and finish.
func (c *packCache) begin(id packID) (p *cachedPack, load *packLoad, leader bool) {
	return c.beginOrQueue(id, nil)
}

// beginOrQueue is begin for a reader that does not wait: when the pack is
// being loaded by another goroutine and then is not nil, then is queued on
// the load (to be called by that goroutine, with the pack pinned for it)
// and nothing is returned.
func (c *packCache) beginOrQueue(id packID, then func(*cachedPack, error)) (p *cachedPack, load *packLoad, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.getLocked(id); ok {
		return p, nil, false
	}
	if l, ok := c.loading[id]; ok {
		if then != nil {
			l.waiters = append(l.waiters, then)
			return nil, nil, false
		}
		l.blocked++
		return nil, l, false
	}
	if c.loading == nil {
		c.loading = map[packID]*packLoad{}
	}
	l := &packLoad{done: make(chan struct{})}
	c.loading[id] = l
	return nil, l, true
}

// cachedOrQueue returns the cached pack id (pinned), or queues then on
// its load in progress (queued), or, when id is neither cached nor being
// loaded, nothing: it starts no load.
func (c *packCache) cachedOrQueue(id packID, then func(*cachedPack, error)) (p *cachedPack, queued bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.getLocked(id); ok {
		return p, false
	}
	if l, ok := c.loading[id]; ok {
		l.waiters = append(l.waiters, then)
		return nil, true
	}
	return nil, false
}

// finish ends a load with the pack's bytes raw (or err): it publishes the
// pack pinned once for the leader and once for each reader of the load,
// wakes the readers waiting for it and returns the queued waiters, which
// the caller must call.
func (c *packCache) finish(id packID, l *packLoad, raw []byte, err error) []func(*cachedPack, error) {
	c.mu.Lock()
	delete(c.loading, id)
	waiters := l.waiters
	l.waiters = nil
	l.err = err
	if err == nil {
		l.p = &cachedPack{id: id, raw: raw, pins: 1 + len(waiters) + l.blocked}
		c.putLocked(l.p)
	}
	c.mu.Unlock()
	close(l.done)
	return waiters
}

func (c *packCache) putLocked(p *cachedPack) {
	if c.items == nil {
		c.items, c.lru = map[packID]*list.Element{}, list.New()
	}
	if _, ok := c.items[p.id]; ok {
		c.evictLocked(p)
		return
	}
	c.items[p.id] = c.lru.PushFront(p)
	for c.lru.Len() > packCacheEntries {
		e := c.lru.Back()
		c.lru.Remove(e)
		old := e.Value.(*cachedPack)
		delete(c.items, old.id)
		c.evictLocked(old)
	}
}

func (c *packCache) drop(id packID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[id]; ok {
		c.lru.Remove(e)
		delete(c.items, id)
		c.evictLocked(e.Value.(*cachedPack))
	}
}
