package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

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
