package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// EngineResolver returns the engine with the given name (for example "dir",
// "virtualenv", "docker"). The CLI wires the plugin host here; tests wire
// in-process engines or real plugin subprocesses. An unknown name should
// return an error wrapping ErrEngineNotFound. The resolver owns the engines
// it returns (and their processes); the Manager never closes them.
type EngineResolver func(ctx context.Context, name string) (pluginapi.Engine, error)

// Options configure Open.
type Options struct {
	// StoreDir is the store's directory, created if missing.
	StoreDir string
	// LockTimeout is how long Open waits for another process holding the
	// store before failing with ErrBusy. Zero means do not wait.
	LockTimeout time.Duration
	// OnWait, if set, is called once when Open has to wait, with a
	// description of the holder.
	OnWait func(holder string)
	// Engines resolves engine names. Required for Create and Restore.
	Engines EngineResolver
	// Clock returns the current time; nil means time.Now. Tests fix it.
	Clock func() time.Time
	// Logger receives one record per operation; nil discards.
	Logger *slog.Logger
	// CompressionLevel overrides the store's measured default; 0 keeps it.
	CompressionLevel int

	// MaxSnapshotsPerEnv limits snapshots per (engine, env); 0 is no limit.
	// Enforced before a create writes anything (see quota hooks).
	MaxSnapshotsPerEnv int
	// MaxStoreBytes limits the stored (compressed) bytes of the store's
	// chunks; 0 is no limit. A create is refused before it writes when the
	// store is full or its parent's growth would not fit, and stopped (its
	// writer aborted) as soon as its stored chunks pass the limit.
	MaxStoreBytes int64

	// CreateWorkers is the number of goroutines chunking and storing file
	// bodies during a create; 0 picks a default (see defaultCreateWorkers).
	CreateWorkers int
	// RestoreWorkers is the number of goroutines reading and verifying
	// chunks ahead of a restore; 0 picks a default.
	RestoreWorkers int
}

// Manager is the entry point of the core: it owns an open store and drives
// engines to create and restore snapshots. It is safe for concurrent use.
type Manager struct {
	opts  Options
	store *store.Store
	log   *slog.Logger
	now   func() time.Time

	// hooks are the lifecycle call points (events, quotas). The lifecycle
	// files fill them in through lifecycleInits; nil funcs are skipped.
	hooks lifecycleHooks

	closeOnce sync.Once
	closeErr  error
}

// OpInfo describes an operation in progress for lifecycle hooks (events,
// quotas, logging).
type OpInfo struct {
	// Op is "create" or "restore" (the lifecycle adds its own).
	Op         string
	SnapshotID string
	Name       string
	Engine     string
	EnvID      string
	Target     string
	Parent     string
	// Snapshot is the committed record, when there is one.
	Snapshot *store.Snapshot
	// Bytes is the logical size handled; Duration the wall time so far.
	Bytes    int64
	Duration time.Duration
	// Err is the failure, for *_failed events.
	Err error

	// parent is the create's parent snapshot, for the quota's estimate;
	// budget is what the quota hook leaves for the pipeline to enforce.
	parent *store.Snapshot
	budget *storeBudget
}

// lifecycleHooks are the points where the lifecycle code (events.go,
// quota.go, owned by the lifecycle engineer) plugs into create and restore.
type lifecycleHooks struct {
	// beforeCreate runs after the engine identified the environment and
	// before anything is written; an error aborts the create (quotas).
	beforeCreate []func(ctx context.Context, op *OpInfo) error
	// event is called at each stage: "snapshot_creating",
	// "snapshot_created", "snapshot_create_failed", "snapshot_restoring",
	// "snapshot_restored", "snapshot_restore_failed". It must not block.
	event []func(ctx context.Context, kind string, op *OpInfo)
}

// lifecycleInits run in Open, in order, to install lifecycle hooks. Lifecycle
// files append to it from init functions.
var lifecycleInits []func(m *Manager) error

// Open opens the store in opts.StoreDir and returns a Manager on it.
func Open(ctx context.Context, opts Options) (*Manager, error) {
	if opts.StoreDir == "" {
		return nil, fmt.Errorf("open: %w: no store directory", ErrInvalidOptions)
	}
	st, err := store.Open(ctx, store.Options{
		Dir:              opts.StoreDir,
		LockTimeout:      opts.LockTimeout,
		OnWait:           opts.OnWait,
		CompressionLevel: opts.CompressionLevel,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", opts.StoreDir, err)
	}
	m := &Manager{opts: opts, store: st, log: opts.Logger, now: opts.Clock}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.now == nil {
		m.now = time.Now
	}
	for _, init := range lifecycleInits {
		if err := init(m); err != nil {
			return nil, errors.Join(fmt.Errorf("open: %w", err), st.Close())
		}
	}
	return m, nil
}

// Close stops event delivery (letting listeners receive what is queued,
// see CloseEvents), then closes the store and releases its lock. It is safe
// to call twice.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.CloseEvents()
		m.closeErr = m.store.Close()
	})
	return m.closeErr
}

// Store returns the underlying store, for the lifecycle code, verify, GC
// and tests.
func (m *Manager) Store() *store.Store { return m.store }

// Logger returns the Manager's logger.
func (m *Manager) Logger() *slog.Logger { return m.log }

// Now returns the Manager's clock reading.
func (m *Manager) Now() time.Time { return m.now() }

// Engine resolves an engine by name through Options.Engines.
func (m *Manager) Engine(ctx context.Context, name string) (pluginapi.Engine, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: no engine name given", ErrEngineNotFound)
	}
	if m.opts.Engines == nil {
		return nil, fmt.Errorf("engine %q: %w: no engine resolver configured", name, ErrEngineNotFound)
	}
	e, err := m.opts.Engines(ctx, name)
	if err != nil {
		if errors.Is(err, ErrEngineNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("engine %q: %w", name, err)
	}
	if e == nil {
		return nil, fmt.Errorf("engine %q: %w", name, ErrEngineNotFound)
	}
	return e, nil
}

// emit calls the event hooks.
func (m *Manager) emit(ctx context.Context, kind string, op *OpInfo) {
	for _, f := range m.hooks.event {
		if f != nil {
			f(ctx, kind, op)
		}
	}
}

// checkBeforeCreate calls the beforeCreate hooks (quotas).
func (m *Manager) checkBeforeCreate(ctx context.Context, op *OpInfo) error {
	for _, f := range m.hooks.beforeCreate {
		if f == nil {
			continue
		}
		if err := f(ctx, op); err != nil {
			return err
		}
	}
	return nil
}
