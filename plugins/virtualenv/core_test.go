package virtualenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/core"
	"github.com/pypj/ptest-snap/pluginapi"
)

// TestThroughCoreAndBadger runs the engine end to end under the core's
// Manager on a real Badger store: create, break the venv, restore in place
// (planned: only what differs is sent), snapshot again with the parent's
// index, and restore to a new path. This is the only place the engine's
// package touches core, and only in a test.
func TestThroughCoreAndBadger(t *testing.T) {
	f := venvFixture(t)
	ctx := context.Background()
	mgr := openManager(t)

	work := filepath.Join(t.TempDir(), "venv")
	_, err := restore(t, capture(t, f.golden, nil), work, false, nil)
	require.NoError(t, err)
	want := treeSummary(capture(t, work, nil), true)

	snap, err := mgr.Create(ctx, core.CreateOptions{Engine: EngineName, Target: work, Ports: []int{8080}})
	require.NoError(t, err)
	m, err := decodeMetadata(pluginapi.Metadata{Version: snap.MetadataVersion, JSON: snap.Metadata})
	require.NoError(t, err)
	assert.Equal(t, []int{8080}, m.AllocatedPorts)
	assert.Equal(t, "1.2.3", m.InstalledPackages["hello-world"])

	_, err = pipInstall(work, filepath.Join(f.src, "extra"))
	require.NoError(t, err)
	run(t, "", filepath.Join(work, "bin", "pip"), "uninstall", "-y", "-q", "hello-world")

	res, err := mgr.Restore(ctx, core.RestoreOptions{Ref: snap.ID, Target: work, InPlace: true})
	require.NoError(t, err)
	assert.Equal(t, work, res.Target)
	assert.True(t, res.Stats.Planned)
	assert.Greater(t, res.Stats.Unchanged, res.Stats.Rewritten)
	assert.Equal(t, want, treeSummary(capture(t, work, nil), true))
	checkVenvWorks(t, f, work)

	second, err := mgr.Create(ctx, core.CreateOptions{Engine: EngineName, Target: work})
	require.NoError(t, err)
	assert.Equal(t, snap.ID, second.Parent)

	moved := filepath.Join(t.TempDir(), "moved venv")
	res, err = mgr.Restore(ctx, core.RestoreOptions{Ref: second.ID, Target: moved})
	require.NoError(t, err)
	assert.Equal(t, moved, res.Target)
	checkVenvWorks(t, f, moved)
	_, err = os.Stat(filepath.Join(moved, "pyvenv.cfg"))
	require.NoError(t, err)
}

// openManager opens a core Manager on a fresh Badger store in t's temp dir,
// with this engine in-process; it is closed when the test ends.
func openManager(t *testing.T) *core.Manager {
	t.Helper()
	mgr, err := core.Open(context.Background(), core.Options{
		StoreDir: t.TempDir(),
		Engines: func(_ context.Context, name string) (pluginapi.Engine, error) {
			if name != EngineName {
				return nil, fmt.Errorf("%w: %s", core.ErrEngineNotFound, name)
			}
			return New(), nil
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { mgr.Close() })
	return mgr
}
