package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// Writer writes one snapshot: chunks and trees, then Commit makes the record
// visible. Chunks a live Writer has put or found are protected from GC until
// Commit or Abort. A Writer is safe for concurrent use: the core calls
// PutChunk from a pool of workers.
type Writer struct {
	s *Store

	mu   sync.Mutex
	refs map[Hash]struct{} // every chunk this writer put or found
	done bool
	// pin is the parent snapshot pinned by UseParent, nil without one;
	// known holds the hashes reachable from it that the Writer has seen
	// (parent_pin.go): stored and protected, so never looked up.
	pin   *parentPin
	known map[Hash]struct{}
	// pendingIndex are change index chunks PutIndexDir encoded, stored by
	// CommitIndexed (change_index.go), in pendingOrder.
	pendingIndex map[Hash][]byte
	pendingOrder []Hash

	newChunks, newBytes, storedBytes atomic.Int64
	// hasParent is set by UseParent: the packer compresses the packs of
	// such a Writer harder (incrementalPackLevel).
	hasParent atomic.Bool
	// sealAsync is set while putPendingIndex stores the change index at
	// commit, from one goroutine: the packs it fills are compressed on
	// goroutines of their own (packer.add) rather than by that goroutine
	// in turn, so that both cores work in the commit's tail.
	sealAsync atomic.Bool
}

// NewWriter starts writing a snapshot.
func (s *Store) NewWriter(ctx context.Context) (*Writer, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return &Writer{s: s, refs: map[Hash]struct{}{}, known: map[Hash]struct{}{}}, nil
}

// PutChunk stores data (hashing and compressing it) unless already present,
// and returns its hash. data may be reused by the caller after return.
func (w *Writer) PutChunk(ctx context.Context, data []byte) (Hash, error) {
	return w.PutChunkKind(ctx, data, "")
}

// PutChunkKind is PutChunk for a chunk of a given kind: the core passes the
// extension of the file's name. Small chunks of one kind are laid side by
// side in their pack (packer.group), which compresses better than arrival
// order alone; the kind is not stored.
func (w *Writer) PutChunkKind(ctx context.Context, data []byte, kind string) (Hash, error) {
	h := SumChunk(data)
	return h, w.putKind(ctx, h, data, true, kind)
}

// PutTree stores a tree and returns its hash. Every chunk and subtree the
// tree references must be stored: those this Writer did not put itself (a
// file's chunk list reused from the parent snapshot, an unchanged subtree)
// are checked and from then on protected from GC like the Writer's own, so
// a snapshot whose parent is deleted and collected meanwhile loses nothing.
// A missing one fails with an error wrapping ErrNotFound naming the entry.
// Hashes seen in the pinned parent (UseParent, ParentTree) are protected by
// the pin and need no check; a tree equal to one of the parent's is not
// even looked up.
//
// A large tree is stored as fragments and a root (tree_split.go); the
// hash returned is the root's.
func (w *Writer) PutTree(ctx context.Context, t *Tree) (Hash, error) {
	b, frags, err := encodeTreeParts(t)
	if err != nil {
		return Hash{}, err
	}
	if err := w.referenceNodes(ctx, t); err != nil {
		return Hash{}, err
	}
	// Trees are mostly hashes, which do not compress: a pack would only
	// make GC's mark phase decompress more.
	for _, f := range frags {
		if err := w.putKind(ctx, f.h, f.b, false, kindTree); err != nil {
			return Hash{}, err
		}
	}
	h := SumChunk(b)
	return h, w.putKind(ctx, h, b, false, kindTree)
}

// referenceNodes references what t's nodes name: their files' chunks and
// their subtrees.
func (w *Writer) referenceNodes(ctx context.Context, t *Tree) error {
	if err := w.referenceContent(t); err != nil {
		return fmt.Errorf("put tree: %w", err)
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if n.Type == NodeDir {
			if err := w.referenceTree(ctx, n.Subtree); err != nil {
				return fmt.Errorf("put tree: %q: subtree: %w", n.Name, err)
			}
		}
	}
	return nil
}

// PutTreeBytes stores a tree given as its stored bytes b (as an archive
// carries it): a tree stored as one chunk, of any size (stores written
// before fragments existed hold large ones), or a fragmented tree's root
// whose fragments are stored. It is kept byte for byte, so its hash stays
// what snapshot records name; it is checked as GetTree checks it, and
// protected as PutTree protects a tree.
func (w *Writer) PutTreeBytes(ctx context.Context, b []byte) (Hash, error) {
	t, _, err := decodeStoredTree(b, func(f Hash) ([]byte, error) {
		if err := w.reference(f); err != nil {
			return nil, err
		}
		return w.s.GetChunk(ctx, f)
	})
	if err != nil {
		return Hash{}, fmt.Errorf("put tree: %w", err)
	}
	if err := w.referenceNodes(ctx, t); err != nil {
		return Hash{}, err
	}
	h := SumChunk(b)
	return h, w.putKind(ctx, h, b, false, kindTree)
}

// ReferenceTree protects tree h, stored already, and everything under it
// as PutTree protects a reused subtree; a missing part fails with an error
// wrapping ErrNotFound.
func (w *Writer) ReferenceTree(ctx context.Context, h Hash) error {
	if err := w.s.check(ctx); err != nil {
		return err
	}
	return w.referenceTree(ctx, h)
}

// referenceContent references the chunks of a tree's files that the Writer
// did not put, all at once: for the second snapshot of an env nearly every
// file's chunk list is reused, so this is one registration and one Badger
// read transaction per directory rather than one per chunk.
func (w *Writer) referenceContent(t *Tree) error {
	var fresh []Hash
	var owner []string
	w.mu.Lock()
	for i := range t.Nodes {
		for _, c := range t.Nodes[i].Content {
			if _, ok := w.refs[c]; ok || w.knownLocked(c) {
				continue
			}
			w.refs[c] = struct{}{}
			fresh = append(fresh, c)
			owner = append(owner, t.Nodes[i].Name)
		}
	}
	w.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	s := w.s
	s.refMu.Lock()
	for _, h := range fresh {
		s.refs[h]++
	}
	s.refMu.Unlock()
	// Registered first, then looked up: the GC protocol of put.
	var missing []int
	err := s.db.View(func(txn *badger.Txn) error {
		for i, h := range fresh {
			_, err := txn.Get(chunkKey(h))
			if errors.Is(err, badger.ErrKeyNotFound) {
				// Not in this transaction's view: maybe in a pack
				// or the queue, or written since it began.
				if ok, err := s.has(h); err != nil {
					return err
				} else if !ok {
					missing = append(missing, i)
				}
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && len(missing) > 0 {
		err = fmt.Errorf("%q: chunk %s: %w", owner[missing[0]], fresh[missing[0]], ErrNotFound)
	}
	if err != nil {
		drop := map[Hash]struct{}{}
		w.mu.Lock()
		for _, h := range fresh {
			delete(w.refs, h)
			drop[h] = struct{}{}
		}
		w.mu.Unlock()
		s.dropRefs(drop)
		return err
	}
	return nil
}

// referenceTree protects a subtree the Writer reuses without putting it,
// and everything under it: a reused subtree's chunks are as much this
// snapshot's as its own files'. A subtree the Writer put (or already
// referenced) was covered then.
func (w *Writer) referenceTree(ctx context.Context, h Hash) error {
	w.mu.Lock()
	_, known := w.refs[h]
	known = known || w.knownLocked(h)
	w.mu.Unlock()
	if known {
		return nil
	}
	if err := w.reference(h); err != nil {
		return err
	}
	t, parts, err := w.s.GetTreeParts(ctx, h)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if err := w.reference(p); err != nil {
			return err
		}
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		for _, c := range n.Content {
			if err := w.reference(c); err != nil {
				return fmt.Errorf("%q: %w", n.Name, err)
			}
		}
		if n.Type == NodeDir {
			if err := w.referenceTree(ctx, n.Subtree); err != nil {
				return fmt.Errorf("%q: %w", n.Name, err)
			}
		}
	}
	return nil
}

// reference protects a chunk the Writer uses without putting it, after
// checking (under the GC protocol of put) that it is stored.
func (w *Writer) reference(h Hash) error {
	w.mu.Lock()
	if _, ok := w.refs[h]; ok || w.done || w.knownLocked(h) {
		w.mu.Unlock()
		return nil
	}
	w.refs[h] = struct{}{}
	w.mu.Unlock()
	w.s.addRef(h)
	ok, err := w.s.has(h)
	if err != nil {
		return fmt.Errorf("chunk %s: %w", h, err)
	}
	if !ok {
		w.mu.Lock()
		delete(w.refs, h)
		w.mu.Unlock()
		w.s.dropRefs(map[Hash]struct{}{h: {}})
		return fmt.Errorf("chunk %s: %w", h, ErrNotFound)
	}
	return nil
}

// put stores one chunk under the GC protocol: the chunk is registered as
// referenced by this writer BEFORE the store is asked whether it exists, so
// GC either sees the reference and keeps the chunk, or deleted it before
// and then this writer does not find it and stores it again.
func (w *Writer) put(ctx context.Context, h Hash, data []byte, sample bool) error {
	return w.putKind(ctx, h, data, sample, "")
}

// putKind is put for a chunk of a kind (PutChunkKind).
func (w *Writer) putKind(ctx context.Context, h Hash, data []byte, sample bool, kind string) error {
	if err := w.s.check(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return errors.New("put chunk: writer already committed or aborted")
	}
	if _, ok := w.refs[h]; ok || w.knownLocked(h) {
		w.mu.Unlock()
		return nil
	}
	w.refs[h] = struct{}{}
	w.mu.Unlock()
	w.s.addRef(h)

	ok, err := w.s.has(h)
	if err != nil {
		return fmt.Errorf("put chunk %s: %w", h, err)
	}
	if ok {
		return nil
	}
	w.newChunks.Add(1)
	w.newBytes.Add(int64(len(data)))
	if err := w.s.storeNew(w, h, data, sample, kind); err != nil {
		return fmt.Errorf("put chunk %s: %w", h, err)
	}
	return nil
}

func (w *Writer) addStored(stored int64) {
	if w != nil {
		w.storedBytes.Add(stored)
	}
}

// WriterStats are the figures of what a Writer added.
type WriterStats struct {
	NewChunks   int64
	NewBytes    int64
	StoredBytes int64 // packed chunks count when their pack is sealed (at the latest in Commit)
}

// Stats returns what the Writer has added so far.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		NewChunks:   w.newChunks.Load(),
		NewBytes:    w.newBytes.Load(),
		StoredBytes: w.storedBytes.Load(),
	}
}

// Commit makes every chunk durable, then writes the record, its indexes and
// the change index atomically. A record whose Name (or ID) is taken fails
// with ErrExists and nothing becomes visible; the Writer stays open then, so
// the caller may retry with another name or Abort.
//
// If snap.Stats.NewBytes and StoredBytes are zero they are filled in from
// the Writer's stats.
func (w *Writer) Commit(ctx context.Context, snap *Snapshot, idx ChangeIndex) error {
	return w.commit(ctx, snap, func() ([]byte, error) {
		if idx == nil {
			return nil, nil
		}
		return w.putChangeIndex(ctx, idx)
	})
}

// CommitIndexed is Commit for a change index already stored through
// PutIndexDir: indexRoots maps each stream to its root directory's hash.
func (w *Writer) CommitIndexed(ctx context.Context, snap *Snapshot, indexRoots map[string]Hash) error {
	return w.commit(ctx, snap, func() ([]byte, error) {
		if err := w.putPendingIndex(ctx); err != nil {
			return nil, fmt.Errorf("change index: %w", err)
		}
		for st, h := range indexRoots {
			if err := w.reference(h); err != nil {
				return nil, fmt.Errorf("change index of stream %q: %w", st, err)
			}
		}
		return encodeIndexRoots(indexRoots), nil
	})
}

// commit is Commit with the change index's record made by index (nil for
// none).
func (w *Writer) commit(ctx context.Context, snap *Snapshot, index func() ([]byte, error)) error {
	s := w.s
	if err := s.check(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	done := w.done
	w.mu.Unlock()
	if done {
		return errors.New("commit: writer already committed or aborted")
	}
	for _, st := range snap.Streams {
		if err := w.reference(st.Root); err != nil {
			return fmt.Errorf("commit %s: root of stream %q: %w", snap.ID, st.Name, err)
		}
	}
	// 0. The change index, stored as chunks like the trees.
	ib, err := index()
	if err != nil {
		return fmt.Errorf("commit %s: %w", snap.ID, err)
	}
	// 1. Every chunk durable: the open pack sealed, the queue written, one sync.
	if err := s.packer.flush(); err != nil {
		return fmt.Errorf("commit %s: %w", snap.ID, err)
	}
	if err := s.chunks.flush(); err != nil {
		return fmt.Errorf("commit %s: %w", snap.ID, err)
	}
	if err := s.gated(s.db.Sync); err != nil {
		return fmt.Errorf("commit %s: sync chunks: %w", snap.ID, err)
	}
	// 2. The record, its indexes and the change index in one transaction.
	rec := *snap
	if rec.FormatMajor == 0 {
		rec.FormatMajor, rec.FormatMinor = FormatMajor, FormatMinor
	}
	if rec.Stats.NewBytes == 0 && rec.Stats.StoredBytes == 0 {
		st := w.Stats()
		rec.Stats.NewBytes, rec.Stats.StoredBytes = st.NewBytes, st.StoredBytes
	}
	b, err := EncodeSnapshot(&rec)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	err = s.gated(func() error {
		return s.update(func(txn *badger.Txn) error {
			if _, err := txn.Get(snapshotKey(rec.ID)); err == nil {
				return fmt.Errorf("snapshot id %s: %w", rec.ID, ErrExists)
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			if rec.Name != "" {
				if _, err := txn.Get(nameKey(rec.Name)); err == nil {
					return fmt.Errorf("snapshot name %q: %w", rec.Name, ErrExists)
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
				if err := txn.Set(nameKey(rec.Name), []byte(rec.ID)); err != nil {
					return err
				}
			}
			if err := txn.Set(snapshotKey(rec.ID), b); err != nil {
				return err
			}
			if err := txn.Set(envKey(rec.Engine, rec.EnvID, rec.CreatedAt, rec.ID), nil); err != nil {
				return err
			}
			if ib != nil {
				return txn.Set(indexKey(rec.ID), ib)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("commit %s: %w", snap.ID, err)
	}
	// 3. Durable before we say so.
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("commit %s: sync record: %w", snap.ID, err)
	}
	snap.FormatMajor, snap.FormatMinor, snap.Stats = rec.FormatMajor, rec.FormatMinor, rec.Stats
	w.release()
	s.releaseMappedPages()
	s.compactL0IfLong()
	return nil
}

// Abort drops the Writer; its chunks become garbage for the next GC.
func (w *Writer) Abort() { w.release() }

// release ends the writer's protection of its chunks and of its parent
// (once).
func (w *Writer) release() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	w.done = true
	refs := w.refs
	w.refs = nil
	w.known = nil
	w.pendingIndex, w.pendingOrder = nil, nil
	w.mu.Unlock()
	w.s.dropRefs(refs)
	w.unpin()
}

// update runs fn in a read-write transaction, retrying on conflicts with
// concurrent commits (Badger detects them on the keys fn read).
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	for {
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
}
