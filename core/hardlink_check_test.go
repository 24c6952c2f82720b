package core

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// scriptEngine is the dir engine whose Capture sends the given entries
// instead of a directory's: files get a body of their path's bytes.
type scriptEngine struct {
	pluginapi.Engine
	entries []pluginapi.Entry
}

func (e *scriptEngine) Capture(ctx context.Context, _ *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if err := w.WriteMetadata(ctx, pluginapi.Metadata{Version: 1, JSON: []byte(`{}`)}); err != nil {
		return err
	}
	if err := w.BeginStream(ctx, "rootfs"); err != nil {
		return err
	}
	for _, en := range e.entries {
		var body *strings.Reader
		if en.Type == pluginapi.TypeFile {
			en.Size = int64(len(en.Path))
			body = strings.NewReader(en.Path)
		}
		if body == nil {
			if err := w.WriteEntry(ctx, &en, nil); err != nil {
				return err
			}
			continue
		}
		if err := w.WriteEntry(ctx, &en, body); err != nil {
			return err
		}
	}
	return nil
}

// TestCreateChecksHardLinkTargets: a hard link must name a regular file of
// its stream sent before it, wherever it lies (in a directory the capture
// has left, in an open one); anything else fails the create naming it.
func TestCreateChecksHardLinkTargets(t *testing.T) {
	dirE := func(p string) pluginapi.Entry { return pluginapi.Entry{Path: p, Type: pluginapi.TypeDir, Mode: 0o755} }
	file := func(p string) pluginapi.Entry { return pluginapi.Entry{Path: p, Type: pluginapi.TypeFile, Mode: 0o644} }
	link := func(p, target string) pluginapi.Entry {
		return pluginapi.Entry{Path: p, Type: pluginapi.TypeHardlink, Mode: 0o644, LinkTarget: target}
	}
	tree := []pluginapi.Entry{
		dirE("a"), dirE("a/b"), file("a/b/g"), file("a/b/h.py"), file("a/f"),
		file("a/z"), dirE("a.b"), file("a.b/x"), dirE("c"),
	}
	withLinks := func(links ...pluginapi.Entry) []pluginapi.Entry {
		return append(append([]pluginapi.Entry(nil), tree...), links...)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		entries []pluginapi.Entry
		bad     string // the target refused; empty: the create succeeds
		at      string // the refused link's own path
	}{
		{"to files in closed and open directories", withLinks(link("c/1", "a/b/g"), link("c/2", "a.b/x"), link("c/3", "a/f"), link("c/4", "a/z")), "", ""},
		{"to a file sent in the same directory", append(append([]pluginapi.Entry(nil), tree[:4]...), link("a/b/l", "a/b/g")), "", ""},
		{"to a path never sent", withLinks(link("c/1", "a/b/nope")), `"a/b/nope"`, "c/1"},
		{"to a directory", withLinks(link("c/1", "a/b")), `"a/b"`, "c/1"},
		{"to a hard link", withLinks(link("c/1", "a/f"), link("c/2", "c/1")), `"c/1"`, "c/2"},
		{"to a later file", []pluginapi.Entry{dirE("a"), link("a/l", "a/m"), file("a/m")}, `"a/m"`, "a/l"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := openManager(t, map[string]pluginapi.Engine{"s": &scriptEngine{Engine: newDirEngine(), entries: tc.entries}})
			snap, err := m.Create(ctx, CreateOptions{Engine: "s", Target: t.TempDir()})
			if tc.bad == "" {
				require.NoError(t, err)
				var links int
				for _, e := range tc.entries {
					if e.Type == pluginapi.TypeHardlink {
						links++
					}
				}
				got := countNodes(t, m, snap.Streams[0].Root, store.NodeHardlink)
				require.Equal(t, links, got)
				return
			}
			require.ErrorIs(t, err, ErrEngine)
			require.Contains(t, err.Error(), "hard link to "+tc.bad)
			require.Contains(t, err.Error(), fmt.Sprintf("entry %q", tc.at), "the refused link's own path")
		})
	}
}

// countNodes counts the nodes of type typ in the tree h and beneath it.
func countNodes(t *testing.T, m *Manager, h store.Hash, typ store.NodeType) int {
	t.Helper()
	tr, err := m.Store().GetTree(context.Background(), h)
	require.NoError(t, err)
	n := 0
	for _, nd := range tr.Nodes {
		if nd.Type == typ {
			n++
		}
		if nd.Type == store.NodeDir {
			n += countNodes(t, m, nd.Subtree, typ)
		}
	}
	return n
}
