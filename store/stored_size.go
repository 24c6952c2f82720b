package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Stored sizes.
//
// A packed chunk's stored size is its share of its pack's stored size:
// pack stored size * chunk length / pack raw length. The pack's stored
// size is the length of its value and its raw length is in the value's
// first bytes (the compress header), so neither needs the pack itself:
// the value is read in place (Item.Value on the value log's memory
// mapping touches the header's page only) and the two numbers are kept
// per pack (packSizes), so the members of one pack read its header once.
// Packs are immutable and their ids never reused, so a kept size is never
// stale. Copying the whole 1 MiB pack instead was ~95 % of the CPU of a
// list with sizes (BenchmarkChunkStoredSize).

// packSize is what the stored size of a pack's members needs.
type packSize struct {
	stored int64 // the pack value's length (compressed)
	raw    int64 // its members' bytes (uncompressed)
}

// packSizes keeps packSize per pack; bounded, emptied when full (a store
// of 64 Ki packs holds 64 GiB of small files).
type packSizes struct {
	mu sync.Mutex
	m  map[packID]packSize
}

const maxPackSizes = 64 << 10

func (c *packSizes) get(id packID) (packSize, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.m[id]
	return ps, ok
}

func (c *packSizes) put(id packID, ps packSize) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxPackSizes {
		c.m = map[packID]packSize{}
	}
	c.m[id] = ps
}

// share is a member's share of the pack's stored size.
func (ps packSize) share(n int) int64 { return ps.stored * int64(n) / ps.raw }

// ChunkStoredSize returns the stored (compressed) size of a chunk; for a
// packed chunk its share of the pack's stored size. A missing chunk is an
// error wrapping ErrNotFound. For many chunks ChunkStoredSizes is faster.
func (s *Store) ChunkStoredSize(ctx context.Context, h Hash) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	n, err := s.storedSizeNewTxn(h)
	if errors.Is(err, ErrNotFound) {
		// The chunk may have left the queue for Badger after our
		// transaction began: a transaction begun after that queue miss
		// sees it.
		n, err = s.storedSizeNewTxn(h)
	}
	if err != nil {
		return 0, fmt.Errorf("chunk %s: %w", h, err)
	}
	return n, nil
}

// storedSizeNewTxn is storedSize in a read transaction of its own.
func (s *Store) storedSizeNewTxn(h Hash) (int64, error) {
	var n int64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		n, err = s.storedSize(txn, h)
		return err
	})
	return n, err
}

// ChunkStoredSizes calls fn with the stored size of each of hashes (as
// ChunkStoredSize returns it), in hash order (the store's key order, so
// the lookups walk Badger's tables forward), all in one read transaction.
// It stops at fn's first error and returns it; a missing chunk is an
// error wrapping ErrNotFound. hashes is not modified; duplicates are
// reported once.
func (s *Store) ChunkStoredSizes(ctx context.Context, hashes []Hash, fn func(h Hash, stored int64) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	sorted := slices.Clone(hashes)
	slices.SortFunc(sorted, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	return s.db.View(func(txn *badger.Txn) error {
		for i, h := range sorted {
			if i%1024 == 0 {
				if err := s.check(ctx); err != nil {
					return err
				}
			}
			n, err := s.storedSize(txn, h)
			if errors.Is(err, ErrNotFound) {
				// Written to Badger (and left the queue) after txn
				// began: look again in a new transaction.
				n, err = s.storedSizeNewTxn(h)
			}
			if err != nil {
				return fmt.Errorf("chunk %s: %w", h, err)
			}
			if err := fn(h, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// storedSize looks where a chunk moves (packer, queue, Badger) in that
// order, as has does, so a chunk moving meanwhile is still found.
func (s *Store) storedSize(txn *badger.Txn, h Hash) (int64, error) {
	if n, ok := s.packer.size(h); ok {
		return int64(n), nil
	}
	key := chunkKey(h)
	var (
		ref    bool
		id     packID
		member int
		n      int64
	)
	read := func(v []byte) error {
		ref = false
		if isBulkLoc(v) {
			l, err := decodeBulkLoc(v)
			n = l.n
			return err
		}
		if !isRef(v) {
			n = int64(len(v))
			return nil
		}
		ref = true
		var err error
		id, _, member, err = decodeRef(v)
		return err
	}
	if err := s.readInPlace(txn, key, read); err != nil {
		return 0, err
	}
	if !ref {
		return n, nil
	}
	ps, err := s.packSize(txn, id)
	if errors.Is(err, ErrNotFound) {
		// The reference came from the queue and its pack left the queue
		// for Badger after txn began, or GC repacked the chunk
		// meanwhile: read both again in a new transaction.
		err = s.db.View(func(txn2 *badger.Txn) error {
			if err := s.readInPlace(txn2, key, read); err != nil {
				return err
			}
			if !ref {
				return nil
			}
			ps, err = s.packSize(txn2, id)
			return err
		})
		if err == nil && !ref {
			return n, nil
		}
	}
	if err != nil {
		return 0, fmt.Errorf("pack %s: %w", id, err)
	}
	return ps.share(member), nil
}

// packSize returns a pack's stored and raw size, from packSizes or its
// value's header read in place.
func (s *Store) packSize(txn *badger.Txn, id packID) (packSize, error) {
	if ps, ok := s.packSizes.get(id); ok {
		return ps, nil
	}
	var ps packSize
	err := s.readInPlace(txn, packKey(id), func(v []byte) error {
		stored, raw, err := valueSizes(v)
		if err != nil {
			return err
		}
		if raw == 0 {
			return fmt.Errorf("%w: empty pack", ErrCorrupt)
		}
		ps = packSize{stored: stored, raw: raw}
		return nil
	})
	if err != nil {
		return packSize{}, err
	}
	s.packSizes.put(id, ps)
	return ps, nil
}

// packSizeOf is packSize in a transaction of its own.
func (s *Store) packSizeOf(id packID) (packSize, error) {
	var ps packSize
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		ps, err = s.packSize(txn, id)
		return err
	})
	return ps, err
}

// valueLen returns the stored length of a value without copying it, and
// the bulk file it lies in (nil for a value inline in Badger).
func (s *Store) valueLen(key []byte) (int64, *bulkID, error) {
	var n int64
	var file *bulkID
	err := s.db.View(func(txn *badger.Txn) error {
		return s.readInPlace(txn, key, func(v []byte) error {
			n = int64(len(v))
			if isBulkLoc(v) {
				l, err := decodeBulkLoc(v)
				if err != nil {
					return err
				}
				n, file = l.n, &l.id
			}
			return nil
		})
	})
	return n, file, err
}

// readInPlace calls fn with a stored value from the queue or, without
// copying it, from txn; v is valid only during fn. A missing key is
// ErrNotFound. A value from Badger may be a bulk locator (valueSizes reads
// the sizes of either); one from the queue is the value itself.
func (s *Store) readInPlace(txn *badger.Txn, key []byte, fn func(v []byte) error) error {
	if v, ok := s.chunks.get(key); ok {
		return fn(v)
	}
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(fn)
}
