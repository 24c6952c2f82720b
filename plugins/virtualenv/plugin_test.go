package virtualenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

var (
	pluginBinOnce sync.Once
	pluginBin     string
	pluginBinErr  error
)

// enginePlugin launches the engine binary as a real go-plugin subprocess:
// the one in $PTEST_SNAP_BIN when CI built it, else one built once per
// test binary.
func enginePlugin(t *testing.T) pluginapi.Engine {
	t.Helper()
	pluginBinOnce.Do(func() {
		if dir := os.Getenv("PTEST_SNAP_BIN"); dir != "" {
			p := filepath.Join(dir, pluginapi.BinaryPrefix+EngineName)
			if _, err := os.Stat(p); err == nil {
				pluginBin = p
				return
			}
		}
		dir := venvFixture(t).dir
		pluginBin = filepath.Join(dir, pluginapi.BinaryPrefix+EngineName)
		out, err := exec.Command("go", "build", "-o", pluginBin, "./cmd/ptest-snap-engine-virtualenv").CombinedOutput()
		if err != nil {
			pluginBinErr = err
			t.Logf("%s", out)
		}
	})
	require.NoError(t, pluginBinErr, "build the engine binary")
	host := pluginapi.NewHost(pluginapi.HostOptions{})
	t.Cleanup(func() { host.Close() })
	p, err := host.Launch(context.Background(), pluginapi.Spec{Name: EngineName, Path: pluginBin})
	require.NoError(t, err)
	return p
}

// TestThroughThePlugin runs capture and restore through the engine binary
// over gRPC: the same entries as in process, a working relocated venv, and
// errors that keep their identity across the boundary.
func TestThroughThePlugin(t *testing.T) {
	f := venvFixture(t)
	eng := enginePlugin(t)
	ctx := context.Background()

	info, err := eng.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, EngineName, info.Name)
	assert.True(t, info.Has(pluginapi.CapRestoreInPlace))

	_, err = eng.Identify(ctx, filepath.Join(f.dir, "src"), nil)
	require.ErrorIs(t, err, pluginapi.ErrInvalidTarget)
	assert.Contains(t, err.Error(), "pyvenv.cfg is missing")

	remote := &memCapture{}
	require.NoError(t, eng.Capture(ctx, &pluginapi.CaptureRequest{Target: f.golden, Ports: []int{9000}}, remote))
	local := capture(t, f.golden, func(r *pluginapi.CaptureRequest) { r.Ports = []int{9000} })
	assert.JSONEq(t, string(local.md.JSON), string(remote.md.JSON))
	assert.Equal(t, treeSummary(local, true), treeSummary(remote, true))

	target := filepath.Join(t.TempDir(), "via plugin")
	res, err := eng.Restore(ctx, &pluginapi.RestoreRequest{
		Target: target, Metadata: remote.md, Streams: remote.streams,
	}, &replay{c: remote})
	require.NoError(t, err)
	assert.Equal(t, target, res.Target)
	checkVenvWorks(t, f, target)

	m := remote.mustMeta(t)
	m.BaseInterpreter.Path = filepath.Join(f.dir, "gone", "python3")
	md, err := m.encode()
	require.NoError(t, err)
	_, err = eng.Restore(ctx, &pluginapi.RestoreRequest{
		Target: filepath.Join(t.TempDir(), "v"), Metadata: md, Streams: remote.streams,
	}, &replay{c: remote})
	require.ErrorIs(t, err, pluginapi.ErrUnavailable)
	assert.Contains(t, err.Error(), "is missing")
}

// TestParentXattrsThroughThePlugin: offered ParentXattrs, the engine
// binary sends the unchanged files of a second capture with
// XattrsFromParent across the gRPC boundary, and without the offer none.
func TestParentXattrsThroughThePlugin(t *testing.T) {
	f := venvFixture(t)
	eng := enginePlugin(t)
	ctx := context.Background()

	first := &memCapture{}
	require.NoError(t, eng.Capture(ctx, &pluginapi.CaptureRequest{Target: f.golden}, first))
	parent := pluginapi.ParentIndex{}
	for _, me := range first.entries {
		if me.e.Type != pluginapi.TypeFile {
			continue
		}
		if parent[me.stream] == nil {
			parent[me.stream] = map[string]pluginapi.IndexEntry{}
		}
		parent[me.stream][me.e.Path] = pluginapi.IndexEntry{Size: me.e.Size, MtimeNs: me.e.MtimeNs, CtimeNs: me.e.CtimeNs, Inode: me.e.Inode}
	}
	for _, offered := range []bool{false, true} {
		second := &memCapture{}
		require.NoError(t, eng.Capture(ctx, &pluginapi.CaptureRequest{Target: f.golden, Parent: parent, ParentXattrs: offered}, second))
		require.Len(t, second.entries, len(first.entries))
		fromParent := 0
		for _, me := range second.entries {
			if me.e.XattrsFromParent {
				fromParent++
				assert.True(t, me.e.Unchanged, me.e.Path)
				assert.Empty(t, me.e.Xattrs, me.e.Path)
			}
		}
		if offered {
			assert.Positive(t, fromParent)
		} else {
			assert.Zero(t, fromParent)
		}
	}
}

// TestParentIndexBothWireForms: the engine binary finds every file of an
// unchanged venv unchanged whether the host sends the parent index as
// entries (before it asked Info, as an older host does) or packed (after
// Info said the engine decodes it, as a create does).
func TestParentIndexBothWireForms(t *testing.T) {
	f := venvFixture(t)
	eng := enginePlugin(t)
	ctx := context.Background()

	first := &memCapture{}
	require.NoError(t, eng.Capture(ctx, &pluginapi.CaptureRequest{Target: f.golden}, first))
	parent := pluginapi.ParentIndex{}
	files := 0
	for _, me := range first.entries {
		if me.e.Type != pluginapi.TypeFile {
			continue
		}
		files++
		if parent[me.stream] == nil {
			parent[me.stream] = map[string]pluginapi.IndexEntry{}
		}
		parent[me.stream][me.e.Path] = pluginapi.IndexEntry{Size: me.e.Size, MtimeNs: me.e.MtimeNs, CtimeNs: me.e.CtimeNs, Inode: me.e.Inode}
	}
	require.Positive(t, files)
	for _, form := range []string{"entries", "packed"} {
		if form == "packed" {
			_, err := eng.Info(ctx)
			require.NoError(t, err)
		}
		second := &memCapture{}
		require.NoError(t, eng.Capture(ctx, &pluginapi.CaptureRequest{Target: f.golden, Parent: parent}, second))
		unchanged := 0
		for _, me := range second.entries {
			if me.e.Unchanged {
				unchanged++
			}
		}
		assert.Equal(t, files, unchanged, form)
	}
}

// TestUnchangedDirsThroughThePlugin: offered UnchangedDirs and given the
// parent's directories and symlinks (which cross the wire packed), the
// engine binary sends an unchanged venv as its top directories alone,
// counting what lies beneath them; without the offer it sends every entry.
func TestUnchangedDirsThroughThePlugin(t *testing.T) {
	f := venvFixture(t)
	eng := enginePlugin(t)
	ctx := context.Background()
	_, err := eng.Info(ctx) // the host asks before a capture: packed index
	require.NoError(t, err)

	first := &memCapture{}
	require.NoError(t, eng.Capture(ctx, &pluginapi.CaptureRequest{Target: f.golden}, first))
	parent := pluginapi.ParentIndex{}
	var files, dirs int64
	for _, me := range first.entries {
		if parent[me.stream] == nil {
			parent[me.stream] = map[string]pluginapi.IndexEntry{}
		}
		e := me.e
		switch e.Type {
		case pluginapi.TypeFile:
			parent[me.stream][e.Path] = pluginapi.IndexEntry{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
			files++
		case pluginapi.TypeDir:
			parent[me.stream][e.Path] = pluginapi.IndexEntry{Type: e.Type, CtimeNs: e.CtimeNs, Inode: e.Inode}
			dirs++
		case pluginapi.TypeSymlink:
			parent[me.stream][e.Path] = pluginapi.IndexEntry{Type: e.Type, CtimeNs: e.CtimeNs, Inode: e.Inode}
			files++
		}
	}
	for _, offered := range []bool{true, false} {
		second := &memCapture{}
		require.NoError(t, eng.Capture(ctx, &pluginapi.CaptureRequest{Target: f.golden, Parent: parent, UnchangedDirs: offered}, second))
		var gotFiles, gotDirs int64
		for _, me := range second.entries {
			switch {
			case me.e.Type == pluginapi.TypeDir && me.e.Unchanged:
				gotDirs += 1 + me.e.SubtreeDirs
				gotFiles += me.e.SubtreeFiles
			case me.e.Type == pluginapi.TypeDir:
				gotDirs++
			default:
				gotFiles++
			}
		}
		assert.Equal(t, []int64{files, dirs}, []int64{gotFiles, gotDirs}, "offered %v", offered)
		if offered {
			assert.Less(t, len(second.entries), len(first.entries)/10, "whole directories instead of their entries")
		} else {
			assert.Len(t, second.entries, len(first.entries))
		}
	}
}
