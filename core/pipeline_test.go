package core

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

func TestCreateRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})

	var last Progress
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Name: "first", Labels: map[string]string{"k": "v"},
		Progress: func(p Progress) { last = p }})
	require.NoError(t, err)
	assert.True(t, last.Done)
	assert.Len(t, snap.ID, IDLen)
	assert.Equal(t, "first", snap.Name)
	assert.Empty(t, snap.Parent)
	require.Len(t, snap.Streams, 1)
	assert.EqualValues(t, 6+4<<20+12345+300000+18+1+3*7, snap.Stats.LogicalBytes)
	assert.Greater(t, snap.Stats.NewBytes, int64(4<<20))

	got, err := m.Resolve(ctx, "first")
	require.NoError(t, err)
	assert.Equal(t, snap.ID, got.ID)

	dst := filepath.Join(t.TempDir(), "dst")
	res, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID[:8], Target: dst})
	require.NoError(t, err)
	assert.Equal(t, dst, res.Target)
	requireSameTree(t, src, dst)

	rep, err := m.Store().Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}

func TestCreateWithParentReadsOnlyChangedFiles(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	eng := &countingEngine{Engine: newDirEngine()}
	m := openManager(t, map[string]pluginapi.Engine{"dir": eng})

	s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	files := eng.bodies.Load()
	assert.Greater(t, files, int64(5))
	assert.Zero(t, eng.unchanged.Load())

	writeFile(t, filepath.Join(src, "a.txt"), []byte("changed\n"), 0o644, fixedTime)
	eng.bodies.Store(0)
	s2, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	assert.Equal(t, s1.ID, s2.Parent, "auto parent is the newest snapshot of the env")
	assert.EqualValues(t, 1, eng.bodies.Load(), "only the changed file is read")
	// The changed file's siblings are sent unchanged, the directories
	// without a change whole.
	assert.Positive(t, eng.unchanged.Load())
	assert.Less(t, eng.unchanged.Load(), files-1)
	assert.Positive(t, eng.unchangedDirs.Load())
	assert.Equal(t, s1.Stats.Files, s2.Stats.Files)
	assert.Equal(t, s1.Stats.Dirs, s2.Stats.Dirs)
	assert.Less(t, s2.Stats.NewBytes, int64(64<<10), "unchanged content is not stored again")

	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: s2.ID, Target: dst})
	require.NoError(t, err)
	requireSameTree(t, src, dst)

	// Parent "none" reads everything again.
	eng.bodies.Store(0)
	s3, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Parent: ParentNone})
	require.NoError(t, err)
	assert.Empty(t, s3.Parent)
	assert.Equal(t, files, eng.bodies.Load())
	// Reusing the parent changes nothing in what is stored: the same trees
	// and the same change index as capturing everything afresh.
	assert.Equal(t, s3.Streams, s2.Streams, "same trees with and without a parent")
	idx2, err := m.Store().ChangeIndex(ctx, s2.ID)
	require.NoError(t, err)
	idx3, err := m.Store().ChangeIndex(ctx, s3.ID)
	require.NoError(t, err)
	assert.Equal(t, idx3, idx2)
}

func TestRestoreInPlaceRewritesOnlyWhatDiffers(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)

	for name, dst := range map[string]string{
		// the snapshot's own change index vouches for the files
		"captured target": src,
		// the restore index kept after a new-target restore does
		"restored target": filepath.Join(t.TempDir(), "dst"),
	} {
		t.Run(name, func(t *testing.T) {
			if dst != src {
				_, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst})
				require.NoError(t, err)
			}
			keepIno := inode(t, filepath.Join(dst, "data", "big.bin"))
			keepIno2 := inode(t, filepath.Join(dst, "pkg", "x", "__init__.py"))
			changedIno := inode(t, filepath.Join(dst, "a.txt"))

			// Content change keeping size and mtime: only ctime tells.
			writeFile(t, filepath.Join(dst, "a.txt"), []byte("HELLO\n"), 0o644, fixedTime)
			require.NoError(t, os.Chmod(filepath.Join(dst, "bin", "tool"), 0o700))
			require.NoError(t, os.Remove(filepath.Join(dst, "empty")))
			writeFile(t, filepath.Join(dst, "pkg", "extra.py"), []byte("extra"), 0o644, fixedTime)
			require.NoError(t, os.MkdirAll(filepath.Join(dst, "newdir", "sub"), 0o755))
			require.NoError(t, os.Remove(filepath.Join(dst, "rel-link")))
			require.NoError(t, os.Symlink("elsewhere", filepath.Join(dst, "rel-link")))

			res, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, src, dst)
			assert.True(t, res.Stats.Planned)
			assert.Equal(t, keepIno, inode(t, filepath.Join(dst, "data", "big.bin")), "unchanged file kept")
			assert.Equal(t, keepIno2, inode(t, filepath.Join(dst, "pkg", "x", "__init__.py")), "unchanged file kept")
			assert.NotEqual(t, changedIno, inode(t, filepath.Join(dst, "a.txt")), "changed file rewritten")
			assert.Less(t, res.Stats.Bytes, int64(1<<10), "only small files were sent: %+v", res.Stats)
			assert.Greater(t, res.Stats.Unchanged, int64(10))

			// A second in-place restore finds nothing to do.
			res, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, src, dst)
			assert.Zero(t, res.Stats.Bytes, "%+v", res.Stats)
		})
	}
}

// TestCreateChangeIndexAsCommitBuildsIt: the change index a create stores
// directory by directory as it goes is, chunk for chunk, the one Commit
// builds from the whole index (every file of the trees with its inode,
// times and size), so unchanged directories share chunks with snapshots
// written either way.
func TestCreateChangeIndexAsCommitBuildsIt(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	st := m.Store()

	want := store.ChangeIndex{}
	for _, s := range snap.Streams {
		files := map[string]store.IndexRecord{}
		var walk func(h store.Hash, prefix string)
		walk = func(h store.Hash, prefix string) {
			tree, err := st.GetTree(ctx, h)
			require.NoError(t, err)
			for _, n := range tree.Nodes {
				switch n.Type {
				case store.NodeDir:
					walk(n.Subtree, prefix+n.Name+"/")
				case store.NodeFile:
					var sys unix.Stat_t
					require.NoError(t, unix.Lstat(filepath.Join(src, prefix+n.Name), &sys))
					files[prefix+n.Name] = store.IndexRecord{Size: sys.Size, MtimeNs: sys.Mtim.Nano(), CtimeNs: sys.Ctim.Nano(), Inode: sys.Ino}
				}
			}
		}
		walk(s.Root, "")
		want[s.Name] = files
	}
	got, err := st.ChangeIndex(ctx, snap.ID)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	before, err := st.Verify(ctx, nil, nil)
	require.NoError(t, err)
	w, err := st.NewWriter(ctx)
	require.NoError(t, err)
	ref := *snap
	ref.ID, ref.Name = "ref", ""
	require.NoError(t, w.Commit(ctx, &ref, want))
	after, err := st.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, after.Problems)
	// Commit's index holds the same files' records; the create's also
	// has its directories' and symlinks' (version 2 chunks), so only the
	// chunks of directories without any are shared.
	gotRef, err := st.ChangeIndex(ctx, ref.ID)
	require.NoError(t, err)
	assert.Equal(t, want, gotRef)
	assert.Less(t, after.Chunks-before.Chunks, before.Chunks)
}
