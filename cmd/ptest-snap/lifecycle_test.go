package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// makeFixture writes a small tree with files, a nested directory, an
// executable, a symlink and an empty directory.
func makeFixture(t *testing.T, root string) {
	t.Helper()
	writeFile(t, filepath.Join(root, "a.txt"), "alpha\n")
	writeFile(t, filepath.Join(root, "sub", "b.bin"), strings.Repeat("0123456789abcdef", 8192)) // 128 KiB
	writeFile(t, filepath.Join(root, "sub", "deep", "c.txt"), "gamma\n")
	writeFile(t, filepath.Join(root, "run.sh"), "#!/bin/sh\necho hi\n")
	require.NoError(t, os.Chmod(filepath.Join(root, "run.sh"), 0o755))
	require.NoError(t, os.Symlink("sub/deep/c.txt", filepath.Join(root, "link")))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "empty"), 0o700))
}

// TestDirEngineLifecycle walks a directory through every command: create,
// list, show, diff, restore (new path and in place), stats, verify,
// export/import into a second store, cleanup, delete, gc and events.
func TestDirEngineLifecycle(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "fixture")
	makeFixture(t, src)
	first := treeState(t, src)

	// create, as a person: ID and cost on stdout, nothing decorative.
	r := c.ok("create", "--engine", "dir", "--name", "first", "--label", "suite=api", src)
	require.Contains(t, r.stdout, "created snapshot ")
	require.Contains(t, r.stdout, "(first)")
	requireNoProgress(t, r.stdout+r.stderr)
	assert.Empty(t, r.stderr)

	var s1 snapshotJSON
	c.jsonOK(&s1, "show", "first")
	assert.Equal(t, "first", s1.Name)
	assert.Equal(t, "dir", s1.Engine)
	assert.Equal(t, map[string]string{"suite": "api"}, s1.Labels)
	assert.Len(t, s1.ID, 26)
	assert.Equal(t, int64(5), s1.Stats.Files, "a.txt, b.bin, c.txt, run.sh and the symlink")
	assert.Equal(t, int64(3), s1.Stats.Dirs, "sub, sub/deep, empty")
	assert.Equal(t, int64(6+128*1024+6+len("#!/bin/sh\necho hi\n")), s1.Stats.LogicalBytes)
	assert.NotEmpty(t, s1.Streams)

	// Change the tree; the second snapshot's parent is the first.
	writeFile(t, filepath.Join(src, "a.txt"), "alpha, changed\n")
	writeFile(t, filepath.Join(src, "new.txt"), "new\n")
	require.NoError(t, os.Remove(filepath.Join(src, "sub", "b.bin")))
	second := treeState(t, src)

	var s2 snapshotJSON
	c.jsonOK(&s2, "create", "--engine", "dir", "--name", "second", src)
	assert.Equal(t, s1.ID, s2.Parent, "parent auto is the newest snapshot of the same env")
	assert.Equal(t, s1.EnvID, s2.EnvID)
	assert.Less(t, s2.Stats.NewBytes, int64(1024), "only the changed bytes are new")

	// --quiet create prints the ID alone.
	r = c.ok("create", "-q", "--engine", "dir", "--parent", "none", "--label", "tmp=1", src)
	thirdID := strings.TrimSpace(r.stdout)
	require.Len(t, thirdID, 26)

	// list: newest first, JSON and table.
	var l listJSON
	c.jsonOK(&l, "list")
	require.Len(t, l.Snapshots, 3)
	assert.Equal(t, []string{thirdID, s2.ID, s1.ID}, []string{l.Snapshots[0].ID, l.Snapshots[1].ID, l.Snapshots[2].ID})
	c.jsonOK(&l, "list", "--label", "suite=api")
	require.Len(t, l.Snapshots, 1)
	assert.Equal(t, s1.ID, l.Snapshots[0].ID)
	c.jsonOK(&l, "list", "--engine", "nosuch")
	assert.Empty(t, l.Snapshots)
	r = c.ok("list")
	assert.Contains(t, r.stdout, "ID")
	assert.Contains(t, r.stdout, "first")
	assert.NotContains(t, r.stdout, s1.ID, "tables show short IDs")
	assert.Contains(t, r.stdout, s1.ID[:8])
	c.jsonOK(&l, "list", "--since", "1h")
	assert.Len(t, l.Snapshots, 3)
	c.jsonOK(&l, "list", "--until", "2000-01-01")
	assert.Empty(t, l.Snapshots)
	c.jsonOK(&l, "list", "--env", src)
	assert.Len(t, l.Snapshots, 3, "--env takes the directory itself")
	r = c.ok("list", "-q")
	assert.Equal(t, thirdID+"\n"+s2.ID+"\n"+s1.ID+"\n", r.stdout)

	// show by unique prefix and by name agree.
	var byPrefix snapshotJSON
	c.jsonOK(&byPrefix, "show", s1.ID[:12])
	assert.Equal(t, s1.ID, byPrefix.ID)
	r = c.ok("show", "second")
	assert.Contains(t, r.stdout, s2.ID)

	// diff: added, removed, changed.
	var d diffJSON
	c.jsonOK(&d, "diff", "first", "second")
	paths := func(es []diffEntryJSON) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Path)
		}
		return out
	}
	assert.Equal(t, []string{"new.txt"}, paths(d.Added))
	assert.Equal(t, []string{"sub/b.bin"}, paths(d.Removed))
	assert.Equal(t, []string{"a.txt"}, paths(d.Changed))
	require.NotNil(t, d.Changed[0].SizeBefore)
	assert.Equal(t, int64(6), *d.Changed[0].SizeBefore)
	assert.Equal(t, int64(15), *d.Changed[0].SizeAfter)
	r = c.ok("diff", "first", "second")
	assert.Contains(t, r.stdout, "+  new.txt")
	assert.Contains(t, r.stdout, "-  sub/b.bin")
	assert.Contains(t, r.stdout, "~  a.txt")

	// restore to a new path: the first state, exactly.
	dst := filepath.Join(t.TempDir(), "copy")
	var rj restoreJSON
	c.jsonOK(&rj, "restore", "first", "--target", dst)
	assert.Equal(t, s1.ID, rj.SnapshotID)
	assert.Equal(t, first, treeState(t, dst))

	// restore in place after changes: back to the first state.
	writeFile(t, filepath.Join(src, "junk.txt"), "junk")
	require.NoError(t, os.RemoveAll(filepath.Join(src, "sub")))
	r = c.ok("restore", "first", "--in-place")
	requireNoProgress(t, r.stdout+r.stderr)
	assert.Equal(t, first, treeState(t, src))
	_ = second

	// a restore onto an existing, non-empty target is refused.
	c.fails(1, "restore", "first", "--target", dst)

	// stats.
	var st statsJSON
	c.jsonOK(&st, "stats")
	assert.Equal(t, int64(3), st.Snapshots)
	assert.Greater(t, st.Chunks, int64(0))

	// verify: everything intact.
	var v verifyJSON
	c.jsonOK(&v, "verify")
	assert.True(t, v.OK)
	assert.Equal(t, 3, v.Snapshots)
	assert.Empty(t, v.Problems)
	c.ok("verify", "first")

	// export two snapshots; import them into a second store.
	archive := filepath.Join(t.TempDir(), "two.ptsnap")
	var ex exportJSON
	c.jsonOK(&ex, "export", "first", "second", "-o", archive)
	assert.Equal(t, []string{s1.ID, s2.ID}, ex.Snapshots)
	info, err := os.Stat(archive)
	require.NoError(t, err)
	assert.Greater(t, info.Size(), int64(0))

	other := newCLI(t)
	var im importJSON
	other.jsonOK(&im, "import", archive)
	require.Len(t, im.Imported, 2)
	other.jsonOK(&l, "list")
	require.Len(t, l.Snapshots, 2)
	other.ok("verify")
	dst2 := filepath.Join(t.TempDir(), "from-import")
	other.ok("restore", "first", "--target", dst2)
	assert.Equal(t, first, treeState(t, dst2))
	// importing again changes nothing: both are already there.
	other.jsonOK(&im, "import", archive)
	assert.Empty(t, im.Imported)
	assert.ElementsMatch(t, []string{s1.ID, s2.ID}, im.Skipped)

	// A store with its own snapshot named "first": the import is refused
	// (nothing imported) unless --rename.
	clash := newCLI(t)
	clash.ok("create", "--engine", "dir", "--name", "first", dst)
	r = clash.fails(exitFailure, "import", archive)
	assert.Contains(t, r.stderr, "first")
	clash.jsonOK(&l, "list")
	assert.Len(t, l.Snapshots, 1, "a refused import leaves the store as it was")
	clash.jsonOK(&im, "import", "--rename", archive)
	require.Len(t, im.Imported, 2)
	renamed := map[string]string{}
	for _, x := range im.Imported {
		renamed[x.RenamedFrom] = x.Name
	}
	require.Contains(t, renamed, "first")
	assert.NotEqual(t, "first", renamed["first"])
	clash.ok("verify")

	// export to a pipe, import from one.
	piped := newCLI(t)
	exp := c.command("export", "first", "-o", "-")
	imp := piped.command("import", "-")
	pipe, err := exp.StdoutPipe()
	require.NoError(t, err)
	imp.Stdin = pipe
	require.NoError(t, exp.Start())
	r = piped.runCmd(imp)
	require.NoError(t, exp.Wait())
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "imported "+s1.ID)
	piped.ok("verify")

	// export --json: the record alone, in the original report's shape.
	r = c.ok("export", "--json", "first")
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rec))
	for _, k := range []string{"snapshot_id", "env_id", "path", "status", "created_at"} {
		assert.Contains(t, rec, k)
	}

	// cleanup --dry-run keeps everything on disk and says why.
	var cl cleanupJSON
	c.jsonOK(&cl, "cleanup", "--keep-last", "1", "--dry-run")
	assert.True(t, cl.DryRun)
	assert.Len(t, cl.Kept, 1)
	assert.Len(t, cl.Removed, 2)
	for _, dcs := range append(cl.Kept, cl.Removed...) {
		assert.NotEmpty(t, dcs.Reasons)
	}
	c.jsonOK(&l, "list")
	assert.Len(t, l.Snapshots, 3, "dry run deleted nothing")
	r = c.ok("cleanup", "--older-than", "30d", "--dry-run")
	assert.Contains(t, r.stdout, "3 kept")

	// delete: dry run, then for real; the deleted one is not found.
	var del deleteJSON
	c.jsonOK(&del, "delete", "--dry-run", thirdID)
	assert.True(t, del.DryRun)
	c.jsonOK(&l, "list")
	assert.Len(t, l.Snapshots, 3)
	record := filepath.Join(t.TempDir(), "second.json")
	r = c.ok("export", "--json", "second")
	require.NoError(t, os.WriteFile(record, []byte(r.stdout), 0o644))
	c.ok("delete", "second", thirdID)
	c.jsonOK(&l, "list")
	assert.Len(t, l.Snapshots, 1)
	c.fails(exitNotFound, "show", "second")

	// Until gc, a deleted snapshot's record can be imported back from its
	// JSON (its data is still in the store).
	c.jsonOK(&im, "import", record)
	require.Len(t, im.Imported, 1)
	assert.Equal(t, s2.ID, im.Imported[0].ID)
	c.ok("show", "second")
	c.ok("delete", "second")

	// gc reclaims what only the deleted snapshots held.
	var g gcJSON
	c.jsonOK(&g, "gc")
	assert.Greater(t, g.ChunksDeleted, int64(0))
	c.ok("verify")

	// cleanup for real, with gc: the older snapshot of the env goes.
	writeFile(t, filepath.Join(src, "later.txt"), "later\n")
	c.ok("create", "--engine", "dir", "--name", "later", src)
	c.jsonOK(&cl, "cleanup", "--keep-last", "1", "--env", src, "--gc")
	assert.False(t, cl.DryRun)
	require.Len(t, cl.Removed, 1)
	assert.Equal(t, s1.ID, cl.Removed[0].ID)
	require.NotNil(t, cl.GC)
	c.jsonOK(&l, "list")
	require.Len(t, l.Snapshots, 1)
	assert.Equal(t, "later", l.Snapshots[0].Name)
	c.ok("verify")

	// events: JSON lines with the operations above.
	r = c.ok("--json", "events")
	var kinds []string
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var e map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), sc.Text())
		kinds = append(kinds, e["type"].(string))
	}
	for _, k := range []string{"snapshot_creating", "snapshot_created", "snapshot_restoring", "snapshot_restored", "snapshot_deleted"} {
		assert.Contains(t, kinds, k)
	}
	r = c.ok("events")
	assert.Contains(t, r.stdout, "snapshot_created")
}
