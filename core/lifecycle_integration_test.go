package core

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/plugins/dir"
)

// withDirEngine wires the real directory engine, in-process.
func withDirEngine(o *Options) {
	o.Engines = func(ctx context.Context, name string) (pluginapi.Engine, error) {
		if name == "dir" {
			return dir.New(), nil
		}
		return nil, ErrEngineNotFound
	}
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
}

// The lifecycle around real creates and restores: events from Create,
// a quota refusing a create before it writes anything, diff, export to a
// pipe, import into another store and restore from there.
func TestLifecycleWithRealCreateAndRestore(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t, withDirEngine, func(o *Options) { o.MaxSnapshotsPerEnv = 2 })
	var mu sync.Mutex
	var events []Event
	m.Subscribe(func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})
	env := t.TempDir()
	writeTree(t, env, map[string]string{"a.txt": "alpha", "lib/b.py": "print(1)\n"})
	s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: env, Name: "first"})
	require.NoError(t, err)
	writeTree(t, env, map[string]string{"a.txt": "alpha, changed", "lib/c.py": "new"})
	s2, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: env})
	require.NoError(t, err)

	// The third create of this env exceeds the quota, before writing.
	u0, err := m.Store().Usage(ctx)
	require.NoError(t, err)
	writeTree(t, env, map[string]string{"big": string(bytes.Repeat([]byte("z"), 100000))})
	_, err = m.Create(ctx, CreateOptions{Engine: "dir", Target: env})
	require.ErrorIs(t, err, ErrQuotaExceeded)
	assert.Contains(t, err.Error(), "over the limit of 2 by 1")
	u1, err := m.Store().Usage(ctx)
	require.NoError(t, err)
	assert.Equal(t, u0.Chunks, u1.Chunks, "nothing was written")

	m.CloseEvents()
	mu.Lock()
	var kinds []EventType
	for _, e := range events {
		kinds = append(kinds, e.Type)
	}
	mu.Unlock()
	assert.Equal(t, []EventType{EventSnapshotCreating, EventSnapshotCreated, EventSnapshotCreating, EventSnapshotCreated, EventSnapshotCreateFailed}, kinds)
	assert.Equal(t, s1.ID, events[1].SnapshotID)
	assert.Equal(t, "first", events[1].Name)
	assert.Equal(t, s1.EnvID, events[1].EnvID)
	assert.Equal(t, int64(len("alpha")+len("print(1)\n")), events[1].Bytes)
	assert.Contains(t, events[4].Error, "quota exceeded")

	d, err := m.Diff(ctx, "first", s2.ID)
	require.NoError(t, err)
	var paths []string
	for _, c := range d.Changes {
		paths = append(paths, string(c.Kind)+" "+c.Path)
	}
	assert.Equal(t, []string{"M a.txt", "+ lib/c.py"}, paths)

	archive := lcExport(t, m, "first", s2.ID)
	other := lcOpen(t, withDirEngine)
	// A listener that never returns and one that panics cannot stall or
	// crash the operations.
	block := make(chan struct{})
	defer close(block)
	other.Subscribe(func(Event) { <-block })
	other.Subscribe(func(Event) { panic("listener bug") })
	var restoreEvents []Event
	other.Subscribe(func(e Event) {
		mu.Lock()
		restoreEvents = append(restoreEvents, e)
		mu.Unlock()
	})
	rep, err := other.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.NoError(t, err)
	require.Len(t, rep.Snapshots, 2)
	target := filepath.Join(t.TempDir(), "restored")
	_, err = other.Restore(ctx, RestoreOptions{Ref: "first", Target: target})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(target, "a.txt"))
	require.NoError(t, err)
	assert.Equal(t, "alpha", string(got))
	got, err = os.ReadFile(filepath.Join(target, "lib", "b.py"))
	require.NoError(t, err)
	assert.Equal(t, "print(1)\n", string(got))

	_, err = other.Restore(ctx, RestoreOptions{Ref: "first", Target: target})
	require.Error(t, err, "the target exists now")
	// Delivery is asynchronous: wait for the six events to arrive.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(restoreEvents) >= 6
	}, 30*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	var rkinds []EventType
	for _, e := range restoreEvents {
		rkinds = append(rkinds, e.Type)
	}
	assert.Equal(t, []EventType{EventSnapshotImported, EventSnapshotImported, EventSnapshotRestoring, EventSnapshotRestored,
		EventSnapshotRestoring, EventSnapshotRestoreFailed}, rkinds)
	assert.Equal(t, s1.ID, restoreEvents[3].SnapshotID)
	assert.NotEmpty(t, restoreEvents[5].Error)
}
