package core

import (
	"context"
	"errors"
	"fmt"

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
	Files     int64 // file entries sent to the engine
	Unchanged int64 // entries the target already held (in place)
	Rewritten int64 // entries sent with content or metadata to apply
	Bytes     int64 // file bytes sent
}

// RestoreResult says where the environment now is and what the restore did.
// It embeds the engine's result, so Target and Messages read directly.
type RestoreResult struct {
	pluginapi.RestoreResult
	// Snapshot is the record restored.
	Snapshot *store.Snapshot
	Stats    RestoreStats
}

// Restore restores a snapshot through its engine.
func (m *Manager) Restore(ctx context.Context, opts RestoreOptions) (*RestoreResult, error) {
	return nil, fmt.Errorf("restore: %w", errors.New("not implemented yet"))
}
