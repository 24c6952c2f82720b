package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/dustin/go-humanize"

	"github.com/pypj/ptest-snap/store"
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
	// Added is what the create added to the store before it was stopped
	// (QuotaStoreBytes, checked as chunks are stored), or, with Estimated,
	// what it is expected to add (the parent snapshot's growth), checked
	// before anything is written. Zero when the store was already full.
	Added     int64
	Estimated bool
}

// Error says which limit and by how much, and what to do.
func (e *QuotaError) Error() string {
	switch e.Limit {
	case QuotaSnapshotsPerEnv:
		return fmt.Sprintf("%v: environment %s (%s) has %d snapshots; another would make %d, over the limit of %d by %d (delete some or run cleanup)",
			ErrQuotaExceeded, e.EnvID, e.Engine, e.Current, e.After, e.Max, e.Over)
	case QuotaStoreBytes:
		switch {
		case e.Added > 0 && e.Estimated:
			return fmt.Sprintf("%v: the store holds %s and this create is estimated to add %s (what its parent snapshot added), making %s, over the limit of %s by %s; nothing was written (delete snapshots and run gc)",
				ErrQuotaExceeded, humanize.IBytes(uint64(e.Current)), humanize.IBytes(uint64(e.Added)), humanize.IBytes(uint64(e.After)), humanize.IBytes(uint64(e.Max)), humanize.IBytes(uint64(e.Over)))
		case e.Added > 0:
			return fmt.Sprintf("%v: the store held %s and this create had added %s when it was stopped, making %s, over the limit of %s by %s; no snapshot was made and the next gc reclaims what it stored (delete snapshots and run gc)",
				ErrQuotaExceeded, humanize.IBytes(uint64(e.Current)), humanize.IBytes(uint64(e.Added)), humanize.IBytes(uint64(e.After)), humanize.IBytes(uint64(e.Max)), humanize.IBytes(uint64(e.Over)))
		}
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
// or over Options.MaxStoreBytes. It writes nothing.
//
// The size limit counts the stored (compressed) bytes of every chunk
// (store.Usage.StoredBytes): that is what snapshots take and what delete
// plus gc give back, unlike the directory's size, which Badger's
// preallocated files blur.
func (m *Manager) checkQuota(ctx context.Context, engine, envID string) error {
	_, err := m.checkQuotaBudget(ctx, engine, envID, nil)
	return err
}

// checkCreateQuota is Create's quota check (the beforeCreate hook), run
// once the engine has identified the environment and before any chunk is
// stored. Besides checkQuota's checks it refuses a create whose estimated
// growth (what the parent added over its own parent) would pass
// MaxStoreBytes, and it leaves in op the budget the pipeline checks as
// chunks are stored, so that one create cannot pass the limit either.
func (m *Manager) checkCreateQuota(ctx context.Context, op *OpInfo) error {
	b, err := m.checkQuotaBudget(ctx, op.Engine, op.EnvID, op.parent)
	op.budget = b
	return err
}

func (m *Manager) checkQuotaBudget(ctx context.Context, engine, envID string, parent *store.Snapshot) (*storeBudget, error) {
	if max := m.opts.MaxSnapshotsPerEnv; max > 0 {
		snaps, err := m.store.SnapshotsByEnv(ctx, engine, envID)
		if err != nil {
			return nil, fmt.Errorf("check quota: %w", err)
		}
		if after := int64(len(snaps)) + 1; after > int64(max) {
			return nil, &QuotaError{Limit: QuotaSnapshotsPerEnv, Engine: engine, EnvID: envID,
				Max: int64(max), Current: int64(len(snaps)), After: after, Over: after - int64(max)}
		}
	}
	max := m.opts.MaxStoreBytes
	if max <= 0 {
		return nil, nil
	}
	u, err := m.store.Usage(ctx)
	if err != nil {
		return nil, fmt.Errorf("check quota: %w", err)
	}
	if u.StoredBytes >= max {
		return nil, &QuotaError{Limit: QuotaStoreBytes, Max: max, Current: u.StoredBytes,
			After: u.StoredBytes, Over: u.StoredBytes - max}
	}
	// The parent's StoredBytes is a growth only when it had a parent
	// itself; a first snapshot's is the whole environment, which its
	// children mostly share, so there is no estimate then.
	if parent != nil && parent.Parent != "" && parent.Stats.StoredBytes > 0 {
		est := parent.Stats.StoredBytes
		if after := u.StoredBytes + est; after > max {
			return nil, &QuotaError{Limit: QuotaStoreBytes, Max: max, Current: u.StoredBytes,
				After: after, Over: after - max, Added: est, Estimated: true}
		}
	}
	return &storeBudget{max: max, used: u.StoredBytes}, nil
}

// storeBudget is MaxStoreBytes against the store's size measured before a
// create; the pipeline checks the create's store.Writer StoredBytes
// against it as chunks are stored.
type storeBudget struct {
	max, used int64
}

// check returns a *QuotaError once added (the writer's StoredBytes) takes
// the store past its limit. A nil budget never fails.
func (b *storeBudget) check(added int64) error {
	if b == nil {
		return nil
	}
	if after := b.used + added; after > b.max {
		return &QuotaError{Limit: QuotaStoreBytes, Max: b.max, Current: b.used,
			After: after, Over: after - b.max, Added: added}
	}
	return nil
}

// CheckQuota reports whether a new snapshot of (engine, envID) would be
// refused by a quota, without creating anything (for a CLI's pre-check).
func (m *Manager) CheckQuota(ctx context.Context, engine, envID string) error {
	return m.checkQuota(ctx, engine, envID)
}
