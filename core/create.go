package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// Parent choices for CreateOptions.Parent besides a snapshot reference.
const (
	// ParentAuto (or "") uses the newest snapshot of the same engine and
	// environment, if any.
	ParentAuto = "auto"
	// ParentNone captures everything afresh.
	ParentNone = "none"
)

// CreateOptions describe a snapshot to create.
type CreateOptions struct {
	// Engine names the engine ("dir", "virtualenv", "docker", ...).
	Engine string
	// Target is what to capture, as the engine understands it (a path, a
	// container name or ID).
	Target string
	// ID sets an explicit snapshot ID (validated with ValidateID; must be
	// unused). Empty generates one with NewID.
	ID string
	// Name is an optional unique name (ValidateName).
	Name string
	// Labels are key=value tags (keys: ValidateName's rule).
	Labels map[string]string
	// Env and Ports are user configuration recorded with the snapshot.
	Env   map[string]string
	Ports []int
	// Parent is ParentAuto ("" too), ParentNone, or a snapshot reference.
	Parent string
	// Excludes are patterns the engine skips.
	Excludes []string
	// Options are engine-specific key=value settings.
	Options map[string]string
	// Progress, if set, receives progress reports.
	Progress func(Progress)
}

// Create captures opts.Target through the engine and stores it as a new
// snapshot. The snapshot becomes visible only once everything it references
// is durable; on any error or cancellation nothing is visible.
//
// With a parent (by default the newest snapshot of the same engine and
// environment) the engine is given the parent's change index, and files it
// reports unchanged reuse the parent's chunks without being read.
func (m *Manager) Create(ctx context.Context, opts CreateOptions) (*store.Snapshot, error) {
	start := m.now()
	op := &OpInfo{Op: "create", Engine: opts.Engine, Target: opts.Target, Name: opts.Name}
	snap, err := m.create(ctx, opts, op, start)
	op.Duration = m.now().Sub(start)
	if err != nil {
		op.Err = err
		m.emit(ctx, "snapshot_create_failed", op)
		m.log.Warn("create failed", "engine", opts.Engine, "target", opts.Target, "err", err)
		return nil, err
	}
	op.Snapshot = snap
	m.emit(ctx, "snapshot_created", op)
	m.log.Info("created snapshot", "id", snap.ID, "engine", snap.Engine, "env", snap.EnvID,
		"files", snap.Stats.Files, "bytes", snap.Stats.LogicalBytes, "new_bytes", snap.Stats.NewBytes,
		"duration", snap.Stats.Duration)
	return snap, nil
}

func (m *Manager) create(ctx context.Context, opts CreateOptions, op *OpInfo, start time.Time) (*store.Snapshot, error) {
	if err := m.validateCreate(ctx, &opts); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	// The likely parent is prepared while the engine starts (parent_ahead.go).
	ahead := m.startParentAhead(ctx, opts)
	defer ahead.abandon()
	eng, err := m.Engine(ctx, opts.Engine)
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	info, err := eng.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("create: %w", engineError(opts.Engine, "", err))
	}
	form := parentFormOf(eng)
	ahead.setForm(form)
	ident, err := eng.Identify(ctx, opts.Target, opts.Options)
	if err != nil {
		return nil, fmt.Errorf("create: %w", engineError(opts.Engine, fmt.Sprintf("identify %q", opts.Target), err))
	}
	op.EnvID, op.Target = ident.EnvID, ident.Target

	parent, err := m.chooseParent(ctx, opts, ident.EnvID)
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	id := opts.ID
	if id == "" {
		id = NewID(start)
	}
	op.SnapshotID = id
	req := &pluginapi.CaptureRequest{
		Target:   opts.Target,
		Excludes: opts.Excludes,
		Env:      opts.Env,
		Ports:    opts.Ports,
		Options:  opts.Options,
		// The snapshot writer takes an unchanged file's xattrs from the
		// parent when the engine asks it to.
		ParentXattrs: true,
	}
	var prep *preparedParent
	if parent != nil {
		prep = ahead.take(ctx, parent.ID, form)
	} else {
		ahead.abandon()
	}
	var w *store.Writer
	if prep != nil {
		w = prep.w
	} else if w, err = m.store.NewWriter(ctx); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()
	if parent != nil && prep == nil {
		// Pinned, the parent's trees and index stay whole until Commit
		// even if it is deleted meanwhile, and what it shares with this
		// snapshot is reused without a lookup per hash (store/parent_pin.go).
		prep = prepareParent(ctx, w, parent, func() parentForm { return form })
		if errors.Is(prep.pinErr, store.ErrNotFound) {
			// Deleted since it was chosen: capture everything afresh.
			parent = nil
		} else if prep.pinErr != nil {
			return nil, fmt.Errorf("create: parent %s: %w", parent.ID, prep.pinErr)
		}
	}
	var lookup *treeLookup
	if parent != nil {
		op.Parent, op.parent = parent.ID, parent
		if err := prep.parentIndexErr(); err != nil {
			return nil, fmt.Errorf("create: %w", err)
		}
		// A parent without an index (imported, say) still records
		// lineage; every file is read.
		if prep.indexErr == nil {
			// Fingerprinted or packed as read for an engine in a
			// plugin; decoded for one in this process.
			if err := prep.setRequest(eng, req); err != nil {
				return nil, fmt.Errorf("create: parent %s: %w", parent.ID, err)
			}
			// Whole unchanged directories are taken from the parent
			// (unchanged_dirs.go in pluginapi/fstree).
			req.UnchangedDirs = true
			lookup = newParentLookup(ctx, w, parent)
			defer lookup.close()
		}
	}
	if err := m.checkBeforeCreate(ctx, op); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	m.emit(ctx, "snapshot_creating", op)

	// The pipeline's goroutines end with this context, whatever the engine
	// does.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sw := newSnapshotWriter(pctx, w, lookup, m.opts.CreateWorkers, opts.Progress)
	sw.saver.budget = op.budget
	if req.UnchangedDirs {
		sw.parentDirs = prep.dirs
	}
	if parent != nil {
		// The parent's size is the best guess at this capture's, for a
		// progress bar's total and ETA.
		sw.totalFiles, sw.totalBytes = parent.Stats.Files+parent.Stats.Dirs, parent.Stats.LogicalBytes
	}
	capErr := eng.Capture(pctx, req, sw)
	if capErr != nil {
		cancel()
		capErr = engineError(opts.Engine, fmt.Sprintf("capture %q", opts.Target), capErr)
	}
	streams, err := sw.finish(pctx, capErr)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("create: %w", err)
	}
	if sw.metadata == nil {
		return nil, fmt.Errorf("create: %w: engine %q sent no metadata", ErrEngine, opts.Engine)
	}
	ws := w.Stats()
	// Trees are stored after the last chunk; packed small chunks count
	// when their pack is sealed, in Commit, so this is the last check.
	if err := op.budget.check(ws.StoredBytes); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	snap := &store.Snapshot{
		ID:              id,
		Name:            opts.Name,
		Labels:          opts.Labels,
		Engine:          opts.Engine,
		EngineVersion:   info.Version,
		EnvID:           ident.EnvID,
		Target:          ident.Target,
		CreatedAt:       start,
		MetadataVersion: sw.metadata.Version,
		Metadata:        sw.metadata.JSON,
		Env:             opts.Env,
		Ports:           opts.Ports,
		Excludes:        opts.Excludes,
		Streams:         streams,
		Stats: store.SnapshotStats{
			Files:        sw.files,
			Dirs:         sw.dirs,
			LogicalBytes: sw.bytes,
			NewBytes:     ws.NewBytes,
			StoredBytes:  ws.StoredBytes,
			Duration:     m.now().Sub(start),
		},
	}
	if parent != nil {
		snap.Parent = parent.ID
	}
	op.Bytes = sw.bytes
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	if err := w.CommitIndexed(ctx, snap, sw.indexRoots); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("create: %w: %w", m.whichTaken(ctx, snap), err)
		}
		return nil, fmt.Errorf("create: commit: %w", err)
	}
	committed = true
	return snap, nil
}

// whichTaken tells whether a failed commit clashed on the name or the ID.
func (m *Manager) whichTaken(ctx context.Context, snap *store.Snapshot) error {
	if _, err := m.store.Snapshot(ctx, snap.ID); err == nil {
		return fmt.Errorf("%w: %q", ErrIDTaken, snap.ID)
	}
	return fmt.Errorf("%w: %q", ErrNameTaken, snap.Name)
}

// validateCreate checks the options before anything is done.
func (m *Manager) validateCreate(ctx context.Context, opts *CreateOptions) error {
	if opts.Engine == "" {
		return fmt.Errorf("%w: no engine", ErrInvalidOptions)
	}
	if opts.ID != "" {
		if err := ValidateID(opts.ID); err != nil {
			return err
		}
		if _, err := m.store.Snapshot(ctx, opts.ID); err == nil {
			return fmt.Errorf("%w: %q", ErrIDTaken, opts.ID)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if opts.Name != "" {
		if err := ValidateName(opts.Name); err != nil {
			return err
		}
		if _, err := m.store.SnapshotByName(ctx, opts.Name); err == nil {
			return fmt.Errorf("%w: %q", ErrNameTaken, opts.Name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(opts.Labels)) {
		if err := validateToken(k); err != nil {
			return fmt.Errorf("%w: label key %q: %s", ErrInvalidID, k, err)
		}
	}
	return nil
}

// chooseParent picks the parent snapshot per opts.Parent.
func (m *Manager) chooseParent(ctx context.Context, opts CreateOptions, envID string) (*store.Snapshot, error) {
	switch opts.Parent {
	case ParentNone:
		return nil, nil
	case "", ParentAuto:
		snaps, err := m.store.SnapshotsByEnv(ctx, opts.Engine, envID)
		if err != nil {
			return nil, fmt.Errorf("find parent: %w", err)
		}
		if len(snaps) == 0 {
			return nil, nil
		}
		return snaps[0], nil
	}
	p, err := m.Resolve(ctx, opts.Parent)
	if err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	if p.Engine != opts.Engine {
		return nil, fmt.Errorf("%w: parent %s was made by engine %q, not %q", ErrInvalidOptions, p.ID, p.Engine, opts.Engine)
	}
	return p, nil
}

// engineErr marks an engine's error with ErrEngine unless it already
// carries a sentinel the caller can branch on.
// engineError names the engine and the operation in err, once: the plugin
// host's errors already start with `engine "NAME": `, an in-process
// engine's do not. It classifies err with engineErr.
func engineError(name, op string, err error) error {
	err = engineErr(err)
	if strings.HasPrefix(err.Error(), fmt.Sprintf("engine %q: ", name)) {
		return err
	}
	if op == "" {
		return fmt.Errorf("engine %q: %w", name, err)
	}
	return fmt.Errorf("engine %q: %s: %w", name, op, err)
}

func engineErr(err error) error {
	for _, known := range []error{
		context.Canceled, context.DeadlineExceeded, ErrEngine, ErrQuotaExceeded, ErrNotFound, ErrCorrupt,
		pluginapi.ErrTargetNotFound, pluginapi.ErrInvalidTarget, pluginapi.ErrTargetExists,
		pluginapi.ErrUnsafePath, pluginapi.ErrUnavailable, pluginapi.ErrPermissionDenied, pluginapi.ErrUnsupported,
	} {
		if errors.Is(err, known) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrEngine, err)
}
