package core

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pypj/ptest-snap/pluginapi"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListFiltersNewestFirst(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	h := time.Hour
	lcWrite(t, m, lcSnap{ID: "l1", Created: retentionClock.Add(-3 * h), Labels: map[string]string{"ci": "yes"}, Streams: lcFiles("f", "1")})
	lcWrite(t, m, lcSnap{ID: "l2", Created: retentionClock.Add(-2 * h), Name: "two", Streams: lcFiles("f", "2")})
	lcWrite(t, m, lcSnap{ID: "l3", Created: retentionClock.Add(-1 * h), EnvID: "env2", Labels: map[string]string{"ci": "no"}, Streams: lcFiles("f", "3")})
	lcWrite(t, m, lcSnap{ID: "l4", Created: retentionClock, Engine: "virtualenv", Streams: lcFiles("f", "4")})

	ids := func(o ListOptions) []string {
		es, err := m.List(ctx, o)
		require.NoError(t, err)
		var out []string
		for _, e := range es {
			out = append(out, e.Snapshot.ID)
			assert.Equal(t, int64(-1), e.Sizes.ExclusiveBytes)
			assert.Equal(t, e.Snapshot.Stats.LogicalBytes, e.Sizes.LogicalBytes)
		}
		return out
	}
	assert.Equal(t, []string{"l4", "l3", "l2", "l1"}, ids(ListOptions{}))
	assert.Equal(t, []string{"l3", "l2", "l1"}, ids(ListOptions{Engine: "dir"}))
	assert.Equal(t, []string{"l2", "l1"}, ids(ListOptions{Engine: "dir", EnvID: "env1"}))
	assert.Equal(t, []string{"l4", "l2", "l1"}, ids(ListOptions{EnvID: "env1"}))
	assert.Equal(t, []string{"l3", "l1"}, ids(ListOptions{Labels: []string{"ci"}}))
	assert.Equal(t, []string{"l1"}, ids(ListOptions{Labels: []string{"ci=yes"}}))
	assert.Equal(t, []string{"l2"}, ids(ListOptions{Name: "two"}))
	assert.Equal(t, []string{"l3", "l2"}, ids(ListOptions{Since: retentionClock.Add(-2 * h), Until: retentionClock}))
	assert.Empty(t, ids(ListOptions{Engine: "docker"}))
	_, err := m.List(ctx, ListOptions{Labels: []string{"=v"}})
	require.ErrorIs(t, err, ErrInvalidOptions)
}

func TestListSizesExclusiveBytes(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	shared := strings.Repeat("shared library bytes ", 3000)
	onlyA := strings.Repeat("A only ", 5000)
	// Both share the whole "lib" subtree and one file at the root.
	lcWrite(t, m, lcSnap{ID: "sa", Created: retentionClock.Add(-time.Hour), Streams: lcFiles("lib/x.py", shared, "lib/y.py", "y", "a.txt", onlyA, "common", "c")})
	lcWrite(t, m, lcSnap{ID: "sb", Streams: lcFiles("lib/x.py", shared, "lib/y.py", "y", "common", "c")})
	lcWrite(t, m, lcSnap{ID: "sc", EnvID: "other", Streams: lcFiles("lib/x.py", shared, "lib/y.py", "y", "common", "c")})

	es, err := m.List(ctx, ListOptions{Sizes: true})
	require.NoError(t, err)
	require.Len(t, es, 3)
	byID := map[string]SnapshotSizes{}
	for _, e := range es {
		byID[e.Snapshot.ID] = e.Sizes
	}
	aChunk, err := m.Store().ChunkStoredSize(ctx, sumOf(onlyA))
	require.NoError(t, err)
	// sa alone holds a.txt's chunk and its root tree (which lists a.txt).
	assert.Greater(t, byID["sa"].ExclusiveBytes, aChunk)
	assert.Less(t, byID["sa"].ExclusiveBytes, aChunk+500)
	// sb and sc have identical trees: nothing is theirs alone.
	assert.Zero(t, byID["sb"].ExclusiveBytes)
	assert.Zero(t, byID["sc"].ExclusiveBytes)

	// Without sc, sb's root tree is its alone; lib is still shared with sa.
	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"sc"}})
	require.NoError(t, err)
	es, err = m.List(ctx, ListOptions{Sizes: true, EnvID: "env1"})
	require.NoError(t, err)
	for _, e := range es {
		if e.Snapshot.ID == "sb" {
			assert.Greater(t, e.Sizes.ExclusiveBytes, int64(0), "sb's root tree is now its alone")
			assert.Less(t, e.Sizes.ExclusiveBytes, int64(500), "but lib is still shared with sa")
		}
	}
}

func TestShowAndStats(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	meta := map[string]any{"venv_path": "/v", "installed_packages": map[string]string{"requests": "2.28.1"}}
	p := lcWrite(t, m, lcSnap{ID: "p1", Created: retentionClock.Add(-time.Hour), Metadata: meta, Streams: lcFiles("f", strings.Repeat("x", 10000))})
	lcWrite(t, m, lcSnap{ID: "c1", Name: "child", Parent: "p1", Streams: lcFiles("f", strings.Repeat("x", 10000), "g", "tiny")})
	res, err := m.Show(ctx, "p1")
	require.NoError(t, err)
	assert.Equal(t, p.ID, res.Snapshot.ID)
	assert.Equal(t, map[string]string{"requests": "2.28.1"}, res.Packages)
	assert.Equal(t, "/v", res.Metadata.(map[string]any)["venv_path"])
	assert.Equal(t, int64(10000), res.Sizes.LogicalBytes)
	assert.Greater(t, res.Sizes.ExclusiveBytes, int64(0), "its root tree is its alone")
	assert.Equal(t, []string{"c1"}, res.Children)

	res, err = m.Show(ctx, "child")
	require.NoError(t, err)
	assert.Nil(t, res.Packages)
	assert.True(t, res.ParentExists)
	_, err = m.Show(ctx, "nope")
	require.ErrorIs(t, err, ErrNotFound)

	st, err := m.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, st.Snapshots)
	assert.Equal(t, 1, st.Envs)
	assert.Equal(t, int64(20004), st.LogicalBytes)
	assert.Greater(t, st.DedupRatio, 1.5, "the 10000-byte file is stored once")
	assert.Greater(t, st.CompressionRatio, 5.0, "x*10000 compresses")
	assert.Zero(t, st.ReclaimableBytes)
	assert.Zero(t, st.ReclaimableChunks)

	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"child"}})
	require.NoError(t, err)
	st, err = m.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Snapshots)
	assert.Equal(t, int64(2), st.ReclaimableChunks, "child's root tree and the tiny file")
	assert.Greater(t, st.ReclaimableBytes, int64(0))
	_, err = m.GC(ctx)
	require.NoError(t, err)
	st, err = m.Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.ReclaimableChunks)
}

// TestStatsCountsTheChangeIndex: a snapshot created through an engine has
// a change index, which gc keeps; stats must count it as referenced (it
// reported ~8,000 index chunks of venv-full as reclaimable right after one
// create), and what it calls reclaimable once a snapshot is deleted is what
// gc then deletes.
func TestStatsCountsTheChangeIndex(t *testing.T) {
	ctx := context.Background()
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	src := t.TempDir()
	for _, d := range []string{"a", "a/b", "c", "c/d/e"} {
		for i := range 3 {
			writeFile(t, filepath.Join(src, d, fmt.Sprintf("f%d", i)), randBytes(100+i), 0o644, fixedTime)
		}
	}
	_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Name: "one"})
	require.NoError(t, err)
	st, err := m.Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.ReclaimableChunks, "the change index is referenced")
	assert.Zero(t, st.ReclaimableBytes)

	// The second snapshot shares every index chunk but those of the
	// changed directory and its parents.
	writeFile(t, filepath.Join(src, "c", "d", "e", "f0"), randBytes(300), 0o644, fixedTime.Add(time.Hour))
	_, err = m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Name: "two"})
	require.NoError(t, err)
	st, err = m.Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.ReclaimableChunks)
	one, err := m.Show(ctx, "one")
	require.NoError(t, err)
	two, err := m.Show(ctx, "two")
	require.NoError(t, err)
	assert.Positive(t, one.Sizes.ExclusiveBytes)
	assert.Positive(t, two.Sizes.ExclusiveBytes)

	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"two"}})
	require.NoError(t, err)
	st, err = m.Stats(ctx)
	require.NoError(t, err)
	// two's own: the new file's chunk, 4 trees (root, c, c/d, c/d/e) and
	// 4 index chunks (the same directories).
	assert.Equal(t, int64(9), st.ReclaimableChunks)
	gc, err := m.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, st.ReclaimableChunks, gc.ChunksDeleted, "stats predicts what gc deletes")
	st, err = m.Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.ReclaimableChunks)
}
