package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Reading a change index back costs one Badger lookup per directory chunk
// to turn its hash into a pack reference: 7,963 lookups for venv-full's
// index, at 5-8 µs each the largest part of reading it (a create's profile:
// Store.value 85 % of GetChunk). Yet the chunks a snapshot adds to its
// index are stored together, in packs of their own (PutIndexDir), and an
// index chunk says where it ends. So indexPacks, after one lookup leads it
// into a pack, reads the index chunks the pack holds one after the other,
// hashes each, and serves every later chunk of the index it finds there
// without a lookup. A chunk served so is exactly the bytes its hash names
// (it was hashed to be found), so nothing is checked less than by
// GetChunk. A pack of other chunks (a store written before the index had
// packs of its own) simply yields fewer hits: whatever is not found is
// read as before.

// indexPacks resolves the chunks of one change-index read; safe for
// concurrent use. It lives as long as the read: it holds the packs it
// scanned.
type indexPacks struct {
	s  *Store
	mu sync.Mutex
	// chunks are the index chunks found in scanned packs, by hash; each
	// slice is of a cached pack's bytes, which are never written.
	chunks map[Hash][]byte
	// scanned are the offsets of each pack where a chunk was found, so
	// no chunk is hashed twice.
	scanned map[packID]map[int]struct{}
	// lookups counts the chunks resolved through Badger, for tests.
	lookups atomic.Int64
}

func newIndexPacks(s *Store) *indexPacks {
	return newIndexPacksFor(s, 0)
}

// newIndexPacksFor is newIndexPacks for a read of about n index chunks: its
// map of chunks is made for them, rather than grown through ~13 doublings
// as venv-full's 7,962 chunks are found (map growth was ~2.5 MB of the
// 16 MB a parent index read allocated, and its rehashing ~10 % of the
// read's CPU, perf of a second create).
func newIndexPacksFor(s *Store, n int) *indexPacks {
	return &indexPacks{s: s, chunks: make(map[Hash][]byte, n), scanned: map[packID]map[int]struct{}{}}
}

// get returns index chunk h's bytes, verified against h, as GetChunk does.
// The caller must not modify them.
func (p *indexPacks) get(ctx context.Context, h Hash) ([]byte, error) {
	s := p.s
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	p.mu.Lock()
	b, ok := p.chunks[h]
	p.mu.Unlock()
	if ok {
		return b, nil
	}
	if s.packer.has(h) {
		// Still in a pack being written: no reference to follow.
		return s.GetChunk(ctx, h)
	}
	p.lookups.Add(1)
	v, err := s.value(chunkKey(h))
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", h, err)
	}
	if !isRef(v) {
		raw, err := s.codec.Decode(nil, v)
		return checkChunk(h, raw, err)
	}
	id, off, _, err := decodeRef(v)
	if err != nil {
		return checkChunk(h, nil, err)
	}
	pk, err := s.pack(id)
	if errors.Is(err, ErrNotFound) {
		// Repacked by GC between the two reads: GetChunk reads the
		// reference again.
		return s.GetChunk(ctx, h)
	}
	if err != nil {
		return checkChunk(h, nil, err)
	}
	p.mu.Lock()
	// From the start: a snapshot stores its index bottom-up, so the
	// chunks read first (the root, the top directories) are the pack's
	// last ones. From off too, in case the pack begins with something
	// else.
	p.scanLocked(id, pk.raw, 0)
	p.scanLocked(id, pk.raw, off)
	b, ok = p.chunks[h]
	p.mu.Unlock()
	s.packCache.unpin(pk)
	if ok {
		return b, nil
	}
	// Not an index chunk where the reference points: GetChunk's checks
	// say what is wrong.
	return s.GetChunk(ctx, h)
}

// scanLocked hashes the index chunks of pack id found one after the other
// from offset from, stopping at the first that is not one or was scanned
// before. p.mu held. The chunks found are copied out in one piece, and
// hashed on up to scanHashers goroutines: the first read of a snapshot's
// index pack was ~5.8 ms of the ~15 ms venv-full's index takes to read
// (BenchmarkChangeIndexLoadVenvFull), all of it under p.mu, with the
// other readers waiting for the chunks it finds; a copy per chunk was
// 7,962 allocations of it.
func (p *indexPacks) scanLocked(id packID, raw []byte, from int) {
	seen := p.scanned[id]
	if seen == nil {
		// A pack holds up to packTarget+packMaxChunk bytes of index
		// chunks of a few hundred bytes each.
		seen = make(map[int]struct{}, min(len(raw)/minIndexChunkGuess, 1<<14))
		p.scanned[id] = seen
	}
	var ends []int // each chunk's end; a chunk starts where the previous ends
	o := from
	for o < len(raw) {
		if _, ok := seen[o]; ok {
			break
		}
		n, ok := indexDirLen(raw[o:])
		if !ok {
			break
		}
		seen[o] = struct{}{}
		o += n
		ends = append(ends, o-from)
	}
	if len(ends) == 0 {
		return
	}
	// A copy: the pack's buffer is reused once it is unpinned and out of
	// the cache (packCache).
	buf := bytes.Clone(raw[from:o])
	chunk := func(i int) []byte {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		return buf[start:ends[i]:ends[i]]
	}
	sums := make([]Hash, len(ends))
	hashers := min(runtime.GOMAXPROCS(0), scanHashers, len(ends)/scanHashMin)
	if hashers <= 1 {
		for i := range ends {
			sums[i] = SumChunk(chunk(i))
		}
	} else {
		var wg sync.WaitGroup
		per := (len(ends) + hashers - 1) / hashers
		for lo := 0; lo < len(ends); lo += per {
			hi := min(lo+per, len(ends))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := lo; i < hi; i++ {
					sums[i] = SumChunk(chunk(i))
				}
			}()
		}
		wg.Wait()
	}
	for i, h := range sums {
		p.chunks[h] = chunk(i)
	}
}

// scanHashers bounds the goroutines scanLocked hashes on; scanHashMin is
// the fewest chunks each is given (a few hundred bytes each: fewer are
// hashed sooner than a goroutine starts).
const (
	scanHashers = 4
	scanHashMin = 64
)

// minIndexChunkGuess is a small index chunk's size, to size a pack's map
// of scanned offsets (scanLocked): venv-full's average is ~300 bytes.
const minIndexChunkGuess = 256

// indexDirLen returns the length of the index chunk (encodeIndexDir) at the
// start of b, and false if b does not start with a well-formed one. It
// checks the structure only; decodeIndexDir checks the rest.
func indexDirLen(b []byte) (int, bool) {
	if len(b) >= 2 && b[0] == indexNodeMagic && b[1] == indexNodeRootVersion {
		// A large directory's root: its fragments' hashes.
		d := &treeDecoder{b: b[2:]}
		n := d.uvarint(uint64(len(d.b)/len(Hash{})), "fragment count")
		d.bytes(n*uint64(len(Hash{})), "fragments")
		if d.err != nil {
			return 0, false
		}
		return len(b) - len(d.b), true
	}
	if len(b) < 2 || b[0] != indexNodeMagic || (b[1] != indexNodeVersion && b[1] != indexNodeVersionMeta) {
		return 0, false
	}
	d := &treeDecoder{b: b[2:]}
	n := d.uvarint(uint64(len(d.b)/minIndexRecord), "record count")
	for i := uint64(0); i < n && d.err == nil; i++ {
		d.bytes(d.uvarint(maxNameLen, "name"), "name")
		for range 4 {
			d.varint("record")
		}
	}
	nd := d.uvarint(uint64(len(d.b)/minIndexChild), "dir count")
	for i := uint64(0); i < nd && d.err == nil; i++ {
		d.bytes(d.uvarint(maxNameLen, "name"), "name")
		d.bytes(uint64(len(Hash{})), "child")
	}
	if b[1] == indexNodeVersionMeta {
		nm := d.uvarint(uint64(len(d.b)/minIndexMeta), "meta count")
		for i := uint64(0); i < nm && d.err == nil; i++ {
			d.bytes(d.uvarint(maxNameLen, "name"), "name")
			d.bytes(1, "kind")
			d.varint("ctime")
			d.varint("inode")
		}
	}
	if d.err != nil {
		return 0, false
	}
	return len(b) - len(d.b), true
}
