package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

func compressLevel(l int) zstd.EncoderLevel {
	switch {
	case l <= 1:
		return zstd.SpeedFastest
	case l == 2:
		return zstd.SpeedDefault
	case l == 3:
		return zstd.SpeedBetterCompression
	default:
		return zstd.SpeedBestCompression
	}
}

// kv is one Badger entry.
type kv struct {
	key, val []byte
	meta     byte // Badger user meta: metaRef marks a pack reference
	// buf, if set, is the pooled buffer val lives in (valuePools): the
	// queue recycles it once the entry is in Badger.
	buf *[]byte
	// file, if set, is the bulk file (bulk_files.go) val locates, open
	// until the queue syncs it; fileLen is its length, which counts
	// against the batch's size so that a batch holds a bounded number of
	// open files and unsynced bytes.
	file    *bulkFile
	fileLen int
}

// putFile encodes data with encode (one of the codec's methods) into a
// new bulk file: packs and chunks stored alone above packMaxChunk
// (bulk_files.go says why). The entry's value is the file's locator; the
// queue's readers read the file (written, not yet synced: the page cache
// has it). Encoding into a scratch buffer and writing the file from it
// saves the copy into a value buffer that an inline value needs (~0.1 s
// of CPU and ~100 MB of buffers per venv-full create). stored is the
// encoded length.
func (s *Store) putFile(key []byte, data []byte, encode func(dst, src []byte) []byte) (e kv, stored int, err error) {
	sp := getScratch()
	if bound := len(data) + len(data)>>6 + 64; cap(*sp) < bound {
		*sp = make([]byte, 0, bound)
	}
	out := encode((*sp)[:0], data)
	stored = len(out)
	if stored < bulkMinLen {
		// Small after all (a pack flushed at commit, a large chunk
		// that compresses to little): inline, as encodeValue keeps it.
		if buf := getValueBuf(stored); buf != nil {
			copy(*buf, out)
			e = kv{key: key, val: *buf, buf: buf}
		} else {
			e = kv{key: key, val: bytes.Clone(out)}
		}
		*sp = out[:0]
		putScratch(sp)
		return e, stored, nil
	}
	f, loc, err := s.files.create(out)
	if cap(out) <= 8<<20 {
		*sp = out[:0]
		putScratch(sp)
	}
	if err != nil {
		return kv{}, 0, err
	}
	return kv{key: key, val: loc, meta: metaFile, file: &f, fileLen: stored}, stored, nil
}

// closeFiles closes the files of entries that will never be written
// (their files are orphans for GC).
func (s *Store) closeFiles(group []kv) {
	var fs []bulkFile
	for _, e := range group {
		if e.file != nil {
			fs = append(fs, *e.file)
			s.files.done(e.file.id)
		}
	}
	for _, f := range fs {
		if f.fd >= 0 {
			_ = unix.Close(f.fd)
		}
	}
}

// metaRef is the user meta of a chunk entry whose value is a pack
// reference, so GC can tell references from chunks without reading values.
const metaRef = 1

// chunkQueue batches chunk writes into Badger transactions: one transaction
// per chunk would cost a commit each (~40,000 for a venv), while a batch of
// a few MiB amortizes it and lets Badger write the value log sequentially.
// Entries come in groups that must be written atomically (a pack and its
// members' references); a group never spans two transactions. Queued
// entries are readable from the queue until they are in Badger.
type chunkQueue struct {
	s *Store

	mu        sync.Mutex
	cond      *sync.Cond
	batch     [][]kv
	size      int
	count     int
	unflushed map[string][]byte
	writing   int   // batches being written
	err       error // first write error: sticky, no commit succeeds after it
	sinceRel  int   // bytes written since the last releaseMappedPages

	// fresh is set while the store is known to hold no chunk but those
	// this queue wrote since Open: Badger had no chunk key when the store
	// was opened (the store's lock keeps other processes out) and no GC
	// has run since (GC is the only deleter). written then holds every
	// chunk the queue has written, so Store.has answers from memory
	// instead of a Badger lookup per new chunk: on the first snapshot of
	// venv-full those lookups (skiplist searches of a memtable that grows
	// to 50,000 keys) were 0.25 s of 5.5 s CPU (perf, loaded machine).
	// Past freshMaxChunks the set is dropped and lookups resume.
	fresh   bool
	written map[Hash]struct{}
}

// freshMaxChunks bounds the chunks the queue remembers for a fresh store
// (about 3 MB for venv-full's 50,000; 256k chunks cost about 15 MB).
var freshMaxChunks = 256 << 10

// Batch limits: large enough to amortize a Badger commit, small enough to
// keep memory low. Badger's own transaction limits are checked in write.
const (
	maxBatchBytes   = 8 << 20
	maxBatchEntries = 4096
)

func (q *chunkQueue) init(s *Store) {
	q.s = s
	q.cond = sync.NewCond(&q.mu)
	q.unflushed = map[string][]byte{}
}

// startFresh turns on the fresh-store answers of has (see fresh).
func (q *chunkQueue) startFresh() {
	q.mu.Lock()
	q.fresh, q.written = true, map[Hash]struct{}{}
	q.mu.Unlock()
}

// endFresh turns them off for good: GC is about to delete chunks, a write
// failed (what reached Badger is unknown) or the set is too large.
func (q *chunkQueue) endFresh() {
	q.mu.Lock()
	q.endFreshLocked()
	q.mu.Unlock()
}

func (q *chunkQueue) endFreshLocked() { q.fresh, q.written = false, nil }

// hasChunk reports whether chunk h is queued or, for a fresh store,
// written; sure is false when only Badger can tell.
func (q *chunkQueue) hasChunk(key []byte, h Hash) (found, sure bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.unflushed[string(key)]; ok {
		return true, true
	}
	if q.fresh {
		_, ok := q.written[h]
		return ok, true
	}
	return false, false
}

// get returns a copy of a queued value (its buffer may be recycled as
// soon as it is written); a value in a bulk file is its locator.
func (q *chunkQueue) get(key []byte) ([]byte, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	v, ok := q.unflushed[string(key)]
	if !ok {
		return nil, false
	}
	return bytes.Clone(v), true
}

// fail makes err the queue's sticky error (no commit succeeds after it),
// for a failure outside the queue that lost chunks writers rely on.
func (q *chunkQueue) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = fmt.Errorf("write chunks: %w", err)
	}
	q.endFreshLocked()
	q.mu.Unlock()
}

// add queues a group of entries; when the batch is full the caller writes it.
func (q *chunkQueue) add(group []kv) error {
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		q.s.closeFiles(group)
		return err
	}
	for _, e := range group {
		q.unflushed[string(e.key)] = e.val
		q.size += len(e.key) + len(e.val) + e.fileLen
	}
	q.count += len(group)
	q.batch = append(q.batch, group)
	if q.size < maxBatchBytes && q.count < maxBatchEntries {
		q.mu.Unlock()
		return nil
	}
	return q.writeLocked()
}

// writeLocked takes the current batch and writes it; q.mu is held on entry
// and released on return.
func (q *chunkQueue) writeLocked() error {
	batch := q.batch
	q.batch, q.size, q.count = nil, 0, 0
	if len(batch) == 0 {
		q.mu.Unlock()
		return nil
	}
	q.writing++
	q.mu.Unlock()

	// The bulk files first: durable, with their directory entries,
	// before the keys that locate them are committed (bulk_files.go).
	var files []bulkFile
	for _, g := range batch {
		for _, e := range g {
			if e.file != nil {
				files = append(files, *e.file)
			}
		}
	}
	err := q.s.files.syncFiles(files)
	if err == nil {
		err = q.s.gated(func() error { return q.write(batch) })
	}
	// Committed, or never to be: either way no longer GC's to spare.
	for _, f := range files {
		q.s.files.done(f.id)
	}

	written := 0
	for _, g := range batch {
		for _, e := range g {
			written += len(e.val)
		}
	}
	q.mu.Lock()
	q.sinceRel += written
	release := q.sinceRel >= releaseEvery
	if release {
		q.sinceRel = 0
	}
	if err != nil {
		q.endFreshLocked()
	}
	for _, g := range batch {
		for _, e := range g {
			// Recorded as written before it leaves the queue, under
			// the same lock: hasChunk never misses it in between.
			if q.fresh && len(e.key) == 1+len(Hash{}) && e.key[0] == kindChunk {
				q.written[Hash(e.key[1:])] = struct{}{}
			}
			delete(q.unflushed, string(e.key))
		}
	}
	if q.fresh && len(q.written) > freshMaxChunks {
		q.endFreshLocked()
	}
	// Badger is done with the values (Commit copied them into the value
	// log or the memtable; only its publisher would keep them, for
	// subscribers, and the store has none) and no reader can reach them
	// any more.
	for _, g := range batch {
		for _, e := range g {
			if e.buf != nil {
				putValueBuf(e.buf)
			}
		}
	}
	if err != nil && q.err == nil {
		q.err = fmt.Errorf("write chunks: %w", err)
	}
	q.writing--
	q.cond.Broadcast()
	err = q.err
	q.mu.Unlock()
	if release {
		q.s.releaseMappedPages()
	}
	return err
}

// entryCost estimates what an entry counts against Badger's transaction
// limits: values at or above the value threshold count as a pointer.
func entryCost(e kv) int64 {
	v := int64(len(e.val))
	if v >= valueThreshold {
		v = 12
	}
	return int64(len(e.key)) + v + 32
}

func (q *chunkQueue) write(batch [][]kv) error {
	db := q.s.db
	maxSize, maxCount := db.MaxBatchSize()/2, db.MaxBatchCount()/2
	txn := db.NewTransaction(true)
	defer func() { txn.Discard() }()
	var size, count int64
	for _, g := range batch {
		var gs int64
		for _, e := range g {
			gs += entryCost(e)
		}
		if count > 0 && (size+gs > maxSize || count+int64(len(g)) > maxCount) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = db.NewTransaction(true)
			size, count = 0, 0
		}
		for _, e := range g {
			if err := txn.SetEntry(badger.NewEntry(e.key, e.val).WithMeta(e.meta)); err != nil {
				return err
			}
		}
		size += gs
		count += int64(len(g))
	}
	return txn.Commit()
}

// flush writes everything queued so far and waits for batches other
// goroutines are writing; after it returns every entry queued before the
// call is in Badger (not yet synced).
func (q *chunkQueue) flush() error {
	q.mu.Lock()
	if err := q.writeLocked(); err != nil {
		return err
	}
	q.mu.Lock()
	for q.writing > 0 {
		q.cond.Wait()
	}
	err := q.err
	q.mu.Unlock()
	return err
}

// value returns a stored value (a copy) from the queue or Badger.
func (s *Store) value(key []byte) ([]byte, error) {
	var v []byte
	err := s.valueFunc(key, func(b []byte) error {
		v = bytes.Clone(b)
		return nil
	})
	return v, err
}

// valueFunc calls fn with a stored value from the queue or Badger, without
// copying it: the bytes are valid only during fn, which must not keep or
// modify them. A restore decodes packs and big chunks straight from
// Badger's value log this way; copying them out first cost ~0.09 s of CPU
// and ~100 MB of garbage per venv-full restore (pprof of the CLI). The
// error is ErrNotFound for a missing key, Badger's own error, or fn's.
func (s *Store) valueFunc(key []byte, fn func([]byte) error) error {
	if v, ok := s.chunks.get(key); ok {
		if isBulkLoc(v) {
			// Queued: its file is written, and no GC deletes it before
			// its key is in Badger.
			return s.readBulk(v, fn)
		}
		return fn(v)
	}
	var n int
	lookup := func() (loc []byte, err error) {
		err = s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if err != nil {
				return err
			}
			n = int(item.ValueSize())
			return item.Value(func(v []byte) error {
				if isBulkLoc(v) {
					loc = bytes.Clone(v)
					return nil
				}
				return fn(v)
			})
		})
		if errors.Is(err, badger.ErrKeyNotFound) {
			err = ErrNotFound
		}
		return loc, err
	}
	loc, err := lookup()
	if err == nil && loc != nil {
		err = s.readBulk(loc, fn)
		if errors.Is(err, errBulkMissing) {
			// GC deletes a key, then its file: if the key is gone
			// or names another file now, the value moved or went
			// while we read (ErrNotFound makes GetChunk look again);
			// if it still names this file, the store lost it.
			again, lerr := lookup()
			switch {
			case lerr != nil:
				err = lerr
			case again == nil:
				err = nil // inline now: fn has run
			case bytes.Equal(again, loc):
				err = fmt.Errorf("%w: %w", ErrCorrupt, err)
			default:
				err = s.readBulk(again, fn)
				if errors.Is(err, errBulkMissing) {
					err = fmt.Errorf("%w: %w", ErrCorrupt, err)
				}
			}
		}
		return err
	}
	// Reading faults value-log pages into our address space as writing
	// does: a restore of the whole store would hold all of it.
	if m := s.readSinceRel.Add(int64(n)); m >= releaseEvery*2 && s.readSinceRel.CompareAndSwap(m, 0) {
		s.releaseMappedPages()
	}
	return err
}

// readBulk calls fn with the value that locator v locates, read from its
// bulk file into a pooled buffer (valid only during fn). Errors name the
// file.
func (s *Store) readBulk(v []byte, fn func([]byte) error) error {
	l, err := decodeBulkLoc(v)
	if err != nil {
		return err
	}
	data, buf, err := s.files.read(l)
	if err != nil {
		return err
	}
	err = fn(data)
	if buf != nil {
		putValueBuf(buf)
	}
	if err != nil {
		return fmt.Errorf("bulk file %s: %w", s.files.path(l.id), err)
	}
	return nil
}

// has reports whether a chunk is stored or on its way (open pack, queue).
// The order of the checks follows the way a chunk moves: packer, queue,
// Badger, so a chunk moving meanwhile is still found.
func (s *Store) has(h Hash) (bool, error) {
	if s.packer.has(h) {
		return true, nil
	}
	key := chunkKey(h)
	if found, sure := s.chunks.hasChunk(key, h); sure {
		return found, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// HasChunk reports whether the chunk is stored.
func (s *Store) HasChunk(ctx context.Context, h Hash) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	ok, err := s.has(h)
	if err != nil {
		return false, fmt.Errorf("chunk %s: %w", h, err)
	}
	return ok, nil
}

// GetChunk returns a chunk's bytes, verified against h; a mismatch is an
// error wrapping ErrCorrupt naming the chunk; a missing chunk ErrNotFound.
func (s *Store) GetChunk(ctx context.Context, h Hash) ([]byte, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if raw, ok := s.packer.get(h); ok {
		return raw, nil
	}
	raw, id, off, n, packed, bad, err := s.lookupChunk(h)
	if err != nil {
		return nil, err
	}
	if bad == nil && packed {
		raw, bad = s.readPacked(id, off, n)
		if errors.Is(bad, ErrNotFound) {
			// GC may have moved the chunk to a new pack (repack)
			// between our two reads: read the reference again.
			if raw, id, off, n, packed, bad, err = s.lookupChunk(h); err != nil {
				return nil, err
			}
			if bad == nil && packed {
				raw, bad = s.readPacked(id, off, n)
			}
		}
	}
	return checkChunk(h, raw, bad)
}

// lookupChunk reads chunk h's entry: a chunk stored alone is decoded
// straight from the value log (raw, not yet verified); a packed one's
// reference is returned (packed). err is the failure to read the entry
// (wrapping ErrNotFound for a missing chunk), bad an entry that does not
// decode.
func (s *Store) lookupChunk(h Hash) (raw []byte, id packID, off, n int, packed bool, bad, err error) {
	err = s.valueFunc(chunkKey(h), func(v []byte) error {
		if isRef(v) {
			packed = true
			id, off, n, bad = decodeRef(v)
			return nil
		}
		raw, bad = s.codec.Decode(nil, v)
		return nil
	})
	if err != nil {
		return nil, id, 0, 0, false, nil, fmt.Errorf("chunk %s: %w", h, err)
	}
	return raw, id, off, n, packed, bad, nil
}

// checkChunk verifies a chunk read as h, or wraps the error of reading it.
func checkChunk(h Hash, raw []byte, err error) ([]byte, error) {
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("chunk %s: %w", h, err)
		}
		return nil, fmt.Errorf("chunk %s: %w: %w", h, ErrCorrupt, err)
	}
	if SumChunk(raw) != h {
		return nil, fmt.Errorf("chunk %s: %w: content does not match its hash", h, ErrCorrupt)
	}
	return raw, nil
}

// GetChunkFunc is GetChunk for a reader with many chunks in flight (a
// restore's workers): it calls done exactly once with what GetChunk would
// return, either before it returns or, when the chunk's pack is being
// decompressed by another goroutine, later from that goroutine, instead of
// waiting for it. A restore reads files in about the order they were
// packed, so its workers would otherwise all wait for the same pack, one
// decompression at a time; with GetChunkFunc they move on to the next
// files and start decompressing the following packs meanwhile. done must
// not block.
func (s *Store) GetChunkFunc(ctx context.Context, h Hash, done func([]byte, error)) {
	s.GetChunkFuncFrom(ctx, h, nil, done)
}

// GetChunkFuncFrom is GetChunkFunc taking a packed chunk's place from refs
// (ResolveChunks; nil or without h: looked up) instead of a Badger lookup.
func (s *Store) GetChunkFuncFrom(ctx context.Context, h Hash, refs *ChunkRefs, done func([]byte, error)) {
	s.getChunkFrom(ctx, h, refs, ChunkPlace{}, false, nil, func(data []byte, _ ChunkPin, _ ChunkPlace, err error) { done(data, err) })
}

// ChunkPin keeps the decompressed pack that a chunk from GetChunkPinnedFrom
// lies in from being reused; the zero ChunkPin holds nothing.
type ChunkPin struct {
	c *packCache
	p *cachedPack
}

// Release lets the pack go; the chunk's bytes must not be used afterwards.
// Release is called once per pin.
func (p ChunkPin) Release() {
	if p.p != nil {
		p.c.unpin(p.p)
	}
}

// Pinned reports whether p holds a pack.
func (p ChunkPin) Pinned() bool { return p.p != nil }

// GetChunkPinnedFrom is GetChunkFuncFrom without the copy of a packed
// chunk: its bytes, verified, are handed to done where they lie in the
// decompressed pack, which stays pinned until the caller releases pin
// (the bytes are read-only and valid until then). A restore hands every
// chunk on once and so copied each out of its pack only to copy it again
// into the engine's ring: ~350 MB of allocation and copying per restore of
// venv-full (bytes.Clone, ~0.09 s of the CLI's CPU). While more than
// packHeldMax packs are held pinned outside the cache, a chunk is copied
// as before (pin is then zero), so pins cannot hold more memory than that
// whatever order the chunks are read in.
func (s *Store) GetChunkPinnedFrom(ctx context.Context, h Hash, refs *ChunkRefs, done func(data []byte, pin ChunkPin, err error)) {
	s.getChunkFrom(ctx, h, refs, ChunkPlace{}, true, nil, func(data []byte, pin ChunkPin, _ ChunkPlace, err error) { done(data, pin, err) })
}

// ChunkPlace is where a packed chunk lies: its pack and its bytes there.
// The zero ChunkPlace is none (a chunk stored alone, or not known).
type ChunkPlace struct {
	ref packRef
	ok  bool
}

// Known reports whether p is a place.
func (p ChunkPlace) Known() bool { return p.ok }

// After is the place of the n bytes that begin skip bytes past the end of
// p, in the same pack: where the chunk packed after p's (and after chunks
// of skip bytes more) lies, if it was packed there. It is a guess
// (GetChunkPinnedGuess), none when p is none.
func (p ChunkPlace) After(skip, n int) ChunkPlace {
	if !p.ok || skip < 0 || n <= 0 || n > packMaxChunk {
		return ChunkPlace{}
	}
	return ChunkPlace{ref: packRef{id: p.ref.id, off: p.ref.off + p.ref.n + skip, n: n}, ok: true}
}

// GetChunkPinnedGuess is GetChunkPinnedFrom that first tries guess, a
// place the caller expects h at (ChunkPlace.After): when guess's pack is
// decompressed in the cache and the bytes there hash to h, they are the
// chunk, with no lookup of h. A chunk is verified by its hash whatever
// says where it is, so a wrong guess cannot yield a wrong chunk: it costs
// the hashing of guess's bytes, then h is looked up as GetChunkPinnedFrom
// does. A guess never decompresses a pack. done is also given the place
// the chunk was found at (none for a chunk stored alone or still being
// written), for the caller's next guess.
//
// Why: a restore reads files in the order they were captured, which is
// the order their chunks were packed in, so a file's chunk mostly lies
// right after the previous file's. Undoing change small on venv-full in
// place reads awscli's ~6,300 small files: looking each chunk up in
// Badger was ~36 ms of the CLI's ~160 ms of CPU (pprof of 8 undos), and
// the hash that checks a guess is the one that verifies the chunk anyway.
//
// A guess into a pack being decompressed waits for it as GetChunkFunc
// does, and placed, if not nil, is called with the chunk's place as soon
// as a lookup has found it, before its pack is read: a reader guessing
// the next chunks need not wait for the pack to be decompressed.
func (s *Store) GetChunkPinnedGuess(ctx context.Context, h Hash, refs *ChunkRefs, guess ChunkPlace, placed func(ChunkPlace), done func(data []byte, pin ChunkPin, place ChunkPlace, err error)) {
	s.getChunkFrom(ctx, h, refs, guess, true, placed, done)
}

// guessChunk tries h at guess: in guess's pack when it is decompressed or
// being decompressed (then on the goroutine doing that, once it is done),
// never loading a pack for a guess. It reports whether it took h on:
// then done is called, with h's bytes at guess when they hash to h, else
// as getChunkFrom does without a guess.
func (s *Store) guessChunk(ctx context.Context, h Hash, refs *ChunkRefs, guess ChunkPlace, pinned bool, placed func(ChunkPlace), done func([]byte, ChunkPin, ChunkPlace, error)) bool {
	if !guess.ok {
		return false
	}
	// try hands h on from p (pinned) if it lies at guess, or unpins p.
	try := func(p *cachedPack) bool {
		b, err := packRange(guess.ref.id, p.raw, guess.ref.off, guess.ref.n)
		if err != nil || SumChunk(b) != h {
			s.packCache.unpin(p)
			return false
		}
		s.packGuesses.Add(1)
		if pinned && !s.packCache.holdsTooMany() {
			done(b, ChunkPin{c: &s.packCache, p: p}, guess, nil)
			return true
		}
		b = bytes.Clone(b)
		s.packCache.unpin(p)
		done(b, ChunkPin{}, guess, nil)
		return true
	}
	p, queued := s.packCache.cachedOrQueue(guess.ref.id, func(p *cachedPack, err error) {
		if err == nil && try(p) {
			return
		}
		s.getChunkFrom(ctx, h, refs, ChunkPlace{}, pinned, placed, done)
	})
	switch {
	case queued:
		return true
	case p == nil:
		return false
	}
	return try(p)
}

func (s *Store) getChunkFrom(ctx context.Context, h Hash, refs *ChunkRefs, guess ChunkPlace, pinned bool, placed func(ChunkPlace), done func([]byte, ChunkPin, ChunkPlace, error)) {
	if err := s.check(ctx); err != nil {
		done(nil, ChunkPin{}, ChunkPlace{}, err)
		return
	}
	if raw, ok := s.packer.get(h); ok {
		done(raw, ChunkPin{}, ChunkPlace{}, nil)
		return
	}
	var id packID
	var off, n int
	if r, ok := refs.ref(h); ok {
		id, off, n = r.id, r.off, r.n
	} else if s.guessChunk(ctx, h, refs, guess, pinned, placed, done) {
		return
	} else {
		raw, rid, roff, rn, packed, bad, err := s.lookupChunk(h)
		if err != nil {
			done(nil, ChunkPin{}, ChunkPlace{}, err)
			return
		}
		if bad != nil || !packed {
			raw, err := checkChunk(h, raw, bad)
			done(raw, ChunkPin{}, ChunkPlace{}, err)
			return
		}
		id, off, n = rid, roff, rn
	}
	place := ChunkPlace{ref: packRef{id: id, off: off, n: n}, ok: true}
	if placed != nil {
		placed(place)
	}
	extract := func(p *cachedPack, err error) {
		var raw []byte
		if err == nil && pinned && !s.packCache.holdsTooMany() {
			if raw, err = packRange(id, p.raw, off, n); err == nil {
				if raw, err = checkChunk(h, raw, nil); err == nil {
					done(raw, ChunkPin{c: &s.packCache, p: p}, place, nil)
					return
				}
			}
		} else if err == nil {
			raw, err = packSlice(id, p.raw, off, n)
		}
		s.packCache.unpin(p)
		if errors.Is(err, ErrNotFound) {
			// Repacked meanwhile (see GetChunk): read the reference again.
			raw, err := s.GetChunk(ctx, h)
			done(raw, ChunkPin{}, ChunkPlace{}, err)
			return
		}
		raw, err = checkChunk(h, raw, err)
		if err != nil {
			place = ChunkPlace{}
		}
		done(raw, ChunkPin{}, place, err)
	}
	p, load, leader := s.packCache.beginOrQueue(id, extract)
	switch {
	case p != nil:
		extract(p, nil)
	case leader:
		raw, err := s.loadPack(id)
		waiters := s.packCache.finish(id, load, raw, err)
		extract(load.p, load.err)
		for _, w := range waiters {
			w(load.p, load.err)
		}
	}
}

// readPacked returns a copy of the n bytes at off of pack id (not yet
// verified).
func (s *Store) readPacked(id packID, off, n int) ([]byte, error) {
	p, err := s.pack(id)
	if err != nil {
		return nil, err
	}
	defer s.packCache.unpin(p)
	return packSlice(id, p.raw, off, n)
}

// packSlice returns a copy of the n bytes at off of pack id's bytes raw.
func packSlice(id packID, raw []byte, off, n int) ([]byte, error) {
	b, err := packRange(id, raw, off, n)
	if err != nil {
		return nil, err
	}
	// Clone, not make and copy: make would first zero the bytes (measured:
	// a tenth of a restore's allocation cost).
	return bytes.Clone(b), nil
}

// packRange returns the n bytes at off of pack id's bytes raw, in place.
func packRange(id packID, raw []byte, off, n int) ([]byte, error) {
	if off < 0 || n < 0 || off+n > len(raw) {
		return nil, fmt.Errorf("%w: reference past the end of pack %s", ErrCorrupt, id)
	}
	return raw[off : off+n : off+n], nil
}

// pack returns a pack's decompressed bytes, through the cache, pinned: the
// caller unpins it (packCache.unpin) when done with its bytes. Concurrent
// readers of the same pack (a restore's workers reading neighbouring files)
// wait for one decompression instead of each doing it.
func (s *Store) pack(id packID) (*cachedPack, error) {
	p, load, leader := s.packCache.begin(id)
	if p != nil {
		return p, nil
	}
	if !leader {
		<-load.done
		return load.p, load.err
	}
	raw, err := s.loadPack(id)
	for _, w := range s.packCache.finish(id, load, raw, err) {
		w(load.p, load.err)
	}
	return load.p, load.err
}

// loadPack decompresses pack id into a pooled buffer (see packCache).
func (s *Store) loadPack(id packID) ([]byte, error) {
	s.packLoads.Add(1)
	buf := getPackBuf()
	var raw []byte
	err := s.valueFunc(packKey(id), func(v []byte) (err error) {
		raw, err = s.codec.Decode(buf, v)
		return err
	})
	if err != nil {
		putPackBuf(buf)
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	if cap(raw) != cap(buf) {
		putPackBuf(buf) // too large for it: Decode allocated
	}
	return raw, nil
}

// GetTree reads and decodes a tree, verified; a fragmented one
// (tree_split.go) is read whole.
func (s *Store) GetTree(ctx context.Context, h Hash) (*Tree, error) {
	t, _, err := s.GetTreeParts(ctx, h)
	return t, err
}

// GetTreeParts is GetTree that also returns the hashes of the tree's
// fragments (nil for a tree stored as one chunk): the chunks beside h that
// a caller accounting for a tree's storage (GC, verify, export, sizes)
// must count.
func (s *Store) GetTreeParts(ctx context.Context, h Hash) (*Tree, []Hash, error) {
	b, err := s.GetChunk(ctx, h)
	if err != nil {
		return nil, nil, fmt.Errorf("tree: %w", err)
	}
	t, parts, err := decodeStoredTree(b, func(f Hash) ([]byte, error) { return s.GetChunk(ctx, f) })
	if err != nil {
		return nil, nil, fmt.Errorf("tree %s: %w", h, err)
	}
	return t, parts, nil
}

// TreeChunk is one stored chunk of a tree: its hash and its bytes as
// stored (uncompressed, verified).
type TreeChunk struct {
	Hash Hash
	Data []byte
}

// GetTreeChunks is GetTreeParts that also returns the bytes of the root
// and of each fragment, in the root's order (fragments nil for a tree
// stored as one chunk), each chunk read once: what an export writes out
// beside the decoded tree.
func (s *Store) GetTreeChunks(ctx context.Context, h Hash) (*Tree, []byte, []TreeChunk, error) {
	root, err := s.GetChunk(ctx, h)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tree: %w", err)
	}
	var frags []TreeChunk
	t, _, err := decodeStoredTree(root, func(f Hash) ([]byte, error) {
		b, err := s.GetChunk(ctx, f)
		if err == nil {
			frags = append(frags, TreeChunk{Hash: f, Data: b})
		}
		return b, err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tree %s: %w", h, err)
	}
	return t, root, frags, nil
}

// kindTree is the kind of a tree's chunks (a tree stored as one chunk, a
// large tree's root and fragments): they are stored alone, never packed
// (Writer.PutTree says why), and compressed with compress's EncodeHashes,
// since they are mostly hashes.
const kindTree = "\x00tree"

// storeNew stores a chunk that is not in the store: small file chunks go
// into a pack (packer.go), the rest is compressed alone.
func (s *Store) storeNew(w *Writer, h Hash, data []byte, packable bool, kind string) error {
	if packable && len(data) <= packMaxChunk {
		return s.packer.add(w, h, data, kind)
	}
	encode := s.encodeBig
	if kind == kindTree {
		encode = s.codec.EncodeHashes
	}
	if len(data) > packMaxChunk {
		e, stored, err := s.putFile(chunkKey(h), data, encode)
		if err != nil {
			return err
		}
		w.addStored(int64(stored))
		return s.chunks.add([]kv{e})
	}
	enc, buf := s.encodeValue(data, encode)
	w.addStored(int64(len(enc)))
	return s.chunks.add([]kv{{key: chunkKey(h), val: enc, buf: buf}})
}

// Large encoded values (packs, chunks stored alone: about 100 MB for
// venv-full) are copied out of the scratch buffer into recycled buffers,
// one pool per power of two of size from valuePoolMin, instead of new
// allocations: fresh heap memory costs a page fault per 4 KiB and more
// garbage collections under the CLI's soft memory limit.
const (
	valuePoolMin     = 32 << 10
	valuePoolClasses = 9 // 32 KiB .. 8 MiB
)

var valuePools [valuePoolClasses]sync.Pool

// valueClass returns the pool of buffers of at least n bytes, or -1.
func valueClass(n int) int {
	for c := 0; c < valuePoolClasses; c++ {
		if n <= valuePoolMin<<c {
			return c
		}
	}
	return -1
}

// getValueBuf returns a pooled buffer of length n, or nil when n is
// outside the pooled sizes.
func getValueBuf(n int) *[]byte {
	if n < valuePoolMin {
		return nil
	}
	c := valueClass(n)
	if c < 0 {
		return nil
	}
	if bp, ok := valuePools[c].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, valuePoolMin<<c)
	return &b
}

// putValueBuf recycles a buffer from getValueBuf.
func putValueBuf(bp *[]byte) {
	if c := valueClass(cap(*bp)); c >= 0 && cap(*bp) == valuePoolMin<<c {
		valuePools[c].Put(bp)
	}
}

// encodeBig compresses a chunk stored alone (at bigLevel).
func (s *Store) encodeBig(dst, src []byte) []byte { return s.codec.EncodeLevel(dst, src, s.bigLevel) }

// encodeValue encodes a value the queue writes with encode (one of the
// codec's methods): a large one is returned in a pooled buffer (buf, nil
// for a small one) that the queue recycles once the value is in Badger.
func (s *Store) encodeValue(data []byte, encode func(dst, src []byte) []byte) (enc []byte, buf *[]byte) {
	sp := getScratch()
	// Room for the worst case (zstd's raw blocks, or our raw fallback
	// and header), so that EncodeAll never grows the scratch by copying:
	// it did for every pack (2 MiB, ~600 KB encoded) taken from a pool
	// emptied by a GC.
	if bound := len(data) + len(data)>>6 + 64; cap(*sp) < bound {
		*sp = make([]byte, 0, bound)
	}
	out := encode((*sp)[:0], data)
	if buf = getValueBuf(len(out)); buf != nil {
		copy(*buf, out)
		enc = *buf
	} else {
		enc = bytes.Clone(out)
	}
	if cap(out) <= 8<<20 {
		*sp = out[:0]
		putScratch(sp)
	}
	return enc, buf
}

// scratch buffers for encoding: zstd's EncodeAll with no destination
// allocates one as large as its input, which the queue would then keep
// until the batch is written. Encoding into a pooled buffer and keeping an
// exact-size copy halves the memory the queue holds and the garbage the
// Go heap must absorb (measured: peak Go heap of a venv-full snapshot).
// The first few grown to a pack's size stay out of the collector's reach
// (scratchKept; keptBufs says why).
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

// scratchKept: one scratch buffer per worker compressing at once, and one
// for the commit's goroutine.
var scratchKept = keptBufs{max: 4}

// scratchKeepMin: scratch buffers at least this large (a pack's bound)
// go to scratchKept first.
const scratchKeepMin = packTarget

func getScratch() *[]byte {
	if b := scratchKept.get(); b != nil {
		return b
	}
	return scratchPool.Get().(*[]byte)
}

func putScratch(b *[]byte) {
	if cap(*b) >= scratchKeepMin && scratchKept.put(b) {
		return
	}
	scratchPool.Put(b)
}

// bigChunkLevel is the zstd level of chunks stored alone (files above
// packMaxChunk, in FastCDC pieces: mostly .so binaries); packs of small
// files (text, where the ratio matters most) keep the codec's level
// (compress.DefaultLevel). Measured on venv-full (one thread, CPU time from
// getrusage, so that the shared machine's load does not skew it):
//
//	                          raw      SpeedFastest       SpeedDefault
//	big chunks (≤ 1 MiB)    149 MB   48.3 MB  0.78 s    46.1 MB  1.06 s
//	packs of files ≤ 64 KiB 184 MB   60.4 MB  0.78 s    56.3 MB  1.06 s
//
// and the whole store (BenchmarkStoreVenvFull, levels packs/big, one run,
// 1 MiB packs; with 2 MiB packs 2/2 103.3 MB and 2/1 105.5 MB):
//
//	2/2 104.4 MB stored   2/1 106.5 MB   1/2 108.1 MB   1/1 110.2 MB
//
// core.BenchmarkVenvFull, which measures the store directory while open
// (WAL and all), one run each on a loaded machine: 2/2 with 1 MiB packs
// 108.4 MB and 3.65 s create CPU, 2/1 110.7 MB and 3.60 s, 2/1 with 2 MiB
// packs (the default) 109.8 MB and 3.46 s, against 1.66 s CPU for
// tar | zstd -1 in the same runs. The level is not what keeps the create
// above 1.5x tar | zstd: compression is 1.7 s of its 3.5 s CPU.
//
// Fastest for big chunks saves 27 % of their compression CPU (about 0.28 s,
// 8 % of a create's CPU) for 2.1 MB; fastest for packs would save as much
// CPU but costs 3.7 MB and, with both, the store passes the 110 MB target.
// With big chunks at SpeedFastest the store ends 0.2 MB under 110 MB on
// disk; a margin that thin flips with a slightly different site-packages,
// and the 8 % does not bring the create near 1.5x tar | zstd either way, so
// the default level stays for big chunks too (SpeedFastest remains a
// measured option for a store that favours speed). Only 7 MB of the big
// chunks' 149 MB are incompressible (stored raw), and SpeedFastest already
// skips incompressible blocks cheaply, so an entropy probe before
// compressing would not pay. Larger packs compress better (SpeedDefault:
// 2 MiB 55.3 MB, 4 MiB 54.6 MB; SpeedFastest 4 MiB 59.2 MB) but double the
// bytes a restore decompresses to read one small file.
//
// Re-measured on 2026-11-28 with the CLI and the virtualenv plugin (one
// run each, store directory's allocated blocks as the bench counts them):
// SpeedDefault 107.56 MB, SpeedFastest for big chunks 109.76 MB, 0.24 MB
// under the target. One thread's CPU on the chunks of that store
// (getrusage, best of 3 on a loaded machine): big chunks 0.83 s at
// SpeedDefault against 0.66 s at SpeedFastest; packs 1.25-1.42 s against
// 0.85 s (+4.1 MB). Encoder options that might trade memory or window
// for speed (WithLowerEncoderMem, WithWindowSize 1-2 MiB,
// WithAllLitEntropyCompression off) changed neither size nor time beyond
// the noise.
//
// Since packs take every chunk up to 256 KiB (packMaxChunk) and group their
// members by kind, the store of venv-full holds 103.2 MB at SpeedDefault,
// and chunks stored alone are 76 MB raw (pieces of files above 256 KiB).
// One thread's CPU on them (getrusage, best of 3): 0.31 s at SpeedDefault,
// 0.23 s at SpeedFastest, for 17.39 against 18.36 MB. CLI create,
// alternating, 3 runs each: store 103.16-103.18 -> 104.13-104.22 MB, CPU
// 4.15-4.64 -> 3.91-4.41 s (trees, stored alone, then took this level
// too; they take EncodeHashes since, kindTree). The store stays 5.8 MB under the 110 MB target, so large
// chunks take SpeedFastest. Packs stay at the default: SpeedFastest for
// them would save about 0.35 s of one thread but add 6.5 MB (85.99
// against 79.44 MB), 0.3 MB under the target; half of a first snapshot's
// packs take it (firstFastEvery, packer.go: +3.5 MB, 108.1 MB).
//
// Nothing is compressed twice: a create of venv-full makes 9,438 encodes
// (129 packs, 96 chunks alone, 9,213 trees) of 350.8 MB in all, and only
// 1.2 MB of them are then stored raw (2026-11-29, counted in
// compress.encodeWith). Re-measured on that store's 129 packs (one
// thread, best of 3, twice): WithSingleSegment, WithWindowSize(8 MiB),
// WithLowerEncoderMem(false) and WithAllLitEntropyCompression either way
// leave every pack byte for byte the same size, and their times stay
// within the two rounds' spread (SpeedFastest 0.68-0.82 s, SpeedDefault
// 0.85-1.08 s).
var bigChunkLevel = zstd.SpeedFastest

// encode compresses data at the codec's level into a new slice of exactly
// its encoded size.
func (s *Store) encode(data []byte) []byte { return s.encodeLevel(data, 0) }

// encodeLevel is encode at another level (0: the codec's).
func (s *Store) encodeLevel(data []byte, level zstd.EncoderLevel) []byte {
	bp := getScratch()
	buf := s.codec.EncodeLevel((*bp)[:0], data, level)
	enc := bytes.Clone(buf)
	if cap(buf) <= 8<<20 {
		*bp = buf[:0]
		putScratch(bp)
	}
	return enc
}
