package core

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

func storedBytes(t *testing.T, m *Manager) int64 {
	t.Helper()
	u, err := m.Store().Usage(context.Background())
	require.NoError(t, err)
	return u.StoredBytes
}

func snapshotIDs(t *testing.T, m *Manager) []string {
	t.Helper()
	all, err := m.Store().Snapshots(context.Background())
	require.NoError(t, err)
	var ids []string
	for _, s := range all {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestQuotaStoreBytesDuringCreate: a create that would take the store past
// MaxStoreBytes fails as its chunks are stored, with nothing visible, and a
// create within the limit works afterwards (real Badger, the dir engine).
func TestQuotaStoreBytesDuringCreate(t *testing.T) {
	ctx := context.Background()
	engines := map[string]pluginapi.Engine{"dir": newDirEngine()}
	storeDir := t.TempDir()
	m := openManagerAt(t, storeDir, engines)
	root := t.TempDir()
	small, big, later := filepath.Join(root, "small"), filepath.Join(root, "big"), filepath.Join(root, "later")
	writeFile(t, filepath.Join(small, "a"), randBytes(200<<10), 0o644, fixedTime)
	for _, n := range []string{"1", "2", "3", "4", "5", "6"} {
		// Incompressible and above the pack size limit (256 KiB): stored
		// alone, so each chunk counts in the writer's StoredBytes as it
		// is stored.
		writeFile(t, filepath.Join(big, n), randBytes(256<<10+1), 0o644, fixedTime)
	}
	writeFile(t, filepath.Join(later, "a"), randBytes(100<<10), 0o644, fixedTime)

	first, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: small})
	require.NoError(t, err)
	before := storedBytes(t, m)
	limit := before + 512<<10 // the big tree adds 1.5 MiB
	m.opts.MaxStoreBytes = limit

	_, err = m.Create(ctx, CreateOptions{Engine: "dir", Target: big})
	require.ErrorIs(t, err, ErrQuotaExceeded)
	var qe *QuotaError
	require.ErrorAs(t, err, &qe)
	assert.Equal(t, QuotaStoreBytes, qe.Limit)
	assert.Equal(t, limit, qe.Max)
	assert.Equal(t, before, qe.Current)
	assert.Positive(t, qe.Over)
	assert.Equal(t, qe.After-limit, qe.Over)
	assert.Equal(t, qe.Current+qe.Added, qe.After)
	assert.False(t, qe.Estimated)
	assert.Contains(t, err.Error(), "over the limit of")
	t.Log(err)
	assert.Contains(t, err.Error(), "next gc reclaims")
	assert.Equal(t, []string{first.ID}, snapshotIDs(t, m), "nothing visible")

	// The aborted create's chunks go at the next gc (reopening first: the
	// store may still be writing chunks queued before the abort); then a
	// create within the limit works.
	require.NoError(t, m.Close())
	m = openManagerAt(t, storeDir, engines)
	m.opts.MaxStoreBytes = limit
	_, err = m.GC(ctx)
	require.NoError(t, err)
	require.Equal(t, before, storedBytes(t, m))
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: later})
	require.NoError(t, err)
	assert.LessOrEqual(t, storedBytes(t, m), limit)
	assert.ElementsMatch(t, []string{first.ID, snap.ID}, snapshotIDs(t, m))
}

// TestQuotaStoreBytesEstimate: a create whose parent grew the store by more
// than the room left is refused before anything is written.
func TestQuotaStoreBytesEstimate(t *testing.T) {
	ctx := context.Background()
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	env := t.TempDir()
	writeFile(t, filepath.Join(env, "a"), randBytes(100<<10), 0o644, fixedTime)
	_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: env})
	require.NoError(t, err)
	writeFile(t, filepath.Join(env, "b"), randBytes(400<<10), 0o644, fixedTime)
	second, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: env})
	require.NoError(t, err)
	require.NotEmpty(t, second.Parent)
	before := storedBytes(t, m)
	m.opts.MaxStoreBytes = before + second.Stats.StoredBytes/2

	_, err = m.Create(ctx, CreateOptions{Engine: "dir", Target: env})
	require.ErrorIs(t, err, ErrQuotaExceeded)
	var qe *QuotaError
	require.ErrorAs(t, err, &qe)
	assert.True(t, qe.Estimated)
	assert.Equal(t, second.Stats.StoredBytes, qe.Added)
	assert.Equal(t, qe.After-qe.Max, qe.Over)
	t.Log(err)
	assert.Contains(t, err.Error(), "estimated to add")
	assert.Equal(t, before, storedBytes(t, m), "nothing written")
	assert.Len(t, snapshotIDs(t, m), 2)
}
