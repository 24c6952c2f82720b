package core

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// capHidden hides one capability, as a third-party engine that does not
// know it answers Info.
type capHidden struct {
	pluginapi.Engine
	hide pluginapi.Capability
}

func (e capHidden) Info(ctx context.Context) (pluginapi.Info, error) {
	info, err := e.Engine.Info(ctx)
	info.Capabilities = slices.DeleteFunc(slices.Clone(info.Capabilities), func(c pluginapi.Capability) bool {
		return c == e.hide
	})
	return info, err
}

// sparseRecorder notes the requests and entries an engine is sent.
type sparseRecorder struct {
	pluginapi.Engine
	sparse  bool
	entries []pluginapi.Entry
}

func (e *sparseRecorder) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	e.sparse, e.entries = req.Sparse, nil
	return e.Engine.Restore(ctx, req, recordingReader{r, &e.entries})
}

type recordingReader struct {
	pluginapi.RestoreReader
	entries *[]pluginapi.Entry
}

func (r recordingReader) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	s, e, body, err := r.RestoreReader.Next(ctx)
	if e != nil {
		*r.entries = append(*r.entries, *e)
	}
	return s, e, body, err
}

// An in-place restore through an engine that declares CapRestoreSparse
// sends only what changes — rewrites, recreations, deletions of whole
// trees, the directories above them — and one through an engine that does
// not gets every entry, as does one through an engine that cannot list the
// target (no CapIndexOnly: no plan, the engine compares); all yield the
// snapshot exactly (hard links to kept and rewritten files, symlinks,
// modes, mtimes, xattrs), in process and through the real plugin.
func TestRestoreInPlaceSparseAndFull(t *testing.T) {
	ctx := context.Background()
	host := pluginapi.NewHost(pluginapi.HostOptions{})
	defer host.Close()
	p, err := host.Launch(ctx, pluginapi.Spec{Name: "dir", Path: dirPluginPath(t)})
	require.NoError(t, err)
	defer p.Close()
	for name, base := range map[string]pluginapi.Engine{"in-process": newDirEngine(), "plugin": p} {
		for _, mode := range []string{"sparse", "full", "unlisted"} {
			eng, sparse := base, mode == "sparse"
			switch mode {
			case "full":
				eng = capHidden{base, pluginapi.CapRestoreSparse}
			case "unlisted":
				eng = capHidden{base, pluginapi.CapIndexOnly}
			}
			rec := &sparseRecorder{Engine: eng}
			t.Run(fmt.Sprintf("%s %s", name, mode), func(t *testing.T) {
				src := filepath.Join(t.TempDir(), "src")
				makeTree(t, src)
				for i := range 40 {
					writeFile(t, filepath.Join(src, "pkg", "many", fmt.Sprintf("m%02d.py", i)), []byte(fmt.Sprintf("m = %d\n", i)), 0o644, fixedTime)
				}
				m := openManager(t, map[string]pluginapi.Engine{"dir": rec})
				snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
				require.NoError(t, err)
				keptIno := inode(t, filepath.Join(src, "pkg", "x", "__init__.py"))
				ref := snapTree(t, m, snap.ID)

				// Change small, in miniature.
				writeFile(t, filepath.Join(src, "newpkg", "mod.py"), []byte("new"), 0o644, fixedTime)
				writeFile(t, filepath.Join(src, "newpkg-1.0.dist-info", "METADATA"), []byte("Name: newpkg"), 0o644, fixedTime)
				f, err := os.OpenFile(filepath.Join(src, "pkg", "many", "m07.py"), os.O_APPEND|os.O_WRONLY, 0)
				require.NoError(t, err)
				_, err = f.WriteString("# changed\n")
				require.NoError(t, err)
				require.NoError(t, f.Close())
				require.NoError(t, os.RemoveAll(filepath.Join(src, "pkg", "many")))
				require.NoError(t, os.Remove(filepath.Join(src, "data", "tool-2"))) // a hard link, its file kept
				require.NoError(t, os.Remove(filepath.Join(src, "rel-link")))
				require.NoError(t, os.Symlink("elsewhere", filepath.Join(src, "rel-link")))

				res, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
				require.NoError(t, err)
				requireSameTree(t, ref, src)
				if mode != "unlisted" { // without a listing there is no plan to keep it by
					assert.Equal(t, keptIno, inode(t, filepath.Join(src, "pkg", "x", "__init__.py")), "kept file untouched")
				}
				assert.Equal(t, sparse, rec.sparse)
				var deleted []string
				for _, e := range rec.entries {
					if e.Delete {
						deleted = append(deleted, e.Path)
					}
					if sparse && e.Unchanged {
						assert.Equal(t, pluginapi.TypeDir, e.Type, "only directories above changes are sent kept: %s", e.Path)
					}
				}
				if sparse {
					assert.ElementsMatch(t, []string{"newpkg", "newpkg-1.0.dist-info"}, deleted)
					assert.EqualValues(t, 2, res.Stats.Deleted)
					assert.Less(t, len(rec.entries), 60, "only what changes is sent")
				} else {
					assert.Empty(t, deleted)
					assert.Greater(t, len(rec.entries), 60)
				}

				// Nothing left to do.
				res, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
				require.NoError(t, err)
				requireSameTree(t, ref, src)
				if mode != "unlisted" {
					assert.Zero(t, res.Stats.Rewritten, "%+v", res.Stats)
				}
			})
		}
	}
}

// snapTree restores snapshot id to a fresh directory, the reference an
// in-place restore must equal.
func snapTree(t *testing.T, m *Manager, id string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "ref")
	_, err := m.Restore(context.Background(), RestoreOptions{Ref: id, Target: dst})
	require.NoError(t, err)
	return dst
}
