package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// A Writer's parent snapshot, pinned.
//
// The second snapshot of an env reuses nearly everything of its parent:
// file chunk lists, whole unchanged directory trees, the change index's
// per-directory chunks. Protecting each reused hash as put does (register,
// then one Badger lookup) cost about 0.6 s of a 1 s second create of
// venv-full (40,000 lookups at 5–7 µs each, plus their transactions).
// Instead the Writer pins the parent as a whole: GC's mark phase walks a
// pinned snapshot's trees and change index like a listed snapshot's (gc.go,
// rule 3), so everything reachable from it survives even if the parent is
// deleted and collected while the Writer is live. The Writer then knows,
// without asking Badger, that a hash it saw in the parent's trees or index
// is stored and safe: it keeps those hashes in Writer.known, filled as the
// core reads the parent's trees through ParentTree and its index through
// ParentChangeIndexVisit. Anything else the Writer meets is still checked one by
// one, so a tree naming a chunk that is in neither fails as before.

// parentPin is the roots of a pinned snapshot: its streams' trees and its
// change index's root chunks.
type parentPin struct {
	id    string
	files int64 // the snapshot's file count: the size of its index
	dirs  int64 // its directory count: about its index's chunk count
	trees []Hash
	index map[string]Hash // stream → root index chunk; empty without an index
}

// pinRoots reads the roots of snapshot id (its index roots are empty when
// it has no change index).
func (s *Store) pinRoots(ctx context.Context, id string) (*parentPin, error) {
	snap, err := s.Snapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	p := &parentPin{id: id, files: snap.Stats.Files, dirs: snap.Stats.Dirs}
	for _, st := range snap.Streams {
		p.trees = append(p.trees, st.Root)
	}
	roots, err := s.indexRoots(id)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	default:
		p.index = roots
	}
	return p, nil
}

func (p *parentPin) equal(q *parentPin) bool {
	return slices.Equal(p.trees, q.trees) && maps.Equal(p.index, q.index)
}

// UseParent pins snapshot id as the Writer's parent until Commit or Abort:
// nothing reachable from it is collected meanwhile, even if it is deleted.
// Trees read through ParentTree and the index read through
// ParentChangeIndexVisit then cost no lookups when reused. A Writer has at most
// one parent. A snapshot that does not exist (or is deleted while it is
// being pinned) fails with an error wrapping ErrNotFound.
func (w *Writer) UseParent(ctx context.Context, id string) error {
	if err := w.s.check(ctx); err != nil {
		return err
	}
	p, err := w.s.pinRoots(ctx, id)
	if err != nil {
		return fmt.Errorf("pin parent: %w", err)
	}
	w.mu.Lock()
	if w.done || w.pin != nil {
		w.mu.Unlock()
		return errors.New("pin parent: writer already committed, aborted or has a parent")
	}
	w.pin = p
	w.mu.Unlock()
	w.hasParent.Store(true)
	s := w.s
	s.refMu.Lock()
	s.pins[p] = struct{}{}
	s.refMu.Unlock()
	// Registered first, then checked, as put does: a GC that listed the
	// snapshots before the parent was deleted marks it anyway; one that
	// listed them after finds the pin, unless the pin came after the
	// deletion, which this second read sees.
	again, err := s.pinRoots(ctx, id)
	if err == nil && !again.equal(p) {
		err = fmt.Errorf("snapshot %s: %w (replaced)", id, ErrNotFound)
	}
	if err != nil {
		w.unpin()
		return fmt.Errorf("pin parent: %w", err)
	}
	w.mu.Lock()
	for _, h := range p.trees {
		w.known[h] = struct{}{}
	}
	for _, h := range p.index {
		w.known[h] = struct{}{}
	}
	w.mu.Unlock()
	return nil
}

// unpin drops the Writer's parent pin (once). A pin dropped while GC runs
// is kept for that GC (gc.go, rule 3).
func (w *Writer) unpin() {
	w.mu.Lock()
	p := w.pin
	w.pin = nil
	w.mu.Unlock()
	if p == nil {
		return
	}
	s := w.s
	s.refMu.Lock()
	delete(s.pins, p)
	if s.gcRunning {
		s.gcHeldPins = append(s.gcHeldPins, p)
	}
	s.refMu.Unlock()
}

// ParentTree reads a tree of the pinned parent snapshot. When h is the
// parent's root or a subtree of a tree read so far, every hash the tree
// names (its files' chunks, its subtrees) becomes known to be stored and
// protected, so reusing them costs no lookup. Any other h is read as
// Store.GetTree would.
func (w *Writer) ParentTree(ctx context.Context, h Hash) (*Tree, error) {
	t, parts, err := w.s.GetTreeParts(ctx, h)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.known[h]; !ok || w.pin == nil || w.done {
		return t, nil
	}
	// A fragmented tree's fragments: an unchanged one is put again.
	for _, p := range parts {
		w.known[p] = struct{}{}
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		for _, c := range n.Content {
			w.known[c] = struct{}{}
		}
		if n.Type == NodeDir {
			w.known[n.Subtree] = struct{}{}
		}
	}
	return t, nil
}

// ParentIndexDirs maps stream → directory path → the hash of that
// directory's chunk in a change index.
type ParentIndexDirs map[string]map[string]Hash

// ParentChangeIndexVisit reads the pinned parent's change index (ErrNotFound
// if it has none): visit gets every record, files', directories' and
// symlinks' (IndexDir, IndexSymlink), from one goroutine at a time, and no
// map of every path is built (the core packs them for the engine as they
// come: pluginapi.PackedIndex). It returns the hash of every directory's
// index chunk: a create whose engine reports a whole directory unchanged
// reuses that chunk as the directory's index (Writer.PutIndexDir's dirs).
// The chunks read become known, so a directory whose index is unchanged
// costs no lookup in Commit.
func ParentChangeIndexVisit(ctx context.Context, w *Writer, visit func(stream, path string, r IndexRecord)) (ParentIndexDirs, error) {
	w.mu.Lock()
	p := w.pin
	w.mu.Unlock()
	if p == nil {
		return nil, errors.New("parent change index: writer has no parent")
	}
	if len(p.index) == 0 {
		return nil, fmt.Errorf("change index of %s: %w", p.id, ErrNotFound)
	}
	// The index has a chunk per directory (and a few per large one):
	// the slice and maps below are made for that many rather than grown
	// (venv-full: 7,962 chunks; growing them was ~4.5 MB of the 16 MB the
	// read allocated, on the critical path of a second create).
	n := int(min(p.dirs+1, maxIndexHint))
	seen := make([]Hash, 0, n)
	dirs := ParentIndexDirs{}
	addDir := func(stream, path string, h Hash) {
		m := dirs[stream]
		if m == nil {
			m = make(map[string]Hash, n)
			dirs[stream] = m
		}
		m[path] = h
	}
	// From the pinned roots, not the record: the parent may have been
	// deleted since it was pinned.
	packsOf := func(string) *indexPacks { return newIndexPacksFor(w.s, n) }
	if err := visitChangeIndexIn(ctx, w.s, p.index, true, func(h Hash) { seen = append(seen, h) }, addDir, visit, packsOf); err != nil {
		return nil, fmt.Errorf("change index of %s: %w", p.id, err)
	}
	w.mu.Lock()
	if w.pin != nil && !w.done {
		if len(w.known) < len(seen) {
			// Made once for what it holds and the index, not grown.
			known := make(map[Hash]struct{}, len(w.known)+len(seen))
			maps.Copy(known, w.known)
			w.known = known
		}
		for _, h := range seen {
			w.known[h] = struct{}{}
		}
	}
	w.mu.Unlock()
	return dirs, nil
}

// knownLocked reports whether h is reachable from the pinned parent, as far
// as the Writer has read it; w.mu held.
func (w *Writer) knownLocked(h Hash) bool {
	_, ok := w.known[h]
	return ok
}
