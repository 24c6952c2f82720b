package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWarmCacheReadsEveryKindOfEntry(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "a", "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "a", "b", "big"), make([]byte, 3<<20+17), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "empty"), nil, 0o644))
	require.NoError(t, os.Symlink("/nonexistent/target", filepath.Join(root, "dangling")))
	require.NoError(t, os.Symlink("a", filepath.Join(root, "dirlink")))
	require.NoError(t, warmCache(context.Background(), root), "symlinks are stat'ed, never followed")

	require.Error(t, warmCache(context.Background(), filepath.Join(root, "missing")))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, warmCache(ctx, root), context.Canceled)
}

// TestAfterDeletionsWaitsOnlyTheRest: a step after a deletion waits what
// is left of the pause since it, once; with nothing deleted it does not
// wait at all.
func TestAfterDeletionsWaitsOnlyTheRest(t *testing.T) {
	ctx := context.Background()
	e := &benchEnv{cfg: Config{Settle: 300 * time.Millisecond}}
	start := time.Now()
	require.NoError(t, e.afterDeletions(ctx))
	assert.Less(t, time.Since(start), e.cfg.Settle, "nothing deleted: no pause")

	e.deleted()
	deletedAt := time.Now()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, e.afterDeletions(ctx))
	assert.GreaterOrEqual(t, time.Since(deletedAt), e.cfg.Settle, "the pause counts from the deletion")
	assert.True(t, e.lastDeletion.IsZero())

	start = time.Now()
	require.NoError(t, e.afterDeletions(ctx))
	assert.Less(t, time.Since(start), e.cfg.Settle, "waited for once")
}
