package core

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// TestCreateReusesUnchangedDirectories: directories the engine sends whole
// as unchanged (CaptureRequest.UnchangedDirs) make the same snapshot — the
// same trees, change index and statistics — as a capture without a parent,
// through a chain of snapshots whose changes add, change and remove files,
// directories and symlinks; the snapshots restore and verify.
func TestCreateReusesUnchangedDirectories(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	require.NoError(t, os.MkdirAll(filepath.Join(src, "lib/site/pkg-a/sub"), 0o755))
	writeFile(t, filepath.Join(src, "lib/site/pkg-a/sub/m.py"), []byte("m\n"), 0o644, fixedTime)
	writeFile(t, filepath.Join(src, "lib/site/pkg-b/n.py"), []byte("n\n"), 0o644, fixedTime)
	require.NoError(t, os.Symlink("pkg-a", filepath.Join(src, "lib/site/link-a")))
	eng := &countingEngine{Engine: newDirEngine()}
	m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
	prev, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)

	steps := []struct {
		name   string
		change func(t *testing.T)
	}{
		{"nothing", func(*testing.T) {}},
		{"file deep inside", func(t *testing.T) {
			writeFile(t, filepath.Join(src, "lib/site/pkg-a/sub/m.py"), []byte("changed\n"), 0o644, fixedTime)
		}},
		{"directory added", func(t *testing.T) {
			writeFile(t, filepath.Join(src, "lib/site/pkg-c/o.py"), []byte("o\n"), 0o644, fixedTime)
		}},
		{"empty directory added", func(t *testing.T) {
			require.NoError(t, os.Mkdir(filepath.Join(src, "emptydir/nested-empty/new"), 0o700))
		}},
		{"symlink replaced", func(t *testing.T) {
			require.NoError(t, os.Remove(filepath.Join(src, "lib/site/link-a")))
			require.NoError(t, os.Symlink("pkg-b", filepath.Join(src, "lib/site/link-a")))
		}},
		{"directory removed", func(t *testing.T) {
			require.NoError(t, os.RemoveAll(filepath.Join(src, "lib/site/pkg-b")))
		}},
		{"directory mode", func(t *testing.T) {
			require.NoError(t, os.Chmod(filepath.Join(src, "lib/site/pkg-a"), 0o700))
		}},
	}
	for _, step := range steps {
		step.change(t)
		eng.unchangedDirs.Store(0)
		snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
		require.NoError(t, err, step.name)
		require.Equal(t, prev.ID, snap.Parent, step.name)
		assert.Positive(t, eng.unchangedDirs.Load(), "%s: some directories are sent whole", step.name)
		full, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Parent: ParentNone})
		require.NoError(t, err, step.name)
		assert.Equal(t, full.Streams, snap.Streams, "%s: the trees of a capture without a parent", step.name)
		assert.Equal(t, []int64{full.Stats.Files, full.Stats.Dirs, full.Stats.LogicalBytes},
			[]int64{snap.Stats.Files, snap.Stats.Dirs, snap.Stats.LogicalBytes}, step.name)
		got, err := m.Store().ChangeIndex(ctx, snap.ID)
		require.NoError(t, err)
		want, err := m.Store().ChangeIndex(ctx, full.ID)
		require.NoError(t, err)
		assert.Equal(t, want, got, step.name)
		dst := filepath.Join(t.TempDir(), "dst")
		_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst})
		require.NoError(t, err, step.name)
		requireSameTree(t, src, dst)
		// The next step's parent is the snapshot made from unchanged
		// directories, so its index must serve the next one as well.
		_, err = m.Delete(ctx, DeleteOptions{Refs: []string{full.ID}})
		require.NoError(t, err)
		prev = snap
	}
	rep, err := m.Store().Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}

// TestCreateRefusesBadUnchangedDirectories: a directory marked unchanged
// that the parent does not have as such, or one sent without a parent, is
// the engine's error; nothing is committed.
func TestCreateRefusesBadUnchangedDirectories(t *testing.T) {
	ctx := context.Background()
	for name, tt := range map[string]struct {
		parent string
		tamper func(e *pluginapi.Entry)
	}{
		"other mtime": {"", func(e *pluginapi.Entry) {
			if e.Type == pluginapi.TypeDir && e.Unchanged {
				e.MtimeNs++
			}
		}},
		"not in the parent": {"", func(e *pluginapi.Entry) {
			if e.Type == pluginapi.TypeDir && e.Path == "newdir" {
				e.Unchanged = true
			}
		}},
		"no parent": {ParentNone, func(e *pluginapi.Entry) {
			if e.Type == pluginapi.TypeDir {
				e.Unchanged = true
			}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			makeTree(t, src)
			var tampering bool
			eng := &hookEngine{Engine: newDirEngine(), hook: func(e *pluginapi.Entry) {
				if tampering {
					tt.tamper(e)
				}
			}}
			m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
			_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
			require.NoError(t, err)
			require.NoError(t, os.Mkdir(filepath.Join(src, "newdir"), 0o755))
			tampering = true
			_, err = m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Name: "bad", Parent: tt.parent})
			require.ErrorIs(t, err, ErrEngine)
			_, err = m.Resolve(ctx, "bad")
			require.ErrorIs(t, err, ErrNotFound)
		})
	}
}
