package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/pypj/ptest-snap/compress"
)

// The store trains its own zstd dictionary from the first small chunks it
// is given, stores it under its own key ('D' id) and names it in the header
// of every chunk compressed with it. Dictionaries are never deleted: a chunk
// needs its dictionary for as long as it lives.
//
// Until the first dictionary exists, new small chunks are held in memory
// (they are readable, and protected like any chunk of a live Writer) and
// encoded once it is trained, so the first snapshot of a store already
// benefits. Commit flushes what is held: with enough samples it trains
// there, otherwise the held chunks are stored without a dictionary and
// sampling goes on in later snapshots. A dictionary trained on fewer bytes
// than dictTrainBytes is replaced by a better one once enough samples came.
//
// Measured on venv-full (see BenchmarkDictionary in compress and the
// numbers in the report): per-file zstd -3 of the whole venv is 116 MB,
// with a 112 KiB dictionary trained on the first 8 MiB of small files the
// store holds about ... (filled in below by measurement).
const (
	// dictSampleMax: chunks up to this size are samples and held.
	dictSampleMax = 16 << 10
	// dictUseMax: chunks up to this size are compressed with the
	// dictionary; above it the chunk's own history dominates and the
	// dictionary only costs time.
	dictUseMax = 64 << 10
	// dictTrainBytes: how many sample bytes a full training uses.
	dictTrainBytes = 8 << 20
)

type dictTrainer struct {
	mu          sync.Mutex
	current     uint32 // dictionary new small chunks use; 0 none yet
	maxID       uint32
	trainedOn   int64 // sample bytes the current dictionary was trained on
	gaveUp      bool  // training failed on enough data: stop trying
	samples     [][]byte
	sampleBytes int
	held        map[Hash]heldChunk
}

type heldChunk struct {
	raw []byte
	w   *Writer
}

func (d *dictTrainer) collecting() bool {
	return !d.gaveUp && d.trainedOn < dictTrainBytes
}

func (d *dictTrainer) has(h Hash) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.held[h]
	return ok
}

func (d *dictTrainer) get(h Hash) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.held[h]
	if !ok {
		return nil, false
	}
	return bytes.Clone(c.raw), true
}

// loadDicts registers every stored dictionary with the codec and reads
// which one is current.
func (s *Store) loadDicts() error {
	d := &s.dict
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindDict}, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 5 {
				return fmt.Errorf("%w: dictionary key %x", ErrCorrupt, k)
			}
			id := binary.BigEndian.Uint32(k[1:])
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := s.codec.AddDict(id, v); err != nil {
				return fmt.Errorf("%w: dictionary %d: %w", ErrCorrupt, id, err)
			}
			d.maxID = max(d.maxID, id)
		}
		item, err := txn.Get(metaKey("dict"))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 12 {
				return fmt.Errorf("%w: dictionary record", ErrCorrupt)
			}
			d.current = binary.BigEndian.Uint32(v)
			d.trainedOn = int64(binary.BigEndian.Uint64(v[4:]))
			if !s.codec.HasDict(d.current) {
				return fmt.Errorf("%w: current dictionary %d is missing", ErrCorrupt, d.current)
			}
			return nil
		})
	})
}

// storeNew encodes a chunk that is not in the store and queues it. Small
// file chunks are sampled for the dictionary, and held until the first one
// exists.
func (s *Store) storeNew(w *Writer, h Hash, data []byte, sample bool) error {
	d := &s.dict
	id := uint32(0)
	if sample && len(data) <= dictUseMax {
		d.mu.Lock()
		if d.collecting() && len(data) <= dictSampleMax {
			raw := bytes.Clone(data)
			d.samples = append(d.samples, raw)
			d.sampleBytes += len(raw)
			if d.current == 0 {
				if d.held == nil {
					d.held = map[Hash]heldChunk{}
				}
				d.held[h] = heldChunk{raw, w}
				var err error
				if d.sampleBytes >= dictTrainBytes {
					err = s.trainLocked(false)
				}
				d.mu.Unlock()
				return err
			}
			if d.sampleBytes >= dictTrainBytes {
				if err := s.trainLocked(false); err != nil {
					d.mu.Unlock()
					return err
				}
			}
		}
		id = d.current
		d.mu.Unlock()
	}
	enc := s.codec.Encode(nil, data, id)
	w.addStored(len(data), len(enc))
	return s.chunks.add(h, enc)
}

// flushHeld is called by Commit: every held chunk must be queued before the
// record can be written. With enough samples it trains now.
func (s *Store) flushHeld() error {
	d := &s.dict
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.held) == 0 {
		return nil
	}
	if d.sampleBytes >= compress.MinDictSamples {
		return s.trainLocked(true)
	}
	return s.releaseHeldLocked()
}

// trainLocked trains a dictionary on the samples, stores it, makes it
// current and queues the held chunks. d.mu is held.
func (s *Store) trainLocked(final bool) error {
	d := &s.dict
	id := d.maxID + 1
	dict, err := compress.BuildDict(id, d.samples, s.codec.Level())
	if err != nil {
		if !final || !errors.Is(err, compress.ErrTooFewSamples) {
			// Enough data and still no dictionary: the data does not
			// suit one. Carry on without, never fail a snapshot for it.
			d.gaveUp = true
			s.logf("no compression dictionary: %v", err)
		}
		return s.releaseHeldLocked()
	}
	if err := s.codec.AddDict(id, dict); err != nil {
		d.gaveUp = true
		s.logf("no compression dictionary: %v", err)
		return s.releaseHeldLocked()
	}
	trained := int64(d.sampleBytes)
	rec := binary.BigEndian.AppendUint32(nil, id)
	rec = binary.BigEndian.AppendUint64(rec, uint64(trained))
	// The dictionary is written before any chunk that names it is queued;
	// Commit's Sync covers both.
	err = s.gated(func() error {
		return s.db.Update(func(txn *badger.Txn) error {
			if err := txn.Set(dictKey(id), dict); err != nil {
				return err
			}
			return txn.Set(metaKey("dict"), rec)
		})
	})
	if err != nil {
		return fmt.Errorf("store dictionary: %w", err)
	}
	d.maxID, d.current, d.trainedOn = id, id, trained
	d.samples, d.sampleBytes = nil, 0
	return s.releaseHeldLocked()
}

// releaseHeldLocked encodes and queues every held chunk with the current
// dictionary (if any). d.mu is held.
func (s *Store) releaseHeldLocked() error {
	d := &s.dict
	held := d.held
	d.held = nil
	var first error
	for h, c := range held {
		enc := s.codec.Encode(nil, c.raw, d.current)
		c.w.addStored(len(c.raw), len(enc))
		if err := s.chunks.add(h, enc); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (s *Store) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}
