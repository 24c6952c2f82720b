package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/dustin/go-humanize"
)

// ErrQuotaExceeded: a create would exceed a limit set in Options
// (MaxSnapshotsPerEnv, MaxStoreBytes). The error is a *QuotaError saying
// which limit and by how much.
var ErrQuotaExceeded = errors.New("quota exceeded")

// Quota limits.
const (
	QuotaSnapshotsPerEnv = "max-snapshots-per-env"
	QuotaStoreBytes      = "max-store-bytes"
)

// QuotaError says which limit a create would exceed and by how much. It
// matches ErrQuotaExceeded with errors.Is.
type QuotaError struct {
	// Limit is QuotaSnapshotsPerEnv or QuotaStoreBytes.
	Limit string
	// Engine and EnvID name the environment (for QuotaSnapshotsPerEnv).
	Engine, EnvID string
	// Max is the limit's value; Current the present count or size; After
	// what it would be after the create; Over = After - Max.
	Max, Current, After, Over int64
}

// Error says which limit and by how much, and what to do.
func (e *QuotaError) Error() string {
	switch e.Limit {
	case QuotaSnapshotsPerEnv:
		return fmt.Sprintf("%v: environment %s (%s) has %d snapshots; another would make %d, over the limit of %d by %d (delete some or run cleanup)",
			ErrQuotaExceeded, e.EnvID, e.Engine, e.Current, e.After, e.Max, e.Over)
	case QuotaStoreBytes:
		if e.Over == 0 {
			return fmt.Sprintf("%v: the store holds %s, which is its limit (delete snapshots and run gc)",
				ErrQuotaExceeded, humanize.IBytes(uint64(e.Current)))
		}
		return fmt.Sprintf("%v: the store holds %s, over the limit of %s by %s (delete snapshots and run gc)",
			ErrQuotaExceeded, humanize.IBytes(uint64(e.Current)), humanize.IBytes(uint64(e.Max)), humanize.IBytes(uint64(e.Over)))
	}
	return fmt.Sprintf("%v: %s: %d > %d", ErrQuotaExceeded, e.Limit, e.After, e.Max)
}

// Is makes errors.Is(err, ErrQuotaExceeded) true.
func (e *QuotaError) Is(target error) bool { return target == ErrQuotaExceeded }

// checkQuota returns a *QuotaError when a new snapshot of (engine, envID)
// would exceed Options.MaxSnapshotsPerEnv, or when the store is already at
// or over Options.MaxStoreBytes. It writes nothing; Create calls it (through
// the beforeCreate hook) once the engine has identified the environment and
// before any chunk is stored.
//
// The size limit counts the stored (compressed) bytes of every chunk
// (store.Usage.StoredBytes): that is what snapshots take and what delete
// plus gc give back, unlike the directory's size, which Badger's
// preallocated files blur. A create's own size is unknown until it has
// read the environment, so the check refuses a create when the store has
// already reached its limit; one create may take it past the limit.
func (m *Manager) checkQuota(ctx context.Context, engine, envID string) error {
	if max := m.opts.MaxSnapshotsPerEnv; max > 0 {
		snaps, err := m.store.SnapshotsByEnv(ctx, engine, envID)
		if err != nil {
			return fmt.Errorf("check quota: %w", err)
		}
		if after := int64(len(snaps)) + 1; after > int64(max) {
			return &QuotaError{Limit: QuotaSnapshotsPerEnv, Engine: engine, EnvID: envID,
				Max: int64(max), Current: int64(len(snaps)), After: after, Over: after - int64(max)}
		}
	}
	if max := m.opts.MaxStoreBytes; max > 0 {
		u, err := m.store.Usage(ctx)
		if err != nil {
			return fmt.Errorf("check quota: %w", err)
		}
		if u.StoredBytes >= max {
			return &QuotaError{Limit: QuotaStoreBytes, Max: max, Current: u.StoredBytes,
				After: u.StoredBytes, Over: u.StoredBytes - max}
		}
	}
	return nil
}

// CheckQuota reports whether a new snapshot of (engine, envID) would be
// refused by a quota, without creating anything (for a CLI's pre-check).
func (m *Manager) CheckQuota(ctx context.Context, engine, envID string) error {
	return m.checkQuota(ctx, engine, envID)
}
