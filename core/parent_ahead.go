package core

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// A create with a parent must pin the parent and read its change index
// (~8,000 index chunks for venv-full) before the engine may start
// capturing, and the parent is known only once the engine has identified
// the target. Starting the engine (a plugin process: exec, handshake) takes
// as long as that read, with the host mostly waiting. So the create guesses
// the parent first — the one a reference names, or the newest snapshot of
// an environment whose ID is the target's path, as the file-tree engines
// name it — and prepares it in a goroutine while the engine starts. If the
// guess is the parent chosen, its preparation is used; otherwise it is
// dropped and the parent prepared as before.

// preparedParent is a Writer with its parent pinned and the parent's change
// index in the engine's form.
type preparedParent struct {
	w  *store.Writer
	id string
	// idx is the parent's index, per stream, packed as it was read
	// (pluginapi.PackedIndex: no map of every path is made for an engine
	// in a plugin, which decodes it itself); indexErr is why there is
	// none (wrapping store.ErrNotFound when the parent simply has no
	// index).
	idx      map[string]*pluginapi.PackedIndex
	indexErr error
	// dirs are the hashes of the index's directory chunks, for the
	// directories the engine reports unchanged.
	dirs store.ParentIndexDirs
	// pinErr is why the parent could not be pinned (wrapping
	// store.ErrNotFound when it was deleted meanwhile).
	pinErr error
}

// prepareParent pins snapshot parent as w's parent and reads its change
// index.
func prepareParent(ctx context.Context, w *store.Writer, parent *store.Snapshot) *preparedParent {
	id := parent.ID
	// The index holds a record per file, directory and symlink.
	hint := int(min(parent.Stats.Files+parent.Stats.Dirs, 1<<22))
	p := &preparedParent{w: w, id: id}
	if p.pinErr = w.UseParent(ctx, id); p.pinErr != nil {
		return p
	}
	idx := map[string]*pluginapi.PackedIndex{}
	var cur *pluginapi.PackedIndex
	var curStream string
	dirs, err := store.ParentChangeIndexVisit(ctx, w, func(stream, path string, r store.IndexRecord) {
		if cur == nil || stream != curStream {
			if cur = idx[stream]; cur == nil {
				cur = pluginapi.NewPackedIndex(hint)
				idx[stream] = cur
			}
			curStream = stream
		}
		cur.Add(path, indexEntryOf(r))
	})
	if err != nil {
		p.indexErr = err
		return p
	}
	p.idx, p.dirs = idx, dirs
	return p
}

// parentAhead is a guessed parent being prepared in its own goroutine.
type parentAhead struct {
	id    string
	done  chan struct{}
	p     *preparedParent
	taken bool
}

// startParentAhead starts preparing the parent a create will most likely
// choose, on a Writer of its own; nil if there is no likely parent.
func (m *Manager) startParentAhead(ctx context.Context, opts CreateOptions) *parentAhead {
	guess := m.guessParent(ctx, opts)
	if guess == nil {
		return nil
	}
	w, err := m.store.NewWriter(ctx)
	if err != nil {
		return nil
	}
	a := &parentAhead{id: guess.ID, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.p = prepareParent(ctx, w, guess)
	}()
	return a
}

// guessParent returns the parent chooseParent will most likely return, or
// nil. It asks the store only: the engine is not running yet.
func (m *Manager) guessParent(ctx context.Context, opts CreateOptions) *store.Snapshot {
	switch opts.Parent {
	case ParentNone:
		return nil
	case "", ParentAuto:
		guesses := []string{opts.Target}
		if abs, err := filepath.Abs(opts.Target); err == nil {
			if real, err := filepath.EvalSymlinks(abs); err == nil && real != opts.Target {
				guesses = append([]string{real}, guesses...)
			}
		}
		for _, env := range guesses {
			if snaps, err := m.store.SnapshotsByEnv(ctx, opts.Engine, env); err == nil && len(snaps) > 0 {
				return snaps[0]
			}
		}
		return nil
	}
	p, err := m.Resolve(ctx, opts.Parent)
	if err != nil || p.Engine != opts.Engine {
		return nil
	}
	return p
}

// take returns the preparation if it is of parent id (waiting for it to
// finish), and nil otherwise, dropping it. a may be nil.
func (a *parentAhead) take(id string) *preparedParent {
	if a == nil {
		return nil
	}
	<-a.done
	if a.id != id || a.p.pinErr != nil {
		a.abandon()
		return nil
	}
	a.taken = true
	return a.p
}

// abandon waits for the preparation and drops it unless it was taken. a
// may be nil.
func (a *parentAhead) abandon() {
	if a == nil || a.taken {
		return
	}
	<-a.done
	a.taken = true // dropped: nothing more to do
	a.p.w.Abort()
}

// parentIndexErr tells a missing index (lineage only, every file read)
// from a failure.
func (p *preparedParent) parentIndexErr() error {
	if p.indexErr == nil || errors.Is(p.indexErr, store.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("parent %s: %w", p.id, p.indexErr)
}

// indexEntryOf is a change index record as the engine's parent index
// entry: its statistics and, for a directory or symlink record, its type.
func indexEntryOf(r store.IndexRecord) pluginapi.IndexEntry {
	e := pluginapi.IndexEntry{Size: r.Size, MtimeNs: r.MtimeNs, CtimeNs: r.CtimeNs, Inode: r.Inode}
	switch r.Kind {
	case store.IndexDir:
		e.Type = pluginapi.TypeDir
	case store.IndexSymlink:
		e.Type = pluginapi.TypeSymlink
	}
	return e
}
