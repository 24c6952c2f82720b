package core

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pypj/ptest-snap/store"
)

// ShowResult is one snapshot in full.
type ShowResult struct {
	// Snapshot is the record; its Metadata is the engine's JSON, verbatim.
	Snapshot *store.Snapshot
	// Metadata is the engine's metadata decoded as generic JSON (nil when
	// the engine recorded none or it is not JSON).
	Metadata any
	// Packages is the engine's package list when its metadata carries one
	// (the top-level "installed_packages": {"name": "version"}).
	Packages map[string]string
	// Sizes are the snapshot's size figures, ExclusiveBytes included.
	Sizes SnapshotSizes
	// ParentExists says whether the parent snapshot (if any) is still in
	// the store; Children are the IDs of snapshots whose parent this is.
	ParentExists bool
	Children     []string
}

// Show returns the snapshot ref names (ID, unique prefix or name) with its
// engine metadata and size figures.
func (m *Manager) Show(ctx context.Context, ref string) (*ShowResult, error) {
	snap, err := m.Resolve(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("show: %w", err)
	}
	all, err := m.store.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("show %s: %w", snap.ID, err)
	}
	sizes, err := m.snapshotSizes(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("show %s: %w", snap.ID, err)
	}
	res := &ShowResult{Snapshot: snap, Packages: packagesOf(snap.Metadata)}
	for i, s := range all {
		if s.ID == snap.ID {
			res.Sizes = sizes[i]
		}
		if snap.Parent != "" && s.ID == snap.Parent {
			res.ParentExists = true
		}
		if s.Parent == snap.ID {
			res.Children = append(res.Children, s.ID)
		}
	}
	if len(snap.Metadata) > 0 {
		var v any
		if json.Unmarshal(snap.Metadata, &v) == nil {
			res.Metadata = v
		}
	}
	return res, nil
}

// PackagesField is the top-level field of an engine's metadata JSON that
// holds its package list, {"name": "version"}: the original report's
// installed_packages. Diff compares it and the report JSON carries it.
const PackagesField = "installed_packages"

// packagesOf returns the package list in an engine's metadata, or nil.
func packagesOf(meta json.RawMessage) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	var v map[string]json.RawMessage
	if json.Unmarshal(meta, &v) != nil {
		return nil
	}
	raw, ok := v[PackagesField]
	if !ok {
		return nil
	}
	var pkgs map[string]string
	if json.Unmarshal(raw, &pkgs) != nil {
		return nil
	}
	if pkgs == nil {
		pkgs = map[string]string{}
	}
	return pkgs
}
