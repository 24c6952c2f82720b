package core

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"

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

// parentForm is the form of the parent index an engine takes.
type parentForm int32

const (
	// formUnknown: the engine has not said yet (its Info is pending).
	formUnknown parentForm = iota
	// formPacked: packed as read (pluginapi.PackedIndex), sent so to an
	// engine in a plugin and decoded into a map for one in this process.
	formPacked
	// formPrinted: fingerprinted as read (pluginapi.PrintedParent), for a
	// plugin that takes fingerprints.
	formPrinted
)

// parentFormOf returns the form eng takes, once its Info was asked.
func parentFormOf(eng pluginapi.Engine) parentForm {
	if pluginapi.TakesParentFingerprints(eng) {
		return formPrinted
	}
	return formPacked
}

// preparedParent is a Writer with its parent pinned and the parent's change
// index in the engine's form.
type preparedParent struct {
	w  *store.Writer
	id string
	// hint is about how many records the parent's index holds.
	hint int
	// form is the form the index was read in: idx holds it packed, or
	// prints fingerprinted.
	form parentForm
	// idx is the parent's index, per stream, packed as it was read
	// (pluginapi.PackedIndex: no map of every path is made for an engine
	// in a plugin, which decodes it itself).
	idx map[string]*pluginapi.PackedIndex
	// prints is the parent's index fingerprinted as it was read, for an
	// engine that takes fingerprints: venv-full's 46,509 records make
	// 0.75 MB of fingerprints instead of a 4 MB packed index that was
	// only fingerprinted in turn (packing it cost the host 50-100 ms of
	// CPU per second create, mostly page faults of the fresh buffer).
	prints *pluginapi.PrintedParent
	// indexErr is why there is no index (wrapping store.ErrNotFound when
	// the parent simply has none).
	indexErr error
	// dirs are the hashes of the index's directory chunks, for the
	// directories the engine reports unchanged.
	dirs store.ParentIndexDirs
	// pinErr is why the parent could not be pinned (wrapping
	// store.ErrNotFound when it was deleted meanwhile).
	pinErr error
}

// prepareParent pins snapshot parent as w's parent and reads its change
// index in the form form returns, asked once the parent is pinned.
func prepareParent(ctx context.Context, w *store.Writer, parent *store.Snapshot, form func() parentForm) *preparedParent {
	// The index holds a record per file, directory and symlink.
	hint := int(min(parent.Stats.Files+parent.Stats.Dirs, 1<<22))
	p := &preparedParent{w: w, id: parent.ID, hint: hint}
	if p.pinErr = w.UseParent(ctx, p.id); p.pinErr != nil {
		return p
	}
	p.read(ctx, form())
	return p
}

// read reads the pinned parent's change index in form form, replacing
// what an earlier read left.
func (p *preparedParent) read(ctx context.Context, form parentForm) {
	p.form, p.idx, p.prints, p.dirs, p.indexErr = form, nil, nil, nil, nil
	var visit func(stream, path string, r store.IndexRecord)
	var idx map[string]*pluginapi.PackedIndex
	var prints *pluginapi.PrintedParent
	if form == formPrinted {
		var err error
		if prints, err = pluginapi.NewPrintedParent(p.hint); err != nil {
			p.indexErr = err
			return
		}
		visit = func(stream, path string, r store.IndexRecord) {
			prints.Add(stream, path, indexEntryOf(r))
		}
	} else {
		idx = map[string]*pluginapi.PackedIndex{}
		var cur *pluginapi.PackedIndex
		var curStream string
		visit = func(stream, path string, r store.IndexRecord) {
			if cur == nil || stream != curStream {
				if cur = idx[stream]; cur == nil {
					cur = pluginapi.NewPackedIndex(p.hint)
					idx[stream] = cur
				}
				curStream = stream
			}
			cur.Add(path, indexEntryOf(r))
		}
	}
	dirs, err := store.ParentChangeIndexVisit(ctx, p.w, visit)
	if err != nil {
		p.indexErr = err
		return
	}
	p.idx, p.prints, p.dirs = idx, prints, dirs
}

// setRequest gives req the index in p's form.
func (p *preparedParent) setRequest(eng pluginapi.Engine, req *pluginapi.CaptureRequest) error {
	if p.form == formPrinted {
		req.ParentPrinted = p.prints
		return nil
	}
	var err error
	req.Parent, req.ParentPacked, err = pluginapi.ParentFor(eng, p.idx)
	return err
}

// parentAhead is a guessed parent being prepared in its own goroutine.
type parentAhead struct {
	id   string
	done chan struct{}
	// form is the engine's parentForm once the create knows it.
	form  atomic.Int32
	p     *preparedParent
	taken bool
}

// setForm tells the preparation the form the engine takes. a may be nil.
func (a *parentAhead) setForm(f parentForm) {
	if a != nil {
		a.form.Store(int32(f))
	}
}

// guessForm is the form the preparation reads the index in: the engine's
// if its Info has come, which it usually has not (the read starts as soon
// as the parent is pinned, while the engine's process starts). Else
// fingerprints: the parent was guessed as the file-tree engines name
// their environments, and they take fingerprints. A wrong guess costs a
// second read of the index (take).
func (a *parentAhead) guessForm() parentForm {
	if f := parentForm(a.form.Load()); f != formUnknown {
		return f
	}
	return formPrinted
}

// startParentAhead starts preparing the parent a create will most likely
// choose, on a Writer of its own; nil if there is no likely parent.
func (m *Manager) startParentAhead(ctx context.Context, opts CreateOptions) *parentAhead {
	return m.startParentAheadIn(ctx, opts, formUnknown)
}

// startParentAheadIn is startParentAhead with the engine's form already
// known (formUnknown if not): set before the preparation starts, so it
// reads the index in that form.
func (m *Manager) startParentAheadIn(ctx context.Context, opts CreateOptions, form parentForm) *parentAhead {
	guess := m.guessParent(ctx, opts)
	if guess == nil {
		return nil
	}
	w, err := m.store.NewWriter(ctx)
	if err != nil {
		return nil
	}
	a := &parentAhead{id: guess.ID, done: make(chan struct{})}
	a.setForm(form)
	go func() {
		defer close(a.done)
		a.p = prepareParent(ctx, w, guess, a.guessForm)
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
// finish), with the index in form form (read again if it was read in
// another), and nil otherwise, dropping it. a may be nil.
func (a *parentAhead) take(ctx context.Context, id string, form parentForm) *preparedParent {
	if a == nil {
		return nil
	}
	<-a.done
	if a.id != id || a.p.pinErr != nil {
		a.abandon()
		return nil
	}
	a.taken = true
	if a.p.form != form && a.p.indexErr == nil {
		a.p.read(ctx, form)
	}
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
