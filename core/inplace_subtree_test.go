package core

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// listingRecorder notes the index-only captures (the listings of an
// in-place restore) an engine is asked for and what they send.
type listingRecorder struct {
	pluginapi.Engine
	mu      sync.Mutex
	reqs    []pluginapi.CaptureRequest
	entries []pluginapi.Entry
}

func (e *listingRecorder) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if !req.IndexOnly {
		return e.Engine.Capture(ctx, req, w)
	}
	e.mu.Lock()
	e.reqs, e.entries = append(e.reqs, *req), nil
	e.mu.Unlock()
	return e.Engine.Capture(ctx, req, listingTap{w, e})
}

func (e *listingRecorder) listed() ([]pluginapi.CaptureRequest, []pluginapi.Entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reqs, e.entries
}

type listingTap struct {
	pluginapi.CaptureWriter
	e *listingRecorder
}

func (w listingTap) WriteEntry(ctx context.Context, en *pluginapi.Entry, body io.Reader) error {
	w.e.mu.Lock()
	w.e.entries = append(w.e.entries, *en)
	w.e.mu.Unlock()
	return w.CaptureWriter.WriteEntry(ctx, en, body)
}

// An in-place restore gives the engine listing the target the snapshot's
// own change index with its directories, so a subtree still as captured
// comes as one entry, and the plan neither asks about nor sends anything
// beneath it. What changed beneath a directory without moving its mtime
// — a file rewritten with its size and mtime put back, a subdirectory's
// mode — still moves a ctime, so is found and restored; the result equals
// the snapshot, and a second restore finds nothing to do. An engine that
// takes only a full stream is listed entry by entry, as before.
func TestRestoreInPlaceKeepsUnchangedSubtreesWhole(t *testing.T) {
	ctx := context.Background()
	for name, base := range dirEngines(t) {
		for _, sparse := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s sparse=%v", name, sparse), func(t *testing.T) {
				eng := base
				if !sparse {
					eng = capHidden{base, pluginapi.CapRestoreSparse}
				}
				rec := &listingRecorder{Engine: eng}
				src := filepath.Join(t.TempDir(), "src")
				makeTree(t, src)
				for _, pkg := range []string{"alpha", "beta", "gamma", "delta"} {
					for i := range 5 {
						for _, sub := range []string{"", "sub", "sub/deep"} {
							writeFile(t, filepath.Join(src, "site", pkg, sub, fmt.Sprintf("m%d.py", i)), []byte(fmt.Sprintf("# %s %s %d\n", pkg, sub, i)), 0o644, fixedTime.Add(7))
						}
					}
				}
				require.NoError(t, os.Symlink("m0.py", filepath.Join(src, "site", "gamma", "sub", "link")))
				m := openManager(t, map[string]pluginapi.Engine{"dir": rec})
				snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
				require.NoError(t, err)
				ref := snapTree(t, m, snap.ID)
				gammaIno := inode(t, filepath.Join(src, "site", "gamma", "sub", "deep", "m3.py"))

				// alpha: a file's bytes changed, its size and mtime put back.
				deep := filepath.Join(src, "site", "alpha", "sub", "deep", "m2.py")
				writeFile(t, deep, []byte("# ALPHA sub/deep 2\n"), 0o644, fixedTime.Add(7))
				// beta: a subdirectory's mode changed, its mtime put back.
				require.NoError(t, os.Chmod(filepath.Join(src, "site", "beta", "sub"), 0o700))
				// delta: removed; epsilon: added.
				require.NoError(t, os.RemoveAll(filepath.Join(src, "site", "delta")))
				writeFile(t, filepath.Join(src, "site", "epsilon", "x.py"), []byte("x"), 0o644, fixedTime)

				res, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
				require.NoError(t, err)
				requireSameTree(t, ref, src)
				assert.Equal(t, gammaIno, inode(t, filepath.Join(src, "site", "gamma", "sub", "deep", "m3.py")), "kept file untouched")

				reqs, listed := rec.listed()
				require.Len(t, reqs, 1)
				assert.Equal(t, sparse, reqs[0].UnchangedDirs)
				assert.Equal(t, sparse, reqs[0].Parent != nil)
				beneathGamma := 0
				gammaWhole := false
				for _, e := range listed {
					if strings.HasPrefix(e.Path, "site/gamma/") {
						beneathGamma++
					}
					if e.Path == "site/gamma" && e.Unchanged {
						gammaWhole = true
						assert.EqualValues(t, 16, e.SubtreeFiles, "15 files and a symlink")
						assert.EqualValues(t, 2, e.SubtreeDirs)
					}
				}
				if sparse {
					assert.True(t, gammaWhole, "gamma listed as one entry")
					assert.Zero(t, beneathGamma, "nothing beneath gamma listed")
				} else {
					assert.False(t, gammaWhole)
					assert.Equal(t, 18, beneathGamma)
				}
				assert.EqualValues(t, boolInt(sparse), res.Stats.Deleted, "epsilon")

				// The restore index holds the files written, not those the
				// snapshot's own index vouches for (kept whole or not): a
				// second restore, which reads both, rewrites nothing.
				ri := m.loadRestoreIndex(ctx, "dir", res.Target)
				require.NotNil(t, ri)
				for _, f := range []string{"site/alpha/sub/deep/m2.py", "site/delta/sub/m1.py"} {
					assert.Contains(t, ri.Files["rootfs"], f)
				}
				for _, f := range []string{"site/gamma/sub/deep/m3.py", "site/beta/sub/m1.py", "a.txt"} {
					assert.NotContains(t, ri.Files["rootfs"], f)
				}
				res, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
				require.NoError(t, err)
				requireSameTree(t, ref, src)
				assert.Zero(t, res.Stats.Rewritten, "%+v", res.Stats)
			})
		}
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Through an engine in a plugin process, unwrapped, the snapshot's own
// change index goes to the listing as it was read, fingerprinted or
// packed as the engine takes it (ownIndex), and the plan looks its files
// up directory by directory (ownFiles): the restore keeps the unchanged
// subtrees and files, rewrites only what changed, and a second restore
// finds nothing to do.
func TestRestoreInPlacePackedOwnIndexThroughPlugin(t *testing.T) {
	ctx := context.Background()
	p := launchDirPlugin(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	for _, pkg := range []string{"alpha", "beta", "gamma"} {
		for i := range 5 {
			writeFile(t, filepath.Join(src, "site", pkg, fmt.Sprintf("m%d.py", i)), []byte(fmt.Sprintf("# %s %d\n", pkg, i)), 0o644, fixedTime)
		}
	}
	m := openManager(t, map[string]pluginapi.Engine{"dir": p})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	ref := snapTree(t, m, snap.ID)
	own := m.loadOwnIndex(ctx, snap, formPacked)
	require.NoError(t, own.err)
	require.True(t, own.hasDirs())
	require.Greater(t, own.records(), int(snap.Stats.Dirs), "files, directories and symlinks")
	printed := m.loadOwnIndex(ctx, snap, formPrinted)
	require.NoError(t, printed.err)
	require.True(t, printed.hasDirs())
	require.Equal(t, own.records(), printed.prints.Len(), "the same records, fingerprinted")
	keptIno := inode(t, filepath.Join(src, "site", "gamma", "m3.py"))

	// A file beside kept ones changed, a package removed, one added.
	f, err := os.OpenFile(filepath.Join(src, "site", "alpha", "m2.py"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("# changed\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.RemoveAll(filepath.Join(src, "site", "beta")))
	writeFile(t, filepath.Join(src, "site", "epsilon", "x.py"), []byte("x"), 0o644, fixedTime)

	res, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, ref, src)
	assert.Equal(t, keptIno, inode(t, filepath.Join(src, "site", "gamma", "m3.py")), "kept file untouched")
	// alpha/m2.py, beta and its 5 files, and the directories above them.
	assert.LessOrEqual(t, res.Stats.Rewritten, int64(10), "%+v", res.Stats)
	assert.EqualValues(t, 1, res.Stats.Deleted, "epsilon")

	res, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, ref, src)
	assert.Zero(t, res.Stats.Rewritten, "%+v", res.Stats)
}
