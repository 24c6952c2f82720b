package core

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// makeLargeDir writes a tree with one directory of n small files (each
// distinct, as the JSON schemas of cfnlint/data/schemas/patches/extensions/all
// in venv-full) and a few files beside it.
func makeLargeDir(t *testing.T, root string, n int) {
	t.Helper()
	for i := range n {
		writeFile(t, filepath.Join(root, "schemas", "all", fmt.Sprintf("aws_service_%04d_resource.json", i)),
			[]byte(fmt.Sprintf(`{"type": "object", "n": %d}`, i)), 0o644, fixedTime.Add(time.Duration(i)))
	}
	writeFile(t, filepath.Join(root, "README"), []byte("large directory\n"), 0o644, fixedTime)
	writeFile(t, filepath.Join(root, "schemas", "VERSION"), []byte("1\n"), 0o644, fixedTime)
}

// TestLargeDirectoryOneChangeCostsOneFragment: a directory of 1,500 files
// is stored as fragments (store/tree_split.go), so a second snapshot after
// one of its files changed stores one fragment of its tree and of its
// change index, not the whole directory again; and everything that reads
// trees reads it whole: restore to an empty directory and in place, diff,
// show, verify, export and import, delete and gc.
func TestLargeDirectoryOneChangeCostsOneFragment(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeLargeDir(t, src, 1500)
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	first, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Name: "first"})
	require.NoError(t, err)

	// The directory's tree alone, as one chunk, would be about 100 kB.
	all := lookupDir(t, m, first, "schemas/all")
	whole, err := store.EncodeTree(mustTree(t, m, all))
	require.NoError(t, err)
	require.Greater(t, len(whole), 80_000)
	raw, err := m.store.GetChunk(ctx, all)
	require.NoError(t, err)
	frags, err := store.TreeFragments(raw)
	require.NoError(t, err)
	require.Greater(t, len(frags), 50, "stored as a root and fragments")

	// One file of the directory changes (content and size).
	changed := filepath.Join(src, "schemas", "all", "aws_service_0750_resource.json")
	writeFile(t, changed, []byte(`{"type": "object", "n": 750, "changed": true}`), 0o644, fixedTime.Add(time.Hour))
	second, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Name: "second"})
	require.NoError(t, err)
	require.Equal(t, first.ID, second.Parent)

	all2 := lookupDir(t, m, second, "schemas/all")
	raw2, err := m.store.GetChunk(ctx, all2)
	require.NoError(t, err)
	frags2, err := store.TreeFragments(raw2)
	require.NoError(t, err)
	require.Len(t, frags2, len(frags))
	var newFrags int
	for i := range frags {
		if frags[i] != frags2[i] {
			newFrags++
		}
	}
	assert.Equal(t, 1, newFrags, "one fragment of the tree changed")
	// Stored: the new file's chunk, one fragment and the root of the large
	// directory's tree and of its index, and the two small trees above it
	// and their index chunks; a few kB, against the ~100 kB of tree and
	// ~60 kB of index that storing the directory whole costs.
	t.Logf("second snapshot stored %d bytes; the directory's tree whole is %d", second.Stats.StoredBytes, len(whole))
	assert.Less(t, second.Stats.StoredBytes, int64(12_000), "stored bytes of the second snapshot")
	assert.Less(t, second.Stats.StoredBytes*8, int64(len(whole)))

	// Diff sees exactly the one file.
	d, err := m.Diff(ctx, "first", "second")
	require.NoError(t, err)
	require.Len(t, d.Changes, 1)
	assert.Equal(t, "schemas/all/aws_service_0750_resource.json", d.Changes[0].Path)

	// Restore to an empty directory, then in place back to the first.
	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: "second", Target: dst})
	require.NoError(t, err)
	requireSameTree(t, src, dst)
	_, err = m.Restore(ctx, RestoreOptions{Ref: "first", Target: dst, InPlace: true})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dst, "schemas", "all", "aws_service_0750_resource.json"))
	require.NoError(t, err)
	assert.Equal(t, `{"type": "object", "n": 750}`, string(b))

	// Show's sizes count the fragments: the second snapshot's exclusive
	// bytes are its changed fragment and roots, not nothing.
	sh, err := m.Show(ctx, "second")
	require.NoError(t, err)
	assert.Positive(t, sh.Sizes.ExclusiveBytes)

	rep, err := m.store.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)

	// Export and import into another store: the same hashes.
	var buf bytes.Buffer
	_, err = m.Export(ctx, []string{"first", "second"}, &buf, nil)
	require.NoError(t, err)
	m2 := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	ir, err := m2.Import(ctx, bytes.NewReader(buf.Bytes()), ImportOptions{})
	require.NoError(t, err)
	require.Len(t, ir.Snapshots, 2)
	for _, s := range ir.Snapshots {
		orig, err := m.Resolve(ctx, s.ID)
		require.NoError(t, err)
		assert.Equal(t, orig.Streams, s.Streams)
	}
	verifyAndRestore(t, m2, "second", src)

	// Delete the first and gc: the second keeps every fragment it shares.
	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"first"}})
	require.NoError(t, err)
	_, err = m.GC(ctx)
	require.NoError(t, err)
	verifyAndRestore(t, m, "second", src)
}

// verifyAndRestore checks that m's store verifies clean and that snapshot
// ref restores to a new directory equal to src.
func verifyAndRestore(t *testing.T, m *Manager, ref, src string) {
	t.Helper()
	ctx := context.Background()
	rep, err := m.store.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	dst := filepath.Join(t.TempDir(), "restored")
	_, err = m.Restore(ctx, RestoreOptions{Ref: ref, Target: dst})
	require.NoError(t, err)
	requireSameTree(t, src, dst)
}

// lookupDir returns the tree hash of dir (slash-separated) in snap's first
// stream.
func lookupDir(t *testing.T, m *Manager, snap *store.Snapshot, dir string) store.Hash {
	t.Helper()
	h := snap.Streams[0].Root
	for _, name := range strings.Split(dir, "/") {
		tr := mustTree(t, m, h)
		found := false
		for _, n := range tr.Nodes {
			if n.Name == name && n.Type == store.NodeDir {
				h, found = n.Subtree, true
			}
		}
		require.True(t, found, "%s in %s", name, dir)
	}
	return h
}

func mustTree(t *testing.T, m *Manager, h store.Hash) *store.Tree {
	t.Helper()
	tr, err := m.store.GetTree(context.Background(), h)
	require.NoError(t, err)
	return tr
}
