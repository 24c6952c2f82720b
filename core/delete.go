package core

import (
	"context"
	"fmt"
	"time"

	"github.com/pypj/ptest-snap/store"
)

// DeleteOptions describe a delete.
type DeleteOptions struct {
	// Refs name the snapshots: full IDs, unique ID prefixes or names.
	// Every ref is resolved before anything is deleted, so a bad ref
	// deletes nothing.
	Refs []string
	// Engine and EnvID, both set, add every snapshot of that environment
	// (the original report's delete on an environment object).
	Engine, EnvID string
	// DryRun resolves and reports without deleting.
	DryRun bool
}

// DeleteReport says what a delete removed (or, with DryRun, would remove).
type DeleteReport struct {
	// Snapshots are the records deleted (or that would be), in ref order,
	// each once even if named by several refs.
	Snapshots []*store.Snapshot
	DryRun    bool
}

// Delete removes the snapshots named by opts.Refs. Their chunks stay on
// disk until GC. A ref that matches nothing or is ambiguous fails the
// whole call before anything is deleted. Each deletion emits
// snapshot_deleting and snapshot_deleted (or snapshot_delete_failed).
func (m *Manager) Delete(ctx context.Context, opts DeleteOptions) (*DeleteReport, error) {
	byEnv := opts.Engine != "" || opts.EnvID != ""
	if len(opts.Refs) == 0 && !byEnv {
		return nil, fmt.Errorf("delete: %w: no snapshot given", ErrInvalidOptions)
	}
	if byEnv && (opts.Engine == "" || opts.EnvID == "") {
		return nil, fmt.Errorf("delete: %w: an environment needs both engine and env ID", ErrInvalidOptions)
	}
	snaps, err := m.ResolveMany(ctx, opts.Refs)
	if err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	if byEnv {
		envSnaps, err := m.store.SnapshotsByEnv(ctx, opts.Engine, opts.EnvID)
		if err != nil {
			return nil, fmt.Errorf("delete: %w", err)
		}
		snaps = append(snaps, envSnaps...)
	}
	seen := map[string]bool{}
	rep := &DeleteReport{DryRun: opts.DryRun}
	for _, s := range snaps {
		if !seen[s.ID] {
			seen[s.ID] = true
			rep.Snapshots = append(rep.Snapshots, s)
		}
	}
	if opts.DryRun {
		return rep, nil
	}
	deleted, err := m.deleteSnapshots(ctx, rep.Snapshots)
	rep.Snapshots = deleted
	if err != nil {
		return rep, err
	}
	return rep, nil
}

// deleteSnapshots deletes records one by one with events, stopping at the
// first failure; it returns the records it deleted.
func (m *Manager) deleteSnapshots(ctx context.Context, snaps []*store.Snapshot) ([]*store.Snapshot, error) {
	lc := m.lc()
	var done []*store.Snapshot
	for _, s := range snaps {
		start := time.Now()
		ev := Event{Type: EventSnapshotDeleting}
		fillFromSnapshot(&ev, s)
		lc.emit(ctx, ev)
		err := m.store.DeleteSnapshot(ctx, s.ID)
		ev.Time = time.Time{}
		ev.Duration = time.Since(start)
		if err != nil {
			ev.Type, ev.Err, ev.Error = EventSnapshotDeleteFailed, err, err.Error()
			lc.emit(ctx, ev)
			return done, fmt.Errorf("delete %s: %w", s.ID, err)
		}
		ev.Type = EventSnapshotDeleted
		lc.emit(ctx, ev)
		done = append(done, s)
	}
	return done, nil
}

// GCOptions configure GCWithOptions.
type GCOptions struct {
	// Progress, if set, is called as the collection goes through its
	// phases (see store.GCOptions.Progress: from GC's goroutine, and it
	// must return quickly).
	Progress func(store.GCProgress)
}

// GC deletes every chunk no snapshot references and gives the disk space
// back (see store.GC).
func (m *Manager) GC(ctx context.Context) (store.GCStats, error) {
	return m.GCWithOptions(ctx, GCOptions{})
}

// GCWithOptions is GC reporting its progress (GCOptions).
func (m *Manager) GCWithOptions(ctx context.Context, opts GCOptions) (store.GCStats, error) {
	st, err := m.store.GCWithOptions(ctx, store.GCOptions{Progress: opts.Progress})
	if err != nil {
		return st, err
	}
	m.log.Info("gc", "chunks_deleted", st.ChunksDeleted, "bytes_reclaimed", st.BytesReclaimed,
		"disk_before", st.DiskBefore, "disk_after", st.DiskAfter, "duration", st.Duration)
	return st, nil
}

// CleanupOptions describe a cleanup.
type CleanupOptions struct {
	// Policy says what to keep. A policy with no rule means the original
	// report's cleanup: remove snapshots older than DefaultCleanupAge.
	Policy RetentionPolicy
	// Engine and EnvID, if set, restrict the cleanup to those snapshots.
	Engine string
	EnvID  string
	// DryRun reports what would be removed without removing it.
	DryRun bool
	// GC runs a garbage collection after deleting, so the space comes back.
	GC bool
	// GCProgress, if set, receives that garbage collection's progress
	// (GCOptions.Progress).
	GCProgress func(store.GCProgress)
}

// CleanupReport says what a cleanup kept and removed, and why.
type CleanupReport struct {
	// Policy is the policy applied (with the default filled in).
	Policy RetentionPolicy
	// Groups hold every snapshot considered, per environment, newest
	// first, each with the rules that kept it or why it goes.
	Groups []RetentionGroup
	// Removed are the records deleted (or, with DryRun, to be deleted).
	Removed []*store.Snapshot
	// Kept counts the snapshots kept.
	Kept   int
	DryRun bool
	// GC is the garbage collection's result when CleanupOptions.GC was set
	// and something was removed.
	GC *store.GCStats
}

// Cleanup applies a retention policy to every environment (or to the one
// selected) and deletes, in one batch, the snapshots no rule keeps.
func (m *Manager) Cleanup(ctx context.Context, opts CleanupOptions) (*CleanupReport, error) {
	p := opts.Policy
	if p.IsEmpty() {
		p.OlderThan = DefaultCleanupAge
	}
	all, err := m.store.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	var snaps []*store.Snapshot
	for _, s := range all {
		if (opts.Engine == "" || s.Engine == opts.Engine) && (opts.EnvID == "" || s.EnvID == opts.EnvID) {
			snaps = append(snaps, s)
		}
	}
	rep := &CleanupReport{Policy: p, DryRun: opts.DryRun}
	if len(snaps) == 0 {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("cleanup: %w", err)
		}
		return rep, nil
	}
	groups, err := p.Apply(snaps, m.now())
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	rep.Groups = groups
	for _, g := range groups {
		for _, d := range g.Decisions {
			if d.Keep {
				rep.Kept++
			} else {
				rep.Removed = append(rep.Removed, d.Snapshot)
			}
		}
	}
	m.log.Info("cleanup", "policy", p.String(), "kept", rep.Kept, "removed", len(rep.Removed), "dry_run", opts.DryRun)
	if opts.DryRun || len(rep.Removed) == 0 {
		return rep, nil
	}
	deleted, err := m.deleteSnapshots(ctx, rep.Removed)
	if err != nil {
		rep.Removed = deleted
		return rep, fmt.Errorf("cleanup: %w", err)
	}
	if opts.GC {
		st, err := m.GCWithOptions(ctx, GCOptions{Progress: opts.GCProgress})
		if err != nil {
			return rep, fmt.Errorf("cleanup: %w", err)
		}
		rep.GC = &st
	}
	return rep, nil
}
