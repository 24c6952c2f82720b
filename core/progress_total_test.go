package core

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// TestCreateProgressTotalFromParent: a create with a parent reports the
// parent's size as its total (an estimate, never below what is done, exact
// on the last report); without a parent the total is unknown.
func TestCreateProgressTotalFromParent(t *testing.T) {
	ctx := context.Background()
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	env := t.TempDir()
	writeFile(t, filepath.Join(env, "a"), randBytes(300<<10), 0o644, fixedTime)
	writeFile(t, filepath.Join(env, "sub", "b"), randBytes(100<<10), 0o644, fixedTime)

	var reports []Progress
	record := func(p Progress) { reports = append(reports, p) }
	first, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: env, Progress: record})
	require.NoError(t, err)
	require.NotEmpty(t, reports)
	for _, p := range reports {
		assert.Zero(t, p.TotalBytes, "no parent: total unknown")
		assert.Zero(t, p.TotalFiles)
	}

	// The environment grows past the parent's size.
	writeFile(t, filepath.Join(env, "c"), randBytes(50<<10), 0o644, fixedTime)
	reports = nil
	second, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: env, Progress: record})
	require.NoError(t, err)
	require.Equal(t, first.ID, second.Parent)
	require.NotEmpty(t, reports)
	for _, p := range reports {
		assert.GreaterOrEqual(t, p.TotalBytes, first.Stats.LogicalBytes, "at least the parent's size")
		assert.GreaterOrEqual(t, p.TotalBytes, p.Bytes)
		assert.GreaterOrEqual(t, p.TotalFiles, p.Files)
	}
	last := reports[len(reports)-1]
	require.True(t, last.Done)
	assert.Equal(t, second.Stats.LogicalBytes, last.TotalBytes)
	assert.Equal(t, second.Stats.LogicalBytes, last.Bytes)
	assert.Equal(t, second.Stats.Files+second.Stats.Dirs, last.TotalFiles)
}

// TestExportProgressTotal: export's progress carries a total estimated
// from the records: a snapshot whose parent is exported too counts only
// what it added.
func TestExportProgressTotal(t *testing.T) {
	ctx := context.Background()
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	env := t.TempDir()
	writeFile(t, filepath.Join(env, "a"), randBytes(200<<10), 0o644, fixedTime)
	first, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: env})
	require.NoError(t, err)
	writeFile(t, filepath.Join(env, "b"), randBytes(100<<10), 0o644, fixedTime)
	second, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: env})
	require.NoError(t, err)
	require.Equal(t, first.ID, second.Parent)

	for _, tc := range []struct {
		refs []string
		want int64
	}{
		{[]string{second.ID}, second.Stats.LogicalBytes},
		{[]string{first.ID, second.ID}, first.Stats.LogicalBytes + second.Stats.NewBytes},
	} {
		var last ExportProgress
		rep, err := m.Export(ctx, tc.refs, io.Discard, func(p ExportProgress) { last = p })
		require.NoError(t, err)
		assert.Equal(t, tc.want, last.TotalBytes, tc.refs)
		// The estimate leaves out trees and framing only.
		assert.InDelta(t, float64(rep.Bytes), float64(last.TotalBytes), float64(rep.Bytes)/20, tc.refs)
	}
}
