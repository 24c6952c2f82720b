package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// level0Tables counts the level-0 tables of the open store's database.
func level0Tables(s *Store) int { return level0Count(s.db) }

// TestLevel0StaysBounded: each process that writes leaves one level-0
// table, no background compactor merges them, and the process that opens
// the store with l0CompactAt of them compacts level 0 at its Close — with
// every snapshot still readable.
func TestLevel0StaysBounded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	files := testFiles(41, 5, 200)
	for i := range 3 * l0CompactAt {
		s, err := Open(ctx, Options{Dir: dir})
		require.NoError(t, err)
		long, err := l0Long(s.opts)
		require.NoError(t, err)
		n := level0Tables(s)
		assert.Equal(t, n >= l0CompactAt, long, "open %d: %d level-0 tables", i, n)
		assert.LessOrEqual(t, n, l0CompactAt, "open %d", i)
		writeSnapshot(t, s, fmt.Sprintf("s%d", i), files)
		require.NoError(t, s.Close())
	}
	s := openTest(t, dir)
	assert.Less(t, level0Tables(s), l0CompactAt)
	for i := range 3 * l0CompactAt {
		_, err := s.Snapshot(ctx, fmt.Sprintf("s%d", i))
		assert.NoError(t, err, "s%d", i)
	}
}

// TestL0LongNewStore: a store without a database yet has no level 0.
func TestL0LongNewStore(t *testing.T) {
	long, err := l0Long(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	assert.False(t, long)
}

// TestLevel0StaysBoundedInOneOpen: a process that keeps the store open
// for many writes (the Go API in a test framework) flushes a level-0
// table each time its memtable fills, which l0Long, deciding at Open,
// never sees. Its commits start a compaction once level 0 holds
// l0CompactAt tables, so level 0 stays bounded however long it writes;
// Close waits for a compaction still running, and every snapshot reads
// back after a reopen.
func TestLevel0StaysBoundedInOneOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Small memtables, so that a few commits of small chunks fill one;
	// a commit's chunks go to Badger in transactions of at most a tenth
	// of the memtable, and a pack's references in one of them, hence
	// the 250 chunks a commit.
	const commits, files, memTable = 300, 250, 256 << 10
	s, err := Open(ctx, Options{Dir: dir, memTableSize: memTable})
	require.NoError(t, err)
	most, flushed := 0, 0
	for i := range commits {
		before := level0Tables(s)
		writeSmallChunks(t, s, fmt.Sprintf("s%d", i), i, files)
		n := level0Tables(s)
		if n > before {
			flushed += n - before
		}
		most = max(most, n)
	}
	// Level 0 would have grown far past the bound without compactions.
	require.GreaterOrEqual(t, flushed, 3*l0CompactAt, "level-0 tables flushed")
	// A compaction takes level 0 at l0CompactAt; commits that land while
	// it runs may add a table more.
	assert.LessOrEqual(t, most, l0CompactAt+2, "level-0 tables at most")
	require.NoError(t, s.Close())

	s = openTest(t, dir)
	assert.LessOrEqual(t, level0Tables(s), l0CompactAt+2)
	for i := range commits {
		_, err := s.Snapshot(ctx, fmt.Sprintf("s%d", i))
		assert.NoError(t, err, "s%d", i)
	}
}

// writeSmallChunks commits a snapshot of one directory of n small files,
// each its own chunk and unlike every other commit's (seed).
func writeSmallChunks(t *testing.T, s *Store, id string, seed, n int) {
	t.Helper()
	ctx := context.Background()
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	tree := &Tree{}
	for i := range n {
		b := fmt.Appendf(nil, "commit %d file %d", seed, i)
		h, err := w.PutChunk(ctx, b)
		require.NoError(t, err)
		tree.Nodes = append(tree.Nodes, Node{Name: fmt.Sprintf("f%05d", i), Type: NodeFile, Mode: 0o644, Size: int64(len(b)), Content: []Hash{h}})
	}
	root, err := w.PutTree(ctx, tree)
	require.NoError(t, err)
	snap := &Snapshot{ID: id, Engine: "dir", EnvID: "env1", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: root}}}
	require.NoError(t, w.Commit(ctx, snap, nil))
}
