package core

import (
	"context"
	"fmt"
	"time"

	"github.com/pypj/ptest-snap/store"
)

// ListOptions filter List. Zero fields do not filter.
type ListOptions struct {
	Engine string
	EnvID  string
	// Labels selects snapshots carrying every one of these labels, each
	// "key=value" or "key" (any value).
	Labels []string
	// Name selects the snapshot with this exact name.
	Name string
	// Since and Until select snapshots created at or after Since and
	// before Until.
	Since time.Time
	Until time.Time
	// Sizes computes each snapshot's ExclusiveBytes (a walk of every
	// snapshot's trees); without it ExclusiveBytes is -1.
	Sizes bool
}

// ListEntry is one snapshot of a listing.
type ListEntry struct {
	Snapshot *store.Snapshot
	Sizes    SnapshotSizes
}

// List returns the snapshots matching opts, newest first, each with its
// size figures.
func (m *Manager) List(ctx context.Context, opts ListOptions) ([]ListEntry, error) {
	var sels [][2]string
	for _, l := range opts.Labels {
		k, v, err := parseLabelSelector(l)
		if err != nil {
			return nil, fmt.Errorf("list: %w: %w", ErrInvalidOptions, err)
		}
		sels = append(sels, [2]string{k, v})
	}
	var all []*store.Snapshot
	var err error
	if opts.Engine != "" && opts.EnvID != "" && !opts.Sizes {
		all, err = m.store.SnapshotsByEnv(ctx, opts.Engine, opts.EnvID)
	} else {
		all, err = m.store.Snapshots(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var sizes []SnapshotSizes
	if opts.Sizes {
		// Exclusive bytes are relative to every snapshot in the store, not
		// only the ones listed.
		if sizes, err = m.snapshotSizes(ctx, all); err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
	}
	var out []ListEntry
	for i, s := range all {
		if !matchList(s, opts, sels) {
			continue
		}
		e := ListEntry{Snapshot: s, Sizes: SnapshotSizes{LogicalBytes: s.Stats.LogicalBytes, StoredBytes: s.Stats.StoredBytes, ExclusiveBytes: -1}}
		if sizes != nil {
			e.Sizes = sizes[i]
		}
		out = append(out, e)
	}
	sortEntriesNewestFirst(out)
	return out, nil
}

func matchList(s *store.Snapshot, o ListOptions, sels [][2]string) bool {
	if o.Engine != "" && s.Engine != o.Engine {
		return false
	}
	if o.EnvID != "" && s.EnvID != o.EnvID {
		return false
	}
	if o.Name != "" && s.Name != o.Name {
		return false
	}
	if !o.Since.IsZero() && s.CreatedAt.Before(o.Since) {
		return false
	}
	if !o.Until.IsZero() && !s.CreatedAt.Before(o.Until) {
		return false
	}
	for _, sel := range sels {
		v, ok := s.Labels[sel[0]]
		if !ok || (sel[1] != "" && v != sel[1]) {
			return false
		}
	}
	return true
}

func sortEntriesNewestFirst(es []ListEntry) {
	snaps := make([]*store.Snapshot, len(es))
	byID := make(map[*store.Snapshot]ListEntry, len(es))
	for i, e := range es {
		snaps[i] = e.Snapshot
		byID[e.Snapshot] = e
	}
	sortNewestFirst(snaps)
	for i, s := range snaps {
		es[i] = byID[s]
	}
}
