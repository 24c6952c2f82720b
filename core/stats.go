package core

import (
	"context"
	"fmt"

	"github.com/pypj/ptest-snap/store"
)

// SnapshotSizes are a snapshot's size figures.
type SnapshotSizes struct {
	// LogicalBytes is the sum of its files' sizes (what a restore writes).
	LogicalBytes int64 `json:"logical_bytes"`
	// StoredBytes is what its creation added to the store (compressed).
	StoredBytes int64 `json:"stored_bytes"`
	// ExclusiveBytes is the stored size of the chunks and trees no other
	// snapshot references: what deleting it alone (then gc) gives back.
	// -1 when not computed.
	ExclusiveBytes int64 `json:"exclusive_bytes"`
}

// refWalk computes, over a set of snapshots, which chunks (file chunks,
// trees and change-index chunks) each one alone references. Every tree is read at most twice in
// one walk, however many snapshots share it: a subtree already reached
// from another snapshot is not descended again but marked shared, and the
// shared marks are pushed down to its descendants in a second pass that
// visits each shared tree once.
type refWalk struct {
	st *store.Store
	// owner is the index of the first snapshot that reached each hash.
	owner map[store.Hash]int
	// shared marks hashes reached from more than one snapshot.
	shared map[store.Hash]bool
	// sharedTrees are trees reached from a second snapshot whose
	// descendants still have to be marked shared.
	sharedTrees []store.Hash
	// visitedTree marks trees already descended, with the snapshot that did.
	visitedTree map[store.Hash]int
	// sharedIndex are change-index chunks reached from a second snapshot
	// whose descendants still have to be marked shared.
	sharedIndex []store.Hash
}

func newRefWalk(st *store.Store) *refWalk {
	return &refWalk{
		st: st, owner: map[store.Hash]int{}, shared: map[store.Hash]bool{},
		visitedTree: map[store.Hash]int{},
	}
}

// ref records that snapshot i references h.
func (w *refWalk) ref(i int, h store.Hash) {
	if o, ok := w.owner[h]; !ok {
		w.owner[h] = i
	} else if o != i {
		w.shared[h] = true
	}
}

// walkSnapshot records every hash snapshot i references.
func (w *refWalk) walkSnapshot(ctx context.Context, i int, s *store.Snapshot) error {
	for _, stream := range s.Streams {
		if err := w.walkTree(ctx, i, stream.Root); err != nil {
			return fmt.Errorf("snapshot %s stream %s: %w", s.ID, stream.Name, err)
		}
	}
	// The change index is the snapshot's too (gc keeps it): a chunk of it
	// already reached from another snapshot is not descended again, as
	// with trees, and finish marks what is under it shared.
	err := w.st.IndexChunks(ctx, s.ID, func(h store.Hash) bool {
		o, seen := w.owner[h]
		w.ref(i, h)
		if seen && o != i {
			w.sharedIndex = append(w.sharedIndex, h)
		}
		return !seen
	})
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", s.ID, err)
	}
	return nil
}

func (w *refWalk) walkTree(ctx context.Context, i int, h store.Hash) error {
	w.ref(i, h)
	if by, ok := w.visitedTree[h]; ok {
		if by != i && w.shared[h] {
			w.sharedTrees = append(w.sharedTrees, h)
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w.visitedTree[h] = i
	t, parts, err := w.st.GetTreeParts(ctx, h)
	if err != nil {
		return fmt.Errorf("tree %s: %w", h, err)
	}
	// A large directory's fragments are stored chunks of the snapshot's.
	for _, p := range parts {
		w.ref(i, p)
	}
	for k := range t.Nodes {
		n := &t.Nodes[k]
		for _, c := range n.Content {
			w.ref(i, c)
		}
		if n.Type == store.NodeDir {
			if err := w.walkTree(ctx, i, n.Subtree); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish marks the descendants of every shared tree shared.
func (w *refWalk) finish(ctx context.Context) error {
	done := map[store.Hash]bool{}
	var mark func(h store.Hash) error
	mark = func(h store.Hash) error {
		if done[h] {
			return nil
		}
		done[h] = true
		w.shared[h] = true
		t, parts, err := w.st.GetTreeParts(ctx, h)
		if err != nil {
			return fmt.Errorf("tree %s: %w", h, err)
		}
		for _, p := range parts {
			w.shared[p] = true
		}
		for k := range t.Nodes {
			n := &t.Nodes[k]
			for _, c := range n.Content {
				w.shared[c] = true
			}
			if n.Type == store.NodeDir {
				if err := mark(n.Subtree); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, h := range w.sharedTrees {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := mark(h); err != nil {
			return err
		}
	}
	w.sharedTrees = nil
	// What is under a shared index chunk is shared too; each part is
	// walked once.
	for _, h := range w.sharedIndex {
		err := w.st.IndexChunksUnder(ctx, h, func(c store.Hash) bool {
			if done[c] {
				return false
			}
			done[c] = true
			w.shared[c] = true
			return true
		})
		if err != nil {
			return err
		}
	}
	w.sharedIndex = nil
	return nil
}

// exclusive returns, per snapshot index, the stored bytes only it
// references.
func (w *refWalk) exclusive(ctx context.Context, n int) ([]int64, error) {
	out := make([]int64, n)
	var hs []store.Hash
	for h := range w.owner {
		if !w.shared[h] {
			hs = append(hs, h)
		}
	}
	err := w.st.ChunkStoredSizes(ctx, hs, func(h store.Hash, size int64) error {
		out[w.owner[h]] += size
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// snapshotSizes returns the size figures of every snapshot in snaps (all
// of the store's, so that "exclusive" means what it says), in order.
func (m *Manager) snapshotSizes(ctx context.Context, snaps []*store.Snapshot) ([]SnapshotSizes, error) {
	w := newRefWalk(m.store)
	for i, s := range snaps {
		if err := w.walkSnapshot(ctx, i, s); err != nil {
			return nil, err
		}
	}
	if err := w.finish(ctx); err != nil {
		return nil, err
	}
	excl, err := w.exclusive(ctx, len(snaps))
	if err != nil {
		return nil, err
	}
	out := make([]SnapshotSizes, len(snaps))
	for i, s := range snaps {
		out[i] = SnapshotSizes{LogicalBytes: s.Stats.LogicalBytes, StoredBytes: s.Stats.StoredBytes, ExclusiveBytes: excl[i]}
	}
	return out, nil
}

// StoreStats are the store's figures.
type StoreStats struct {
	Snapshots int   `json:"snapshots"`
	Envs      int   `json:"envs"`
	Chunks    int64 `json:"chunks"`
	// LogicalBytes is the sum of every snapshot's file sizes: what the
	// snapshots would take stored one by one, uncompressed.
	LogicalBytes int64 `json:"logical_bytes"`
	// UniqueBytes is the uncompressed size of the chunks kept once each.
	UniqueBytes int64 `json:"unique_bytes"`
	// StoredBytes is what the chunks take compressed.
	StoredBytes int64 `json:"stored_bytes"`
	// DiskBytes is the store directory's size on disk.
	DiskBytes int64 `json:"disk_bytes"`
	// DedupRatio is LogicalBytes / UniqueBytes; CompressionRatio is
	// UniqueBytes / StoredBytes (0 when undefined).
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
	// ReclaimableBytes is the stored size of chunks no snapshot references:
	// what gc would give back (before Badger's own reclaim).
	ReclaimableBytes  int64 `json:"reclaimable_bytes"`
	ReclaimableChunks int64 `json:"reclaimable_chunks"`
}

// Stats returns the store's figures. It walks every snapshot's trees once
// (shared subtrees once) to find what gc could reclaim.
func (m *Manager) Stats(ctx context.Context) (*StoreStats, error) {
	snaps, err := m.store.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	u, err := m.store.Usage(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	st := &StoreStats{Snapshots: len(snaps), Chunks: u.Chunks, UniqueBytes: u.ChunkBytes, StoredBytes: u.StoredBytes, DiskBytes: u.DiskBytes}
	envs := map[[2]string]bool{}
	w := newRefWalk(m.store)
	for _, s := range snaps {
		st.LogicalBytes += s.Stats.LogicalBytes
		envs[[2]string{s.Engine, s.EnvID}] = true
		// Every snapshot as index 0: the walk then visits each tree once
		// and owner holds exactly the reachable set.
		if err := w.walkSnapshot(ctx, 0, s); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
	}
	st.Envs = len(envs)
	var reachableStored int64
	hs := make([]store.Hash, 0, len(w.owner))
	for h := range w.owner {
		hs = append(hs, h)
	}
	err = m.store.ChunkStoredSizes(ctx, hs, func(_ store.Hash, n int64) error {
		reachableStored += n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	if r := u.Chunks - int64(len(w.owner)); r > 0 {
		st.ReclaimableChunks = r
		// A packed chunk's stored size is its share of its pack's,
		// rounded down (store.ChunkStoredSizes), so the reachable sum
		// can fall a few bytes short of the store's total: with no
		// chunk to reclaim there are no bytes either.
		if r := u.StoredBytes - reachableStored; r > 0 {
			st.ReclaimableBytes = r
		}
	}
	if st.UniqueBytes > 0 {
		st.DedupRatio = float64(st.LogicalBytes) / float64(st.UniqueBytes)
	}
	if st.StoredBytes > 0 {
		st.CompressionRatio = float64(st.UniqueBytes) / float64(st.StoredBytes)
	}
	return st, nil
}
