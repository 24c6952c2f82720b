package store

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGCReclaimsDisk stores incompressible large chunks and many small
// (packed) files, deletes the snapshot, and checks that GC gives the space
// back on disk while a second snapshot stays intact.
func TestGCReclaimsDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir, valueLogFileSize: 2 << 20})
	require.NoError(t, err)
	defer s.Close()

	keep := writeSnapshot(t, s, "keep", testFiles(7, 20, 2000))
	big := map[string][]byte{}
	for i := 0; i < 24; i++ {
		big[fmt.Sprintf("lib%02d.so", i)] = randomBytes(uint64(100+i), 512<<10)
	}
	for name, data := range testFiles(8, 300, 3000) {
		big[name+"x"] = data
	}
	writeSnapshot(t, s, "drop", big)
	before, err := s.Usage(ctx)
	require.NoError(t, err)

	require.NoError(t, s.DeleteSnapshot(ctx, "drop"))
	st, err := s.GC(ctx)
	require.NoError(t, err)
	after, err := s.Usage(ctx)
	require.NoError(t, err)
	t.Logf("gc: %+v; disk %d -> %d bytes, stored %d -> %d", st, before.DiskBytes, after.DiskBytes, before.StoredBytes, after.StoredBytes)

	assert.Greater(t, st.ChunksDeleted, int64(300))
	assert.Less(t, after.StoredBytes, before.StoredBytes/4, "the deleted snapshot's chunks are gone")
	assert.Less(t, after.DiskBytes, before.DiskBytes-10<<20, "at least 10 of the 12 MiB of incompressible data came back on disk")
	assert.Less(t, st.DiskAfter, st.DiskBefore)

	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, 1, rep.Snapshots)
	_, err = s.Snapshot(ctx, keep.ID)
	require.NoError(t, err)

	// A second GC finds nothing more.
	st, err = s.GC(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.ChunksDeleted)
}

// TestGCReclaimsActiveValueLog: with the store's own value-log file size
// (32 MiB), a deleted snapshot's 12 MiB all sit in the value-log file being
// written, which Badger's value-log GC never rewrites; GC must rotate it and
// give the space back (at venv-full size, without rotation, GC freed 0.9 MB
// of 48 MB deleted). Done twice: the second deletion's data lands in the
// file the first GC started.
func TestGCReclaimsActiveValueLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir})
	require.NoError(t, err)
	defer s.Close()

	keep := writeSnapshot(t, s, "keep", testFiles(7, 20, 2000))
	for round := range 2 {
		big := map[string][]byte{}
		for i := 0; i < 24; i++ {
			big[fmt.Sprintf("lib%02d.so", i)] = randomBytes(uint64(1000*round+i), 512<<10)
		}
		id := fmt.Sprintf("drop%d", round)
		writeSnapshot(t, s, id, big)
		require.NoError(t, s.DeleteSnapshot(ctx, id))
		st, err := s.GC(ctx)
		require.NoError(t, err)
		t.Logf("round %d: disk %d -> %d bytes, %d bytes of chunks deleted", round, st.DiskBefore, st.DiskAfter, st.BytesReclaimed)
		assert.GreaterOrEqual(t, st.BytesReclaimed, int64(12<<20))
		assert.Less(t, st.DiskAfter, st.DiskBefore-10<<20, "round %d: at least 10 of the 12 MiB deleted came back on disk", round)
	}

	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, 1, rep.Snapshots)
	_, err = s.Snapshot(ctx, keep.ID)
	require.NoError(t, err)
}

// TestGCRepacks deletes most files of a pack and checks the survivors are
// moved to a new pack and still read back.
func TestGCRepacks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(9, 200, 3000)
	writeSnapshot(t, s, "all", files)
	few := map[string][]byte{}
	for _, name := range sortedKeys(files)[:10] {
		few[name] = files[name]
	}
	writeSnapshot(t, s, "few", few)
	before, err := s.Usage(ctx)
	require.NoError(t, err)
	require.NoError(t, s.DeleteSnapshot(ctx, "all"))
	_, err = s.GC(ctx)
	require.NoError(t, err)
	after, err := s.Usage(ctx)
	require.NoError(t, err)
	assert.Less(t, after.StoredBytes, before.StoredBytes/5)
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, int64(10+2+1), rep.Chunks, "10 files, 2 trees, 1 change index chunk")
}

// TestGCProtectsLiveWriter is the race of gc.go: a writer finds a chunk that
// only a deleted snapshot referenced; GC runs before the writer commits; the
// chunk must survive.
func TestGCProtectsLiveWriter(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(10, 5, 20000)
	writeSnapshot(t, s, "old", files)
	require.NoError(t, s.DeleteSnapshot(ctx, "old"))

	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	var content []Hash
	for _, name := range sortedKeys(files) {
		h, err := w.PutChunk(ctx, files[name])
		require.NoError(t, err)
		content = append(content, h)
	}
	assert.Zero(t, w.Stats().NewChunks, "every chunk was found, not written")

	st, err := s.GC(ctx)
	require.NoError(t, err)
	for _, h := range content {
		ok, err := s.HasChunk(ctx, h)
		require.NoError(t, err)
		assert.True(t, ok, "a chunk a live writer found survives GC")
	}
	assert.Greater(t, st.ChunksDeleted, int64(0), "the old trees were collected")

	tr := &Tree{}
	for i, name := range sortedKeys(files) {
		tr.Nodes = append(tr.Nodes, Node{Name: name, Type: NodeFile, Size: int64(len(files[name])), Content: []Hash{content[i]}})
	}
	root, err := w.PutTree(ctx, tr)
	require.NoError(t, err)
	require.NoError(t, w.Commit(ctx, &Snapshot{ID: "new", Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: root}}}, nil))
	_, err = s.GC(ctx)
	require.NoError(t, err)
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}

// TestConcurrentWritersAndGC: 8 goroutines write snapshots (sharing much
// content, deleting some of their own) while GC runs again and again; every
// remaining snapshot verifies afterwards.
func TestConcurrentWritersAndGC(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	shared := testFiles(11, 40, 2500)
	done := make(chan struct{})
	var gcs int
	var gcErr error
	var gcWG sync.WaitGroup
	gcWG.Add(1)
	go func() {
		defer gcWG.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := s.GC(ctx); err != nil {
				gcErr = err
				return
			}
			gcs++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				files := map[string][]byte{}
				for k, v := range shared {
					files[k] = v
				}
				for k, v := range testFiles(uint64(1000*g+i), 10, 1500) {
					files[fmt.Sprintf("g%d-%s", g, k)] = v
				}
				files["big.bin"] = randomBytes(uint64(g*100+i%2), 300<<10)
				w, err := s.NewWriter(ctx)
				if err != nil {
					errs <- err
					return
				}
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, err := writeSnapshotWith(ctx, w, id, files); err != nil {
					errs <- err
					return
				}
				if i%2 == 1 {
					if err := s.DeleteSnapshot(ctx, id); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	gcWG.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, gcErr)
	_, err := s.GC(ctx)
	require.NoError(t, err)
	t.Logf("%d GCs ran during the writes", gcs)
	assert.Greater(t, gcs, 0)
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, 8*2, rep.Snapshots)
	assert.Empty(t, rep.Problems)
}

// TestGCProtectsReusedChunks: a writer reuses the parent's chunk lists
// without putting the chunks (as the core does for unchanged files); the
// parent is deleted and collected before the writer commits; nothing is lost.
func TestGCProtectsReusedChunks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(12, 30, 2500)
	parent := writeSnapshot(t, s, "parent", files)
	root, err := s.GetTree(ctx, parent.Streams[0].Root)
	require.NoError(t, err)

	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	// Reuse the files' chunk lists and, as another directory, the
	// parent's whole subdirectory tree.
	reused := &Tree{}
	for _, n := range root.Nodes {
		if n.Type == NodeDir {
			n.Name = "reused-dir"
		}
		reused.Nodes = append(reused.Nodes, n)
	}
	sort.Slice(reused.Nodes, func(i, j int) bool { return reused.Nodes[i].Name < reused.Nodes[j].Name })
	h, err := w.PutTree(ctx, reused)
	require.NoError(t, err)

	require.NoError(t, s.DeleteSnapshot(ctx, "parent"))
	_, err = s.GC(ctx)
	require.NoError(t, err)
	require.NoError(t, w.Commit(ctx, &Snapshot{ID: "child", Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: h}}}, nil))
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, int64(30+2), rep.Chunks, "30 files and 2 trees")

	// A tree naming a chunk that is not stored is refused.
	w2, err := s.NewWriter(ctx)
	require.NoError(t, err)
	defer w2.Abort()
	_, err = w2.PutTree(ctx, &Tree{Nodes: []Node{{Name: "x", Type: NodeFile, Content: []Hash{SumChunk([]byte("never stored"))}}}})
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), `"x"`)
}

// TestGCProgress checks that GCWithOptions reports every phase in order,
// each with Done never decreasing and ending at Total where Total is known.
func TestGCProgress(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: t.TempDir(), valueLogFileSize: 2 << 20})
	require.NoError(t, err)
	defer s.Close()
	writeSnapshot(t, s, "keep", testFiles(7, 50, 3000))
	big := map[string][]byte{}
	for i := 0; i < 8; i++ {
		big[fmt.Sprintf("lib%02d.so", i)] = randomBytes(uint64(200+i), 512<<10)
	}
	for name, data := range testFiles(8, 2500, 3000) {
		big[name+"x"] = data
	}
	writeSnapshot(t, s, "drop", big)
	writeSnapshot(t, s, "keep2", testFiles(9, 30, 3000))
	require.NoError(t, s.DeleteSnapshot(ctx, "drop"))

	var got []GCProgress
	st, err := s.GCWithOptions(ctx, GCOptions{Progress: func(p GCProgress) { got = append(got, p) }})
	require.NoError(t, err)
	require.Greater(t, st.ChunksDeleted, int64(sweepBatch), "more than one sweep batch")

	order := []GCPhase{GCMark, GCSweep, GCRepack, GCVlog}
	var phases []GCPhase
	last := map[GCPhase]GCProgress{}
	for _, p := range got {
		prev, seen := last[p.Phase]
		if !seen {
			phases = append(phases, p.Phase)
			assert.Zero(t, p.Done, "%s starts at 0", p.Phase)
		} else {
			assert.GreaterOrEqual(t, p.Done, prev.Done, "%s: done went back", p.Phase)
			assert.Equal(t, prev.Total, p.Total, "%s: total changed", p.Phase)
			require.Equal(t, p.Phase, phases[len(phases)-1], "%s reported after a later phase", p.Phase)
		}
		if p.Total > 0 {
			assert.LessOrEqual(t, p.Done, p.Total, "%s", p.Phase)
		}
		last[p.Phase] = p
	}
	assert.Equal(t, order, phases)
	assert.Equal(t, GCProgress{GCMark, 2, 2}, last[GCMark])
	assert.Equal(t, st.ChunksDeleted, last[GCSweep].Done)
	assert.Equal(t, last[GCSweep].Total, last[GCSweep].Done)
	assert.Positive(t, last[GCRepack].Total)
	assert.Equal(t, last[GCRepack].Total, last[GCRepack].Done)
	assert.GreaterOrEqual(t, last[GCVlog].Done, int64(2), "flush and compaction reported")
	assert.Zero(t, last[GCVlog].Total)
	sweeps := 0
	for _, p := range got {
		if p.Phase == GCSweep {
			sweeps++
		}
	}
	assert.Greater(t, sweeps, 2, "the sweep reports per batch")

	// Nothing left to delete: no vlog phase; GC (no options) still works.
	got = nil
	_, err = s.GCWithOptions(ctx, GCOptions{Progress: func(p GCProgress) { got = append(got, p) }})
	require.NoError(t, err)
	for _, p := range got {
		assert.NotEqual(t, GCVlog, p.Phase)
	}
	st, err = s.GC(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.ChunksDeleted)
}
