package core

import (
	"context"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// excludedRel reports whether rel (slash-separated) lies in what excludes
// match: a component, or a leading part of the path, matches a pattern.
func excludedRel(excludes []string, rel string) bool {
	parts := strings.Split(rel, "/")
	for i := range parts {
		for _, p := range excludes {
			if ok, _ := path.Match(p, strings.Join(parts[:i+1], "/")); ok {
				return true
			}
			if ok, _ := path.Match(p, parts[i]); ok {
				return true
			}
		}
	}
	return false
}

// TestRestoreInPlaceKeepsExcluded: a snapshot taken with excludes records
// them, and an in-place restore of it over its own target reverts every
// other change but leaves the excluded paths exactly as they are (not
// restored, not deleted): a venv's __pycache__, a test's data directory.
// Through the in-process engine and the real plugin subprocess (the
// excludes cross the gRPC boundary).
func TestRestoreInPlaceKeepsExcluded(t *testing.T) {
	ctx := context.Background()
	engines := map[string]func(t *testing.T) pluginapi.Engine{
		"in-process": func(*testing.T) pluginapi.Engine { return newDirEngine() },
		"plugin":     func(t *testing.T) pluginapi.Engine { return launchDirPlugin(t) },
	}
	for name, newEngine := range engines {
		t.Run(name, func(t *testing.T) {
			m := openManager(t, map[string]pluginapi.Engine{"dir": newEngine(t)})
			excludes := []string{"__pycache__", "testdata", "*.log"}
			src := filepath.Join(t.TempDir(), "src")
			makeTree(t, src)
			for _, p := range []string{"__pycache__/top.pyc", "pkg/x/__pycache__/m.pyc", "testdata/db/rows", "run.log", "bin/t.log"} {
				writeFile(t, filepath.Join(src, p), []byte("captured "+p), 0o644, fixedTime)
			}

			snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Excludes: excludes})
			require.NoError(t, err)
			assert.Equal(t, excludes, snap.Excludes)
			stored, err := m.Resolve(ctx, snap.ID)
			require.NoError(t, err)
			assert.Equal(t, excludes, stored.Excludes, "the excludes are part of the record")

			// What the snapshot holds: a restore to a new target.
			ref := filepath.Join(t.TempDir(), "ref")
			_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: ref})
			require.NoError(t, err)
			want := scanTree(t, ref)
			for p := range want {
				require.False(t, excludedRel(excludes, p), "%s was captured", p)
			}

			// A test run changes the target, inside and outside the excludes.
			writeFile(t, filepath.Join(src, "a.txt"), []byte("changed\n"), 0o644, fixedTime)
			writeFile(t, filepath.Join(src, "pkg", "extra.py"), []byte("extra"), 0o644, fixedTime)
			writeFile(t, filepath.Join(src, "extradir", "f"), []byte("extra"), 0o644, fixedTime)
			writeFile(t, filepath.Join(src, "testdata", "db", "rows"), []byte("rows written by the test"), 0o644, fixedTime)
			writeFile(t, filepath.Join(src, "testdata", "new", "f"), []byte("new test data"), 0o644, fixedTime)
			writeFile(t, filepath.Join(src, "pkg", "y", "__pycache__", "n.pyc"), []byte("new cache"), 0o644, fixedTime)
			writeFile(t, filepath.Join(src, "run.log"), []byte("log of the run"), 0o644, fixedTime)
			keep := map[string]treeEntry{}
			keepIno := map[string]uint64{}
			for p, e := range scanTree(t, src) {
				if excludedRel(excludes, p) {
					keep[p] = e
					keepIno[p] = inode(t, filepath.Join(src, p))
				}
			}
			require.Len(t, keep, 13, "%v", keep)

			_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: src, InPlace: true})
			require.NoError(t, err)

			got := scanTree(t, src)
			for p, e := range keep {
				assert.Equal(t, e, got[p], "%s: excluded, must be left as it was", p)
				assert.Equal(t, keepIno[p], inode(t, filepath.Join(src, p)), "%s: not rewritten", p)
				delete(got, p)
			}
			for p, we := range want {
				ge, ok := got[p]
				if assert.True(t, ok, "%s: missing", p) {
					assert.Equal(t, we, ge, "%s: not restored", p)
				}
			}
			for p := range got {
				_, ok := want[p]
				assert.True(t, ok, "%s: extra, should be deleted", p)
			}
		})
	}
}
