package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// RestoreOptions describe a restore.
type RestoreOptions struct {
	// Ref names the snapshot: ID, unique ID prefix, or name.
	Ref string
	// Target is where to restore; empty means the engine's default (the
	// snapshot's own target for an in-place restore).
	Target string
	// InPlace restores over an existing target, rewriting only what
	// differs and deleting what the snapshot lacks.
	InPlace bool
	// Replace lets the engine replace an existing environment of the same
	// name (for example a container).
	Replace bool
	// Name is a name for the restored environment where the engine has one
	// (a container's name); passed to the engine as Options["name"] unless
	// that is set.
	Name string
	// Options are engine-specific key=value settings.
	Options map[string]string
	// Progress, if set, receives progress reports.
	Progress func(Progress)
}

// RestoreStats count what a restore did.
type RestoreStats struct {
	Files     int64 // the snapshot's file entries (a sparse stream does not send the kept ones)
	Unchanged int64 // entries the target already held (in place)
	Rewritten int64 // entries sent to be written (with their bodies)
	Bytes     int64 // file bytes sent
	// Deleted counts the entries a sparse in-place restore asked the
	// engine to delete (with what is beneath them); a full in-place
	// stream leaves finding them to the engine.
	Deleted int64
	// Planned is true when an in-place restore compared the target with
	// the snapshot first (the engine can list a target without reading
	// it); false means every entry was rewritten.
	Planned bool
}

// RestoreResult says where the environment now is and what the restore did.
// It embeds the engine's result, so Target and Messages read directly.
type RestoreResult struct {
	pluginapi.RestoreResult
	// Snapshot is the record restored.
	Snapshot *store.Snapshot
	Stats    RestoreStats
}

// Restore restores a snapshot through its engine: to a new target (which
// must not exist or be empty: ErrTargetNotEmpty otherwise), or in place,
// where only what differs from the snapshot is rewritten and what the
// snapshot lacks is deleted. Every byte is verified against its hash; a
// missing or corrupt chunk fails the restore naming the file, and the
// engine is never handed that file's last byte. The file-tree engines
// shipped here do not sync what they write, as cp -a does not
// (fstree.Applier says what that means after a crash).
func (m *Manager) Restore(ctx context.Context, opts RestoreOptions) (*RestoreResult, error) {
	start := m.now()
	op := &OpInfo{Op: "restore", Target: opts.Target}
	res, err := m.restore(ctx, opts, op)
	op.Duration = m.now().Sub(start)
	if err != nil {
		op.Err = err
		m.emit(ctx, "snapshot_restore_failed", op)
		m.log.Warn("restore failed", "ref", opts.Ref, "target", opts.Target, "err", err)
		return nil, err
	}
	op.Target = res.Target
	op.Bytes = res.Stats.Bytes
	m.emit(ctx, "snapshot_restored", op)
	m.log.Info("restored snapshot", "id", res.Snapshot.ID, "target", res.Target, "in_place", opts.InPlace,
		"unchanged", res.Stats.Unchanged, "rewritten", res.Stats.Rewritten, "bytes", res.Stats.Bytes, "duration", op.Duration)
	return res, nil
}

func (m *Manager) restore(ctx context.Context, opts RestoreOptions, op *OpInfo) (*RestoreResult, error) {
	snap, err := m.Resolve(ctx, opts.Ref)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	op.SnapshotID, op.Name, op.Engine, op.EnvID, op.Snapshot = snap.ID, snap.Name, snap.Engine, snap.EnvID, snap
	fail := func(err error) (*RestoreResult, error) {
		return nil, fmt.Errorf("restore %s: %w", snap.ID, err)
	}
	// A restore to a new target sends every entry whatever the engine
	// says, so the snapshot's trees and first chunks are read while the
	// engine's plugin starts (~0.09 s on venv-full, during which the host
	// had nothing to do). It is closed on every return that does not hand
	// it on to the engine.
	var early *restoreReader
	var earlyCtx context.Context
	var earlyCancel context.CancelFunc
	if !opts.InPlace {
		earlyCtx, earlyCancel = context.WithCancel(ctx)
		early = newRestoreReader(earlyCtx, m.store, snap, nil, false, nil, m.opts.RestoreWorkers, opts.Progress)
		defer func() {
			if early != nil {
				earlyCancel()
				early.close()
			}
		}()
	}
	// An in-place restore reads, while the engine's plugin starts, the
	// snapshot's own change index with its directories: the target's
	// listing is given it, so a subtree still as captured comes as one
	// entry (liveListing.run) and the plan reads none of its trees. Where
	// that cannot be — no index, or an engine that takes only a full
	// stream or cannot list the target (wantTrees, said once the engine
	// answered) — the walk needs every tree, and they are read next,
	// ahead of it (~0.1 s on venv-full), rather than while it competes
	// for the cores with the engine. The reading stops, and is waited
	// for, on every return that has not taken its results.
	var ownc chan ownIndex
	var treesc chan map[store.Hash]*store.Tree
	wantTrees := make(chan bool, 1)
	if opts.InPlace {
		octx, ocancel := context.WithCancel(ctx)
		ownc = make(chan ownIndex, 1)
		treesc = make(chan map[store.Hash]*store.Tree, 1)
		go func() {
			// In the form the engine most likely takes: it has not
			// said yet (see ownIndex).
			read := m.now()
			own := m.loadOwnIndex(octx, snap, formPrinted)
			m.log.Debug("restore: read own change index", "took", m.now().Sub(read), "records", own.records())
			ownc <- own
			want := !own.hasDirs()
			if !want {
				select {
				case want = <-wantTrees:
				case <-octx.Done():
				}
			}
			var trees map[store.Hash]*store.Tree
			if want {
				trees = m.loadTrees(octx, snap)
			}
			treesc <- trees
		}()
		defer func() {
			ocancel()
			if ownc != nil {
				<-ownc
			}
			if treesc != nil {
				<-treesc
			}
		}()
	}
	eng, err := m.Engine(ctx, snap.Engine)
	if err != nil {
		return fail(err)
	}
	info, err := eng.Info(ctx)
	if err != nil {
		return fail(engineError(snap.Engine, "", err))
	}
	options := maps.Clone(opts.Options)
	if opts.Name != "" {
		if options == nil {
			options = map[string]string{}
		}
		if _, ok := options["name"]; !ok {
			options["name"] = opts.Name
		}
	}
	target := opts.Target
	if opts.InPlace && target == "" {
		target = snap.Target
	}
	if opts.InPlace && !info.Has(pluginapi.CapRestoreInPlace) {
		return fail(fmt.Errorf("%w: engine %q cannot restore in place", ErrUnsupported, snap.Engine))
	}
	op.Target = target

	// Plan an in-place restore: list the target without reading it and
	// compare with the snapshot.
	var planner *inplacePlanner
	indexable := info.Has(pluginapi.CapIndexOnly)
	riTarget := target
	if indexable && target != "" {
		if ident, err := eng.Identify(ctx, target, options); err == nil {
			riTarget = ident.Target
		}
	}
	// Only an engine that lists the target and takes a sparse stream is
	// given own for the listing (a full stream names every entry, so
	// needs every entry listed), and only where the snapshot was taken (a
	// target elsewhere holds none of its inodes).
	ownListing := indexable && info.Has(pluginapi.CapRestoreSparse) && (target == snap.Target || riTarget == snap.Target)
	wantTrees <- !ownListing
	var trees map[store.Hash]*store.Tree
	// live is the target's listing an in-place restore plans from as it
	// arrives; listDone closes when its capture has returned.
	var live *liveListing
	listDone := make(chan struct{})
	lctx, lcancel := context.WithCancel(ctx)
	defer func() {
		lcancel()
		<-listDone
	}()
	phase := m.now()
	if opts.InPlace && indexable {
		// The engine lists the target while the host loads what the plan
		// compares the listing with (and the snapshot's trees, begun
		// above); the restore then starts at once and plans each entry
		// as soon as the listing has passed it, so the engine writes
		// while the rest of the target is still being listed
		// (liveListing).
		priorc := make(chan *planPrior, 1)
		go func() { priorc <- m.loadPlanPrior(ctx, snap, riTarget) }()
		own := <-ownc
		ownc = nil
		if own.err != nil {
			// Only an optimization: without it more is rewritten.
			m.log.Warn("restore: snapshot's change index unreadable", "snapshot", snap.ID, "err", own.err)
			own = ownIndex{}
		}
		if form := parentFormOf(eng); ownListing && own.hasDirs() && own.form != form {
			// A wrong guess (an engine in this process, or a plugin
			// that takes no fingerprints): read again in its form.
			if own = m.loadOwnIndex(ctx, snap, form); own.err != nil {
				m.log.Warn("restore: snapshot's change index unreadable", "snapshot", snap.ID, "err", own.err)
				own = ownIndex{}
			}
		}
		var parent *ownIndex
		if ownListing && own.hasDirs() {
			parent = &own
		}
		live = newLiveListing(snap.Stats.Files+snap.Stats.Dirs, snap.Stats.Dirs)
		listStart := m.now()
		m.log.Debug("restore: loaded own change index", "took", listStart.Sub(phase), "records", own.records())
		go func() {
			defer close(listDone)
			err := live.run(lctx, eng, target, options, snap.Excludes, parent)
			m.log.Debug("restore: listed target", "target", target, "took", m.now().Sub(listStart), "err", err)
		}()
		prior := <-priorc
		trees, treesc = <-treesc, nil
		// A target the engine refuses to list (not there, not a venv) is
		// refused before anything is written, as when the listing came
		// first: its first stream has begun or the listing has failed.
		if err := live.begun(ctx); err != nil {
			return fail(engineError(snap.Engine, fmt.Sprintf("list target %q", target), err))
		}
		// The plan looks files up in own directory by directory, from the
		// chunks its read kept (the packed form is the listing's).
		prior.own = newOwnFiles(own.dirs)
		// Listed with own, the plan keeps few files one by one: most are
		// beneath subtrees kept whole.
		filesHint := snap.Stats.Files
		if parent != nil {
			filesHint = 0
		}
		planner = newInplacePlanner(live, prior.own, prior.last, prior.lastSnap, snap.ID, filesHint)
	} else {
		close(listDone)
		if treesc != nil {
			// In place through an engine that cannot list the target:
			// the restore still walks the trees read while it started,
			// rather than reading them again beside a load that goes on
			// only to be dropped.
			trees, treesc = <-treesc, nil
		}
	}
	if indexable && riTarget != "" {
		m.dropRestoreIndex(snap.Engine, riTarget)
	}
	m.emit(ctx, "snapshot_restoring", op)

	req := &pluginapi.RestoreRequest{
		Target:         target,
		OriginalTarget: snap.Target,
		InPlace:        opts.InPlace,
		Replace:        opts.Replace,
		Options:        options,
		Metadata:       pluginapi.Metadata{Version: snap.MetadataVersion, JSON: snap.Metadata},
		// What the snapshot left out, an in-place restore leaves alone.
		Excludes: snap.Excludes,
		// An engine that can take only what changes is sent only that:
		// the listing already told the host what to keep and delete.
		Sparse: planner != nil && info.Has(pluginapi.CapRestoreSparse),
	}
	for _, s := range snap.Streams {
		req.Streams = append(req.Streams, s.Name)
	}
	phase = m.now()
	var rctx context.Context
	var cancel context.CancelFunc
	var rr *restoreReader
	if early != nil {
		rctx, cancel, rr = earlyCtx, earlyCancel, early
		early = nil // closed below
	} else {
		rctx, cancel = context.WithCancel(ctx)
		rr = newRestoreReader(rctx, m.store, snap, planner, req.Sparse, trees, m.opts.RestoreWorkers, opts.Progress)
	}
	if live != nil {
		// A planner waiting for the listing wakes when the restore ends.
		defer context.AfterFunc(rctx, live.wake)()
	}
	er, err := eng.Restore(rctx, req, rr)
	cancel()
	rr.close()
	if live != nil {
		if lerr := live.failure(); lerr != nil || err == nil {
			// The listing failed (and with it the restore), or the
			// restore is done: the listing ends by itself, having
			// passed everything the plan needed.
			<-listDone
			if lerr = live.failure(); lerr != nil {
				return fail(engineError(snap.Engine, fmt.Sprintf("list target %q", target), lerr))
			}
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, pluginapi.ErrTargetExists):
			return fail(fmt.Errorf("%w: %q (restore in place, or choose another target): %w", ErrTargetNotEmpty, target, err))
		case rr.prodErr != nil && !errors.Is(rr.prodErr, context.Canceled):
			// The snapshot's side failed (a corrupt tree): say so first.
			return fail(fmt.Errorf("%w (engine: %w)", rr.prodErr, err))
		}
		return fail(engineError(snap.Engine, "", err))
	}
	if er == nil {
		er = &pluginapi.RestoreResult{Target: target}
	}
	res := &RestoreResult{RestoreResult: *er, Snapshot: snap, Stats: rr.stats}
	res.Stats.Planned = planner != nil
	fetched, guessed, right := rr.chunks.counts()
	m.log.Debug("restore: engine done", "target", target, "took", m.now().Sub(phase),
		"chunks_read", fetched, "places_guessed", guessed, "guessed_right", right)

	// Remember what the target looks like now, so the next in-place
	// restore trusts what it finds untouched.
	if indexable && res.Target != "" {
		phase = m.now()
		key := riTarget
		if res.Target != target || key == "" {
			key = res.Target
			if ident, err := eng.Identify(ctx, res.Target, options); err == nil {
				key = ident.Target
			}
		}
		m.recordRestoreIndex(ctx, eng, snap, res.Target, key, options, planner, writtenFiles(er.Written, rr.sentFiles))
		m.log.Debug("restore: recorded restore index", "target", res.Target, "took", m.now().Sub(phase))
	}
	return res, nil
}

// ownIndex is a snapshot's own change index, with its directories and
// symlinks, in the form the engine listing the target takes it, made as
// it was read: fingerprinted (pluginapi.PrintedParent) for a plugin that
// takes fingerprints, else packed (the form an engine in a plugin
// process takes it in, decoded into a map for one in this one). Building
// a map of its 46,508 records for venv-full, only to pack them for the
// engine, was on the way to the target's listing; so was fingerprinting
// the packed form once it was read (~10 ms of one core, after the index's
// read and before the listing's request could go). The plan looks its
// files up directory by directory (ownFiles), once the listing has
// begun.
type ownIndex struct {
	form   parentForm                        // formPrinted or formPacked
	packed map[string]*pluginapi.PackedIndex // by stream (formPacked); nil: none
	prints *pluginapi.PrintedParent          // formPrinted
	n      int                               // records
	hasDir bool                              // it has a directory's record
	dirs   *store.IndexDirs                  // its files again, directory by directory
	err    error
}

// hasDirs reports whether the index has a directory's record: one from
// before directories were recorded (store format 1) cannot tell the
// listing of any unchanged subtree.
func (o ownIndex) hasDirs() bool { return o.hasDir }

// records counts the index's records, files and others.
func (o ownIndex) records() int { return o.n }

// loadOwnIndex reads snap's own change index with its directories and
// symlinks (none if it has no index), in form form.
func (m *Manager) loadOwnIndex(ctx context.Context, snap *store.Snapshot, form parentForm) ownIndex {
	// The first stream is most likely nearly all of it.
	hint := int(min(max(snap.Stats.Files+snap.Stats.Dirs, 0), maxListingHint))
	o := ownIndex{form: form}
	var add func(stream, path string, e pluginapi.IndexEntry)
	if form == formPrinted {
		var err error
		if o.prints, err = pluginapi.NewPrintedParent(hint); err != nil {
			return ownIndex{err: err}
		}
		add = o.prints.Add
	} else {
		o.form, o.packed = formPacked, map[string]*pluginapi.PackedIndex{}
		add = func(stream, path string, e pluginapi.IndexEntry) {
			p := o.packed[stream]
			if p == nil {
				p = pluginapi.NewPackedIndex(hint)
				hint = 0
				o.packed[stream] = p
			}
			p.Add(path, e)
		}
	}
	// The records are fingerprinted (or packed) on a goroutine of their
	// own, in batches, while the store's readers go on: called from the
	// read, add ran under its lock, one record at a time, and a no-op
	// in-place restore of venv-full waited 5-18 ms for the read after
	// the engine was ready (the read took ~27 ms; the restore 0.13 s).
	batches := make(chan []ownRecord, ownBatches)
	added := make(chan struct{})
	go func() {
		defer close(added)
		for b := range batches {
			for i := range b {
				add(b[i].stream, b[i].path, b[i].e)
			}
		}
	}()
	batch := make([]ownRecord, 0, ownBatch)
	dirs, err := store.ChangeIndexWithDirsVisit(ctx, m.store, snap.ID, func(stream, path string, r store.IndexRecord) {
		e := indexEntryOf(r)
		o.hasDir = o.hasDir || e.Type == pluginapi.TypeDir
		o.n++
		if batch = append(batch, ownRecord{stream, path, e}); len(batch) == ownBatch {
			batches <- batch
			batch = make([]ownRecord, 0, ownBatch)
		}
	})
	batches <- batch
	close(batches)
	<-added
	if errors.Is(err, store.ErrNotFound) {
		return ownIndex{}
	}
	if err != nil {
		return ownIndex{err: err}
	}
	o.dirs = dirs
	return o
}

// ownRecord is a record of a snapshot's own change index on its way to be
// fingerprinted or packed (loadOwnIndex).
type ownRecord struct {
	stream, path string
	e            pluginapi.IndexEntry
}

// ownBatch is how many records loadOwnIndex hands its fingerprinting
// goroutine at a time, and ownBatches how many batches may wait for it.
const (
	ownBatch   = 512
	ownBatches = 16
)

// ownFiles looks up the files of a snapshot's own change index for an
// in-place plan, decoding each directory's records (store.IndexDirs) when
// the plan first asks about a file there: listed with own, the plan asks
// about the files of the directories that changed only (a few hundred on
// venv-full after change small), and a map of every record, decoded for
// them beside the listing, was ~17 ms of the host's CPU and 5 MB of fresh
// memory while the cores were busiest. Safe for concurrent use.
type ownFiles struct {
	dirs *store.IndexDirs // nil: no index

	mu    sync.Mutex
	byDir map[string]map[string]map[string]store.IndexRecord // stream, directory, path
}

// newOwnFiles returns the lookups of dirs (nil: an index without files).
func newOwnFiles(dirs *store.IndexDirs) *ownFiles {
	return &ownFiles{dirs: dirs, byDir: map[string]map[string]map[string]store.IndexRecord{}}
}

// file returns the record of the file at path of stream, if the index has
// one. A directory whose records cannot be read has none: they are only
// an optimization, and without them more is rewritten.
func (o *ownFiles) file(ctx context.Context, stream, path string) (store.IndexRecord, bool) {
	if o == nil || o.dirs == nil {
		return store.IndexRecord{}, false
	}
	dir := ""
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir = path[:i]
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	dirs := o.byDir[stream]
	if dirs == nil {
		dirs = map[string]map[string]store.IndexRecord{}
		o.byDir[stream] = dirs
	}
	files, ok := dirs[dir]
	if !ok {
		files, _ = o.dirs.Files(ctx, stream, dir)
		dirs[dir] = files
	}
	r, ok := files[path]
	return r, ok
}

// planPrior is what an in-place plan compares the target's listing with.
type planPrior struct {
	own      *ownFiles     // the snapshot's own change index, if any (ownIndex)
	last     *restoreIndex // the target's restore index, if any
	lastSnap *treeLookup   // the last restore's snapshot, when another one
}

// loadPlanPrior loads the restore index of the target (riTarget, its
// identity) and, if that is of another snapshot, that snapshot's trees'
// lookup. snap's own change index is read beside (loadOwnIndex): even
// after restores, the subtrees no restore touched are as captured, which
// its directories' records let the listing tell at once.
func (m *Manager) loadPlanPrior(ctx context.Context, snap *store.Snapshot, riTarget string) *planPrior {
	start := m.now()
	p := &planPrior{}
	p.last = m.loadRestoreIndex(ctx, snap.Engine, riTarget)
	if p.last != nil && p.last.SnapshotID == snap.ID {
		m.log.Debug("restore: loaded the restore index", "took", m.now().Sub(start))
		return p
	}
	if p.last != nil {
		if ls, err := m.store.Snapshot(ctx, p.last.SnapshotID); err == nil {
			p.lastSnap = newTreeLookup(m.store, ls)
		}
	}
	m.log.Debug("restore: loaded change and restore indexes", "took", m.now().Sub(start))
	return p
}

// loadTrees reads every directory tree of snap, for a restore to walk
// without waiting for the store: loaded while the target is listed, this
// takes reading and decoding them (~0.15 s on venv-full's 4,000
// directories) off an in-place restore's path. It stops after
// aheadTreeNodes nodes, the bound a new-target restore keeps ahead too, so
// a huge snapshot's trees are not all held at once. On any error it
// returns what it has; the walk reads the rest and reports the error
// itself.
func (m *Manager) loadTrees(ctx context.Context, snap *store.Snapshot) map[store.Hash]*store.Tree {
	trees := map[store.Hash]*store.Tree{}
	var queue []store.Hash
	for _, s := range snap.Streams {
		queue = append(queue, s.Root)
	}
	nodes := 0
	for len(queue) > 0 && ctx.Err() == nil && nodes < aheadTreeNodes {
		h := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if _, ok := trees[h]; ok {
			continue
		}
		t, err := m.store.GetTree(ctx, h)
		if err != nil {
			break
		}
		trees[h] = t
		nodes += len(t.Nodes)
		for i := range t.Nodes {
			if t.Nodes[i].Type == store.NodeDir {
				queue = append(queue, t.Nodes[i].Subtree)
			}
		}
	}
	return trees
}

// relistDivisor bounds, for an engine that does not report the files it
// wrote (pluginapi.RestoreResult.Written), what an in-place restore may
// leave out of the restore index it records: when it rewrote more than one
// file in
// relistDivisor of the snapshot's files, the target is listed again;
// otherwise the index holds only the files it kept (inplacePlanner.keptIndex)
// and the next in-place restore rewrites the others once more. On
// venv-full, listing the target (46,508 entries) took ~0.5 s and
// rewriting 705 small files again ~0.3 s, so a listing costs about what
// rewriting a thirty-second of the files does; the files left out only
// grow until the next listing, so the extra rewriting stays bounded.
const relistDivisor = 32

// writtenFiles is the change-index form of the engine's report of the
// files it wrote (nil if it made none), taken only for the files the host
// sent it to write.
func writtenFiles(written pluginapi.ParentIndex, sent map[string]map[string]bool) store.ChangeIndex {
	if written == nil {
		return nil
	}
	out := make(store.ChangeIndex, len(written))
	for stream, files := range written {
		m := make(map[string]store.IndexRecord, len(files))
		for p, ie := range files {
			if sent[stream][p] {
				m[p] = store.IndexRecord{Size: ie.Size, MtimeNs: ie.MtimeNs, CtimeNs: ie.CtimeNs, Inode: ie.Inode}
			}
		}
		out[stream] = m
	}
	return out
}

// recordRestoreIndex stores the target's file statistics after a restore
// under key (the target's identity). When the engine reported the files
// it wrote (written), they are those with, after an in-place restore, the
// files it kept as the listing taken before it saw them. Without a report,
// after an in-place restore that rewrote few files they are the kept ones
// alone; otherwise the target is listed again.
func (m *Manager) recordRestoreIndex(ctx context.Context, eng pluginapi.Engine, snap *store.Snapshot, target, key string, options map[string]string, planner *inplacePlanner, written store.ChangeIndex) {
	var files store.ChangeIndex
	switch {
	case written != nil:
		files = written
		if planner != nil {
			// The written files into the kept ones, usually far more
			// (on venv-full's undo of change small 6,300 into 38,000):
			// the two sets are disjoint, as only files not kept are sent.
			files = planner.keptIndex(ctx)
			for stream, w := range written {
				if files[stream] == nil {
					files[stream] = w
					continue
				}
				maps.Copy(files[stream], w)
			}
		}
	case planner != nil && planner.rewrittenFiles()*relistDivisor <= planner.files:
		files = planner.keptIndex(ctx)
	default:
		now, err := captureIndex(ctx, eng, target, options, snap.Excludes)
		if err != nil {
			m.log.Warn("list target after restore", "target", target, "err", err)
			return
		}
		files = now.files()
	}
	ri := &restoreIndex{Engine: snap.Engine, Target: key, SnapshotID: snap.ID, Files: files}
	if err := m.saveRestoreIndex(ctx, ri); err != nil {
		m.log.Warn("save restore index", "target", target, "err", err)
	}
}
