package core

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// TestOwnFilesLooksUpFilesByDirectory: the plan's lookups in a snapshot's
// own change index find each file with the statistics it was captured
// with, and nothing for a directory, a path the snapshot lacks, or an
// index that is not there.
func TestOwnFilesLooksUpFilesByDirectory(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "site", "pkg"), 0o755))
	writeFile(t, filepath.Join(src, "top.txt"), []byte("top\n"), 0o644, fixedTime)
	writeFile(t, filepath.Join(src, "site", "pkg", "m.py"), []byte("m\n"), 0o644, fixedTime)
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	own := m.loadOwnIndex(ctx, snap, formPrinted)
	require.NoError(t, own.err)
	files := newOwnFiles(own.dirs)
	stream := snap.Streams[0].Name

	fi, err := os.Stat(filepath.Join(src, "site", "pkg", "m.py"))
	require.NoError(t, err)
	r, ok := files.file(ctx, stream, "site/pkg/m.py")
	require.True(t, ok)
	assert.Equal(t, fi.Size(), r.Size)
	assert.Equal(t, fixedTime.UnixNano(), r.MtimeNs)
	_, ok = files.file(ctx, stream, "top.txt")
	assert.True(t, ok)
	for _, p := range []string{"site", "site/pkg", "site/pkg/gone.py", "gone/x.py"} {
		_, ok = files.file(ctx, stream, p)
		assert.False(t, ok, p)
	}
	_, ok = files.file(ctx, "other", "top.txt")
	assert.False(t, ok)
	_, ok = newOwnFiles(nil).file(ctx, stream, "top.txt")
	assert.False(t, ok)
}

// TestLoadOwnIndexManyRecords: an own index of several batches
// (ownBatch), fingerprinted or packed on loadOwnIndex's goroutine, holds
// every record the store read, once.
func TestLoadOwnIndexManyRecords(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	const dirs, perDir = 7, ownBatch / 3
	for d := range dirs {
		dir := filepath.Join(src, fmt.Sprintf("d%d", d))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for f := range perDir {
			writeFile(t, filepath.Join(dir, fmt.Sprintf("f%03d", f)), []byte{byte(f)}, 0o644, fixedTime)
		}
	}
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	want := dirs * (perDir + 1)
	require.Greater(t, want, 2*ownBatch)

	printed := m.loadOwnIndex(ctx, snap, formPrinted)
	require.NoError(t, printed.err)
	assert.True(t, printed.hasDirs())
	assert.Equal(t, want, printed.records())
	assert.Equal(t, want, printed.prints.Len())

	packed := m.loadOwnIndex(ctx, snap, formPacked)
	require.NoError(t, packed.err)
	n := 0
	for _, p := range packed.packed {
		n += p.Len()
	}
	assert.Equal(t, want, n)
}
