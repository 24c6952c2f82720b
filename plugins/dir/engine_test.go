package dir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// captured is a capture kept in memory, as the host would hand it back.
type captured struct {
	meta    pluginapi.Metadata
	streams []string
	entries []pluginapi.Entry
	bodies  [][]byte // nil when the entry had no body
}

func (c *captured) WriteMetadata(_ context.Context, m pluginapi.Metadata) error {
	c.meta = m
	return nil
}

func (c *captured) BeginStream(_ context.Context, name string) error {
	c.streams = append(c.streams, name)
	return nil
}

func (c *captured) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = io.ReadAll(body); err != nil {
			return err
		}
		if b == nil {
			b = []byte{}
		}
	}
	c.entries = append(c.entries, *e)
	c.bodies = append(c.bodies, b)
	return nil
}

// reader replays a capture as a RestoreReader. With failAt > 0 it fails
// instead of yielding entry failAt, as the core's reader does on a
// damaged chunk.
type reader struct {
	c      *captured
	i      int
	failAt int
	onNext func(i int) // called before entry i is yielded
}

var errDamaged = errors.New("chunk checksum mismatch (test)")

func (r *reader) Next(context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if r.failAt > 0 && r.i == r.failAt {
		return "", nil, nil, errDamaged
	}
	if r.onNext != nil {
		r.onNext(r.i)
	}
	if r.i >= len(r.c.entries) {
		return "", nil, nil, io.EOF
	}
	i := r.i
	r.i++
	var body io.Reader
	if r.c.bodies[i] != nil {
		body = bytes.NewReader(r.c.bodies[i])
	}
	e := r.c.entries[i]
	return Stream, &e, body, nil
}

func fixture(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "fixture")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "data/empty"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "data/table.db"), bytes.Repeat([]byte("row\n"), 1000), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(root, "README"), []byte("fixture\n"), 0o644))
	require.NoError(t, os.Symlink("data/table.db", filepath.Join(root, "current")))
	return root
}

func captureDir(t *testing.T, req *pluginapi.CaptureRequest) *captured {
	t.Helper()
	c := &captured{}
	require.NoError(t, New().Capture(context.Background(), req, c))
	return c
}

func TestInfo(t *testing.T) {
	info, err := New().Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "dir", info.Name)
	assert.Equal(t, pluginapi.ProtocolVersion, info.ProtocolVersion)
	for _, c := range []pluginapi.Capability{pluginapi.CapRestoreInPlace, pluginapi.CapRestoreNewTarget, pluginapi.CapParentIndex, pluginapi.CapIndexOnly} {
		assert.True(t, info.Has(c), c)
	}
}

func TestIdentify(t *testing.T) {
	root := fixture(t)
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(root, link))
	realRoot, err := filepath.EvalSymlinks(root)
	require.NoError(t, err)

	tests := []struct {
		name    string
		target  string
		wantErr error
	}{
		{"directory", root, nil},
		{"through a symlink", link, nil},
		{"with dot elements", root + "/data/..", nil},
		{"missing", filepath.Join(root, "nope"), pluginapi.ErrTargetNotFound},
		{"a file", filepath.Join(root, "README"), pluginapi.ErrInvalidTarget},
		{"empty", "", pluginapi.ErrInvalidTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := New().Identify(context.Background(), tt.target, nil)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, realRoot, id.EnvID)
			assert.Equal(t, realRoot, id.Target)
		})
	}
}

func TestCaptureRestore(t *testing.T) {
	root := fixture(t)
	c := captureDir(t, &pluginapi.CaptureRequest{Target: root})
	assert.Equal(t, []string{Stream}, c.streams)
	assert.Equal(t, MetadataVersion, c.meta.Version)
	var m Metadata
	require.NoError(t, json.Unmarshal(c.meta.JSON, &m))
	realRoot, _ := filepath.EvalSymlinks(root)
	assert.Equal(t, realRoot, m.Path)
	var paths []string
	for _, e := range c.entries {
		paths = append(paths, e.Path)
	}
	assert.Equal(t, []string{"README", "current", "data", "data/empty", "data/table.db"}, paths)

	// To a new path.
	target := filepath.Join(t.TempDir(), "copy")
	res, err := New().Restore(context.Background(), &pluginapi.RestoreRequest{Target: target, Metadata: c.meta, Streams: []string{Stream}}, &reader{c: c})
	require.NoError(t, err)
	assert.Equal(t, target, res.Target)
	again := captureDir(t, &pluginapi.CaptureRequest{Target: target})
	assert.Equal(t, strip(c.entries), strip(again.entries))
	assert.Equal(t, c.bodies, again.bodies)

	// Not over a non-empty directory without in-place.
	_, err = New().Restore(context.Background(), &pluginapi.RestoreRequest{Target: target, Metadata: c.meta}, &reader{c: c})
	assert.ErrorIs(t, err, pluginapi.ErrTargetExists)

	// In place at the captured path (empty Target): undo a test run.
	require.NoError(t, os.WriteFile(filepath.Join(root, "data/table.db"), []byte("corrupted"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(root, "data/extra.log"), []byte("log"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(root, "README")))
	res, err = New().Restore(context.Background(), &pluginapi.RestoreRequest{InPlace: true, Metadata: c.meta}, &reader{c: c})
	require.NoError(t, err)
	assert.Equal(t, realRoot, res.Target)
	again = captureDir(t, &pluginapi.CaptureRequest{Target: root})
	assert.Equal(t, strip(c.entries), strip(again.entries))
	assert.Equal(t, c.bodies, again.bodies)
}

func TestCaptureIncrementalAndExcludes(t *testing.T) {
	root := fixture(t)
	first := captureDir(t, &pluginapi.CaptureRequest{Target: root, Excludes: []string{"README"}})
	parent := pluginapi.ParentIndex{Stream: {}}
	for _, e := range first.entries {
		assert.NotEqual(t, "README", e.Path)
		parent[Stream][e.Path] = pluginapi.IndexEntry{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
	}
	second := captureDir(t, &pluginapi.CaptureRequest{Target: root, Parent: parent})
	for i, e := range second.entries {
		if e.Path == "data/table.db" {
			assert.True(t, e.Unchanged)
			assert.Nil(t, second.bodies[i])
		}
	}
	index := captureDir(t, &pluginapi.CaptureRequest{Target: root, IndexOnly: true})
	for i := range index.entries {
		assert.Nil(t, index.bodies[i])
	}
}

// TestRestoreFailingMidwayLeavesNoTarget: a restore to a new path whose
// reader fails after some entries are written, or whose context ends,
// removes the target (and a parent it created); a target directory that
// existed empty is left empty.
func TestRestoreFailingMidwayLeavesNoTarget(t *testing.T) {
	root := fixture(t)
	for i := range 40 {
		require.NoError(t, os.WriteFile(filepath.Join(root, "data", fmt.Sprintf("f%02d", i)), bytes.Repeat([]byte{byte(i)}, 100+i), 0o644))
	}
	c := captureDir(t, &pluginapi.CaptureRequest{Target: root})
	half := len(c.entries) / 2

	restore := func(target string, cancelled bool) error {
		ctx := context.Background()
		r := &reader{c: c, failAt: half}
		if cancelled {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			r.failAt = 0
			r.onNext = func(i int) {
				if i == half {
					cancel()
				}
			}
		}
		_, err := New().Restore(ctx, &pluginapi.RestoreRequest{Target: target, Metadata: c.meta, Streams: []string{Stream}}, r)
		return err
	}
	for _, cancelled := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancelled=%v", cancelled), func(t *testing.T) {
			base := t.TempDir()
			err := restore(filepath.Join(base, "new", "copy"), cancelled)
			if cancelled {
				require.ErrorIs(t, err, context.Canceled)
			} else {
				require.ErrorIs(t, err, errDamaged)
			}
			assert.NoDirExists(t, filepath.Join(base, "new"))

			empty := t.TempDir()
			require.Error(t, restore(empty, cancelled))
			names, err := os.ReadDir(empty)
			require.NoError(t, err)
			assert.Empty(t, names)
		})
	}
}

func strip(es []pluginapi.Entry) []pluginapi.Entry {
	out := make([]pluginapi.Entry, len(es))
	for i, e := range es {
		e.CtimeNs, e.Inode = 0, 0
		out[i] = e
	}
	return out
}
