package virtualenv

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/core"
)

// TestInPlaceRestoreKeepsExcludedPycache: a venv snapshot taken with
// --exclude __pycache__ restores in place without deleting the venv's
// __pycache__ directories (the snapshot does not have them), while other
// changes are still reverted.
func TestInPlaceRestoreKeepsExcludedPycache(t *testing.T) {
	f := venvFixture(t)
	ctx := context.Background()
	mgr := openManager(t)

	work := filepath.Join(t.TempDir(), "venv")
	_, err := restore(t, capture(t, f.golden, nil), work, false, nil)
	require.NoError(t, err)
	site := filepath.Join(work, "lib", "extra-site")
	cache := filepath.Join(site, "__pycache__", "mod.cpython-3.pyc")
	require.NoError(t, os.MkdirAll(filepath.Dir(cache), 0o755))
	require.NoError(t, os.WriteFile(cache, []byte("compiled before the snapshot"), 0o644))

	snap, err := mgr.Create(ctx, core.CreateOptions{Engine: EngineName, Target: work, Excludes: []string{"__pycache__"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"__pycache__"}, snap.Excludes)

	// The test run: bytecode rewritten and added, a stray file added.
	require.NoError(t, os.WriteFile(cache, []byte("compiled by the test run"), 0o644))
	added := filepath.Join(work, "bin", "__pycache__", "new.pyc")
	require.NoError(t, os.MkdirAll(filepath.Dir(added), 0o755))
	require.NoError(t, os.WriteFile(added, []byte("new bytecode"), 0o644))
	stray := filepath.Join(site, "stray.py")
	require.NoError(t, os.WriteFile(stray, []byte("x = 1\n"), 0o644))
	caches := map[string]bool{}
	require.NoError(t, filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "__pycache__" {
			caches[p] = true
		}
		return err
	}))
	require.GreaterOrEqual(t, len(caches), 2)

	_, err = mgr.Restore(ctx, core.RestoreOptions{Ref: snap.ID, Target: work, InPlace: true})
	require.NoError(t, err)

	for p := range caches {
		assert.DirExists(t, p)
	}
	b, err := os.ReadFile(cache)
	require.NoError(t, err)
	assert.Equal(t, "compiled by the test run", string(b))
	b, err = os.ReadFile(added)
	require.NoError(t, err)
	assert.Equal(t, "new bytecode", string(b))
	assert.NoFileExists(t, stray, "what is not excluded is still reverted")
	checkVenvWorks(t, f, work)
}
