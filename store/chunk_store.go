package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/klauspost/compress/zstd"
	"github.com/pypj/ptest-snap/compress"
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

// chunkQueue batches encoded chunks into Badger write batches: one
// transaction per chunk would cost a commit each (~40,000 for a venv), while
// a batch of a few MiB amortizes it and lets Badger write the value log
// sequentially. Chunks queued but not yet written are readable from the
// queue, so a chunk is visible from the moment PutChunk returns.
type chunkQueue struct {
	s *Store

	mu        sync.Mutex
	cond      *sync.Cond
	batch     []queuedChunk
	bytes     int
	unflushed map[Hash][]byte // encoded
	writing   int             // batches being written
	err       error           // first write error: sticky, no commit succeeds after it
}

type queuedChunk struct {
	h   Hash
	enc []byte
}

// Batch limits: large enough to amortize a Badger commit, small enough to
// keep memory low and stay under Badger's transaction size limit.
const (
	maxBatchBytes  = 8 << 20
	maxBatchChunks = 2048
)

func (q *chunkQueue) init(s *Store) {
	q.s = s
	q.cond = sync.NewCond(&q.mu)
	q.unflushed = map[Hash][]byte{}
}

// get returns a queued chunk's encoded bytes.
func (q *chunkQueue) get(h Hash) ([]byte, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	enc, ok := q.unflushed[h]
	return enc, ok
}

// add queues an encoded chunk; when the batch is full the caller writes it.
func (q *chunkQueue) add(h Hash, enc []byte) error {
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return err
	}
	if _, ok := q.unflushed[h]; ok {
		q.mu.Unlock()
		return nil
	}
	q.unflushed[h] = enc
	q.batch = append(q.batch, queuedChunk{h, enc})
	q.bytes += len(enc)
	if q.bytes < maxBatchBytes && len(q.batch) < maxBatchChunks {
		q.mu.Unlock()
		return nil
	}
	return q.writeLocked()
}

// writeLocked takes the current batch and writes it; q.mu is held on entry
// and released on return.
func (q *chunkQueue) writeLocked() error {
	batch := q.batch
	q.batch, q.bytes = nil, 0
	if len(batch) == 0 {
		q.mu.Unlock()
		return nil
	}
	q.writing++
	q.mu.Unlock()

	err := q.s.gated(func() error { return q.write(batch) })

	q.mu.Lock()
	for _, c := range batch {
		delete(q.unflushed, c.h)
	}
	if err != nil && q.err == nil {
		q.err = fmt.Errorf("write chunks: %w", err)
	}
	q.writing--
	q.cond.Broadcast()
	err = q.err
	q.mu.Unlock()
	return err
}

func (q *chunkQueue) write(batch []queuedChunk) error {
	wb := q.s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, c := range batch {
		if err := wb.Set(chunkKey(c.h), c.enc); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// flush writes everything queued so far and waits for batches other
// goroutines are writing; after it returns every chunk queued before the
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

// has reports whether a chunk is queued or stored.
func (s *Store) has(h Hash) (bool, error) {
	if _, ok := s.chunks.get(h); ok {
		return true, nil
	}
	if s.dict.has(h) {
		return true, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(chunkKey(h))
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

// getEncoded returns a chunk's stored bytes (a copy).
func (s *Store) getEncoded(h Hash) ([]byte, error) {
	if enc, ok := s.chunks.get(h); ok {
		return enc, nil
	}
	var enc []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(h))
		if err != nil {
			return err
		}
		enc, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("chunk %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", h, err)
	}
	return enc, nil
}

// GetChunk returns a chunk's bytes, verified against h; a mismatch is an
// error wrapping ErrCorrupt naming the chunk; a missing chunk ErrNotFound.
func (s *Store) GetChunk(ctx context.Context, h Hash) ([]byte, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if raw, ok := s.dict.get(h); ok {
		return raw, nil
	}
	enc, err := s.getEncoded(h)
	if err != nil {
		return nil, err
	}
	return s.decodeVerified(h, enc)
}

func (s *Store) decodeVerified(h Hash, enc []byte) ([]byte, error) {
	raw, err := s.codec.Decode(nil, enc)
	if err != nil {
		if errors.Is(err, compress.ErrUnknownDict) {
			return nil, fmt.Errorf("chunk %s: %w (%w)", h, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("chunk %s: %w: %w", h, ErrCorrupt, err)
	}
	if SumChunk(raw) != h {
		return nil, fmt.Errorf("chunk %s: %w: content does not match its hash", h, ErrCorrupt)
	}
	return raw, nil
}

// GetTree reads and decodes a tree, verified.
func (s *Store) GetTree(ctx context.Context, h Hash) (*Tree, error) {
	b, err := s.GetChunk(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("tree: %w", err)
	}
	t, err := DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", h, err)
	}
	return t, nil
}

// ChunkStoredSize returns the stored (compressed) size of a chunk.
func (s *Store) ChunkStoredSize(ctx context.Context, h Hash) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if enc, ok := s.chunks.get(h); ok {
		return int64(len(enc)), nil
	}
	if raw, ok := s.dict.get(h); ok {
		return int64(len(raw)), nil
	}
	var n int64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(h))
		if err != nil {
			return err
		}
		n = item.ValueSize()
		return nil
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, fmt.Errorf("chunk %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("chunk %s: %w", h, err)
	}
	return n, nil
}
