package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// childOf writes, through w (which pinned parent), a snapshot that reuses
// the parent's files and its whole subdirectory, replaces one file with
// new content and keeps the parent's change index but for that file — the
// shape of a second create. It reads the parent only through ParentTree
// and ParentChangeIndexVisit, as the core does.
func childOf(ctx context.Context, w *Writer, parent *Snapshot, id string, seed uint64) (*Snapshot, error) {
	root, err := w.ParentTree(ctx, parent.Streams[0].Root)
	if err != nil {
		return nil, err
	}
	idx := ChangeIndex{}
	_, err = ParentChangeIndexVisit(ctx, w, func(stream, path string, r IndexRecord) {
		if idx[stream] == nil {
			idx[stream] = map[string]IndexRecord{}
		}
		idx[stream][path] = r
	})
	if err != nil {
		return nil, err
	}
	idx = filesOf(idx)
	tr := &Tree{}
	for _, n := range root.Nodes {
		if n.Type == NodeDir {
			// The core reads each reused directory's tree too.
			if _, err := w.ParentTree(ctx, n.Subtree); err != nil {
				return nil, err
			}
		}
		tr.Nodes = append(tr.Nodes, n)
	}
	last := &tr.Nodes[len(tr.Nodes)-1]
	data := randomBytes(seed, 3000)
	h, err := w.PutChunk(ctx, data)
	if err != nil {
		return nil, err
	}
	last.Content, last.Size = []Hash{h}, int64(len(data))
	idx["rootfs"][last.Name] = IndexRecord{Size: last.Size, MtimeNs: int64(seed), CtimeNs: 2, Inode: 3}
	rootH, err := w.PutTree(ctx, tr)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{ID: id, Engine: "dir", EnvID: "env1", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: rootH}}}
	return snap, w.Commit(ctx, snap, idx)
}

// TestGCProtectsPinnedParent: a writer pins its parent and reuses its
// chunks, subtree and change index without protecting them one by one;
// the parent is deleted and collected before the writer commits; nothing
// is lost. Once committed the pin is gone: deleting the child frees all.
func TestGCProtectsPinnedParent(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	parent := writeSnapshot(t, s, "parent", testFiles(21, 30, 2500))

	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	require.NoError(t, w.UseParent(ctx, "parent"))
	root, err := w.ParentTree(ctx, parent.Streams[0].Root)
	require.NoError(t, err)
	// The reused hashes are covered by the pin, not registered one by one.
	w.mu.Lock()
	for _, n := range root.Nodes {
		for _, c := range n.Content {
			assert.NotContains(t, w.refs, c)
		}
	}
	w.mu.Unlock()

	require.NoError(t, s.DeleteSnapshot(ctx, "parent"))
	st, err := s.GC(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.ChunksDeleted, "the pinned parent keeps everything")

	child, err := childOf(ctx, w, parent, "child", 7)
	require.NoError(t, err)
	_, err = s.GC(ctx)
	require.NoError(t, err)
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, 1, rep.Snapshots)
	idx, err := s.ChangeIndex(ctx, child.ID)
	require.NoError(t, err)
	assert.Len(t, idx["rootfs"], 30)

	require.NoError(t, s.DeleteSnapshot(ctx, child.ID))
	_, err = s.GC(ctx)
	require.NoError(t, err)
	rep, err = s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Zero(t, rep.Chunks, "the pin ended with the commit")
}

// TestUseParentRefusesMissing: pinning a snapshot that is not there (or no
// longer) fails with ErrNotFound, and the writer works on without a parent.
func TestUseParentRefusesMissing(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	writeSnapshot(t, s, "gone", testFiles(22, 3, 100))
	require.NoError(t, s.DeleteSnapshot(ctx, "gone"))
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	defer w.Abort()
	assert.ErrorIs(t, w.UseParent(ctx, "gone"), ErrNotFound)
	s.refMu.Lock()
	assert.Empty(t, s.pins, "a refused pin is dropped")
	s.refMu.Unlock()
	_, err = ParentChangeIndexVisit(ctx, w, func(string, string, IndexRecord) {})
	assert.Error(t, err)
	// Without a pin a tree naming a chunk that is not stored is refused.
	_, err = w.PutTree(ctx, &Tree{Nodes: []Node{{Name: "x", Type: NodeFile, Content: []Hash{SumChunk([]byte("never stored"))}}}})
	assert.ErrorIs(t, err, ErrNotFound)
}

// TestConcurrentPinnedWritersAndGC: chains of snapshots, each made from the
// previous one through a pinned parent that is deleted right after being
// pinned, while GC runs again and again; every remaining snapshot verifies.
func TestConcurrentPinnedWritersAndGC(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
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
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.NewWriter(ctx)
			if err != nil {
				errs <- err
				return
			}
			prev, err := writeSnapshotWith(ctx, w, fmt.Sprintf("g%d-0", g), testFiles(uint64(100+g), 40, 2000))
			if err != nil {
				errs <- err
				return
			}
			for i := 1; i < 6; i++ {
				w, err := s.NewWriter(ctx)
				if err != nil {
					errs <- err
					return
				}
				if err := w.UseParent(ctx, prev.ID); err != nil {
					errs <- err
					return
				}
				// The parent goes; only the pin keeps what the child reuses.
				if err := s.DeleteSnapshot(ctx, prev.ID); err != nil {
					errs <- err
					return
				}
				next, err := childOf(ctx, w, prev, fmt.Sprintf("g%d-%d", g, i), uint64(1000*g+i))
				if err != nil {
					errs <- err
					return
				}
				prev = next
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
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, 4, rep.Snapshots)
	assert.Empty(t, rep.Problems)
}

// TestIndexDirsStoredTogether: a change index stored directory by
// directory (PutIndexDir) while the files' chunks are stored is kept apart
// from them, so reading it back decompresses its own pack or two, not
// every pack of the snapshot; and it is the index Commit would store.
func TestIndexDirsStoredTogether(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	want := ChangeIndex{"rootfs": {}}
	root := &Tree{}
	rootIndex := map[string]Hash{}
	for d := 0; d < 40; d++ {
		name := fmt.Sprintf("d%02d", d)
		sub := &Tree{}
		files := map[string]IndexRecord{}
		for f := 0; f < 30; f++ {
			data := randomBytes(uint64(d*100+f), 10000) // packed, incompressible: 12 MB, 6 packs
			h, err := w.PutChunk(ctx, data)
			require.NoError(t, err)
			fn := fmt.Sprintf("f%02d", f)
			sub.Nodes = append(sub.Nodes, Node{Name: fn, Type: NodeFile, Size: 10000, Content: []Hash{h}})
			r := IndexRecord{Size: 10000, MtimeNs: int64(d), CtimeNs: int64(f), Inode: uint64(d*100 + f)}
			files[fn] = r
			want["rootfs"][name+"/"+fn] = r
		}
		h, err := w.PutTree(ctx, sub)
		require.NoError(t, err)
		root.Nodes = append(root.Nodes, Node{Name: name, Type: NodeDir, Subtree: h})
		if rootIndex[name], err = w.PutIndexDir(ctx, files, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	rootH, err := w.PutTree(ctx, root)
	require.NoError(t, err)
	ir, err := w.PutIndexDir(ctx, nil, rootIndex, nil)
	require.NoError(t, err)
	snap := &Snapshot{ID: "one", Engine: "dir", EnvID: "e", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: rootH}}}
	require.NoError(t, w.CommitIndexed(ctx, snap, map[string]Hash{"rootfs": ir}))
	require.NoError(t, s.Close())

	s = openTest(t, dir)
	got, err := s.ChangeIndex(ctx, "one")
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.LessOrEqual(t, s.packLoads.Load(), int64(2), "the index's chunks share their own pack(s)")

	// Commit from the whole index stores no new chunk: the same chunks.
	before, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	w, err = s.NewWriter(ctx)
	require.NoError(t, err)
	two := *snap
	two.ID = "two"
	require.NoError(t, w.Commit(ctx, &two, want))
	after, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, after.Problems)
	assert.Equal(t, before.Chunks, after.Chunks)
}
