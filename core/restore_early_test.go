package core

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// readerGoroutines waits (yielding, not sleeping) for the goroutines of
// restore readers (producer, chunk workers, tree walk, drain) to end, and
// returns how many are still there.
func readerGoroutines() int {
	count := func() int {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		n := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "core.(*restoreReader)") || strings.Contains(g, "core.(*chunkReader)") || strings.Contains(g, "core.newChunkReader") {
				n++
			}
		}
		return n
	}
	n := count()
	for i := 0; i < 1000 && n > 0; i++ {
		runtime.Gosched()
		n = count()
	}
	return n
}

// A restore to a new target starts reading the snapshot before the engine
// is there. When the engine then cannot be had, or refuses the target, the
// restore fails as before and leaves no reader behind; the next restore
// is whole.
func TestRestoreReadAheadOfEngineIsReleased(t *testing.T) {
	ctx := context.Background()
	engines, m, src := earlyRestoreFixture(t)

	nonEmpty := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644))
	_, err := m.Restore(ctx, RestoreOptions{Ref: "s", Target: nonEmpty})
	require.ErrorIs(t, err, ErrTargetNotEmpty)
	assert.Zero(t, readerGoroutines(), "the refused restore's reader is stopped")

	delete(engines, "dir")
	_, err = m.Restore(ctx, RestoreOptions{Ref: "s", Target: filepath.Join(t.TempDir(), "none")})
	require.ErrorIs(t, err, ErrEngineNotFound)
	assert.Zero(t, readerGoroutines(), "no reader left when the engine is missing")

	engines["dir"] = newDirEngine()
	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: "s", Target: dst})
	require.NoError(t, err)
	for i := range 300 {
		p := fmt.Sprintf("d%02d/f%03d", i%17, i)
		want, err := os.ReadFile(filepath.Join(src, p))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(dst, p))
		require.NoError(t, err)
		require.Equal(t, want, got, p)
	}
	assert.Zero(t, readerGoroutines())
}

// An in-place restore reads the snapshot's trees before the engine is
// there. When the engine cannot be had the restore fails as before and
// leaves no tree reader behind; the next in-place restore is whole.
func TestRestoreInPlaceTreesAheadOfEngineAreReleased(t *testing.T) {
	ctx := context.Background()
	engines, m, src := earlyRestoreFixture(t)
	ref := snapTree(t, m, "s")

	treeReaders := func() int {
		buf := make([]byte, 1<<20)
		n := 0
		for i := 0; i < 1000; i++ {
			n = strings.Count(string(buf[:runtime.Stack(buf, true)]), "core.(*Manager).loadTrees")
			if n == 0 {
				break
			}
			runtime.Gosched()
		}
		return n
	}
	delete(engines, "dir")
	_, err := m.Restore(ctx, RestoreOptions{Ref: "s", InPlace: true})
	require.ErrorIs(t, err, ErrEngineNotFound)
	assert.Zero(t, treeReaders(), "no tree reader left when the engine is missing")

	engines["dir"] = newDirEngine()
	require.NoError(t, os.RemoveAll(filepath.Join(src, "d03")))
	writeFile(t, filepath.Join(src, "d04", "f004"), []byte("changed"), 0o644, fixedTime)
	_, err = m.Restore(ctx, RestoreOptions{Ref: "s", InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, ref, src)
	assert.Zero(t, treeReaders())
}

// earlyRestoreFixture is a Manager whose engines a test may take away, and
// snapshot "s" of a tree of 300 files in 17 directories (src).
func earlyRestoreFixture(t *testing.T) (engines map[string]pluginapi.Engine, m *Manager, src string) {
	t.Helper()
	engines = map[string]pluginapi.Engine{"dir": newDirEngine()}
	m = openManager(t, engines)
	src = filepath.Join(t.TempDir(), "src")
	for i := range 300 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%02d/f%03d", i%17, i)), randBytes(1+i*97), 0o644, fixedTime)
	}
	_, err := m.Create(context.Background(), CreateOptions{Engine: "dir", Target: src, Name: "s"})
	require.NoError(t, err)
	return engines, m, src
}
