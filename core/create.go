package core

import (
	"context"
	"errors"
	"fmt"

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
	// Labels are key=value tags.
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
func (m *Manager) Create(ctx context.Context, opts CreateOptions) (*store.Snapshot, error) {
	op := &OpInfo{Op: "create", Engine: opts.Engine, Target: opts.Target, Name: opts.Name}
	if err := m.checkBeforeCreate(ctx, op); err != nil {
		return nil, err
	}
	op.Err = errors.New("not implemented yet")
	m.emit(ctx, "snapshot_create_failed", op)
	return nil, fmt.Errorf("create: %w", op.Err)
}
