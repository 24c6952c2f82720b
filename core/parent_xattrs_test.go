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

// hookEngine lets a test see, or tamper with, every entry an engine's
// capture sends.
type hookEngine struct {
	pluginapi.Engine
	hook func(e *pluginapi.Entry)
}

func (h *hookEngine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	return h.Engine.Capture(ctx, req, &hookWriter{CaptureWriter: w, hook: h.hook})
}

type hookWriter struct {
	pluginapi.CaptureWriter
	hook func(e *pluginapi.Entry)
}

func (w *hookWriter) WriteEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	w.hook(e)
	return w.CaptureWriter.WriteEntry(ctx, e, body)
}

// TestCreateTakesUnchangedXattrsFromParent: the engine skips the xattrs of
// unchanged files (CaptureRequest.ParentXattrs) and the snapshot still
// holds them, the same trees as a capture without a parent.
func TestCreateTakesUnchangedXattrsFromParent(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	var fromParent, withXattrs int
	eng := &hookEngine{Engine: newDirEngine(), hook: func(e *pluginapi.Entry) {
		if e.XattrsFromParent {
			fromParent++
		}
		if len(e.Xattrs) > 0 {
			withXattrs++
		}
	}}
	m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
	s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	assert.Zero(t, fromParent, "no parent, nothing to take from it")
	hadXattrs := withXattrs

	fromParent, withXattrs = 0, 0
	s2, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	require.Equal(t, s1.ID, s2.Parent)
	assert.Positive(t, fromParent, "unchanged files take their xattrs from the parent")
	assert.Zero(t, withXattrs, "and none is read")
	assert.Equal(t, s1.Streams, s2.Streams, "the same trees, xattrs included")

	s3, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Parent: ParentNone})
	require.NoError(t, err)
	assert.Equal(t, s1.Streams, s3.Streams)
	if hadXattrs > 0 {
		dst := filepath.Join(t.TempDir(), "dst")
		_, err = m.Restore(ctx, RestoreOptions{Ref: s2.ID, Target: dst})
		require.NoError(t, err)
		requireSameTree(t, src, dst)
	}
}

// TestCreateRefusesXattrsFromParentOnOtherEntries: only an unchanged file
// without xattrs of its own may take the parent's.
func TestCreateRefusesXattrsFromParentOnOtherEntries(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	for name, tamper := range map[string]func(e *pluginapi.Entry){
		"directory": func(e *pluginapi.Entry) {
			if e.Type == pluginapi.TypeDir {
				e.XattrsFromParent = true
			}
		},
		"changed file": func(e *pluginapi.Entry) {
			if e.Type == pluginapi.TypeFile && !e.Unchanged {
				e.XattrsFromParent = true
			}
		},
		"with xattrs": func(e *pluginapi.Entry) {
			if e.XattrsFromParent {
				e.Xattrs = map[string][]byte{"user.x": []byte("1")}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			var tampering bool
			eng := &hookEngine{Engine: newDirEngine(), hook: func(e *pluginapi.Entry) {
				if tampering {
					tamper(e)
				}
			}}
			m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
			_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
			require.NoError(t, err)
			tampering = true
			if name == "changed file" {
				writeFile(t, filepath.Join(src, "a.txt"), []byte("changed "+name+"\n"), 0o644, fixedTime)
			}
			_, err = m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
			require.ErrorIs(t, err, ErrEngine)
		})
	}
}
