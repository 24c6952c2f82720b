package core

import (
	"context"
	"encoding/json"
	"flag"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/store"
)

// lcOpen opens a Manager on a fresh Badger store in a temp dir, with a
// fixed clock, for the lifecycle tests. Engines are not needed: lcWrite
// writes snapshots straight through store.Writer.
func lcOpen(t testing.TB, mod ...func(*Options)) *Manager {
	t.Helper()
	return lcOpenAt(t, t.TempDir(), mod...)
}

func lcOpenAt(t testing.TB, dir string, mod ...func(*Options)) *Manager {
	t.Helper()
	opts := Options{StoreDir: dir, Clock: func() time.Time { return retentionClock }}
	for _, f := range mod {
		f(&opts)
	}
	m, err := Open(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		m.CloseEvents()
		_ = m.Close()
	})
	return m
}

// lcSnap describes a snapshot to write. Files maps a slash path to its
// content; a path ending in "/" is an empty directory; content starting
// with "->" makes a symlink to the rest, "=>" a hard link to the path that
// follows.
type lcSnap struct {
	ID, Name, Engine, EnvID string
	Parent                  string
	Created                 time.Time
	Labels                  map[string]string
	Metadata                any
	Streams                 map[string]map[string]string
	Modes                   map[string]uint32 // path → mode, default 0644 / 0755
}

// lcWrite writes s through a store.Writer and commits it.
func lcWrite(t testing.TB, m *Manager, s lcSnap) *store.Snapshot {
	t.Helper()
	ctx := context.Background()
	w, err := m.Store().NewWriter(ctx)
	require.NoError(t, err)
	rec := &store.Snapshot{
		ID: s.ID, Name: s.Name, Labels: s.Labels, Engine: s.Engine, EnvID: s.EnvID,
		CreatedAt: s.Created, Target: "/envs/" + s.EnvID, Parent: s.Parent,
	}
	if rec.Engine == "" {
		rec.Engine = "dir"
	}
	if rec.EnvID == "" {
		rec.EnvID = "env1"
	}
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = retentionClock
	}
	if rec.ID == "" {
		rec.ID = NewID(rec.CreatedAt)
	}
	if s.Metadata != nil {
		b, err := json.Marshal(s.Metadata)
		require.NoError(t, err)
		rec.Metadata, rec.MetadataVersion = b, 1
	}
	names := make([]string, 0, len(s.Streams))
	for n := range s.Streams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		root, files, bytes := lcPutDir(t, w, "", s.Streams[n], s.Modes)
		rec.Streams = append(rec.Streams, store.Stream{Name: n, Root: root})
		rec.Stats.Files += files
		rec.Stats.LogicalBytes += bytes
	}
	require.NoError(t, w.Commit(ctx, rec, nil))
	return rec
}

// lcPutDir stores the directory at prefix ("" is the root) of files and
// returns its tree hash, file count and bytes.
func lcPutDir(t testing.TB, w *store.Writer, prefix string, files map[string]string, modes map[string]uint32) (store.Hash, int64, int64) {
	t.Helper()
	ctx := context.Background()
	children := map[string]bool{}
	for p := range files {
		if !strings.HasPrefix(p, prefix) || p == prefix {
			continue
		}
		rest := strings.TrimPrefix(p, prefix)
		name, _, isDir := strings.Cut(rest, "/")
		children[name] = children[name] || isDir
	}
	names := make([]string, 0, len(children))
	for n := range children {
		names = append(names, n)
	}
	sort.Strings(names)
	var tree store.Tree
	var nfiles, nbytes int64
	for _, name := range names {
		p := prefix + name
		node := store.Node{Name: name, MtimeNs: 1_700_000_000_000_000_000}
		if children[name] {
			sub, f, b := lcPutDir(t, w, p+"/", files, modes)
			node.Type, node.Mode, node.Subtree = store.NodeDir, 0o755, sub
			nfiles += f
			nbytes += b
		} else {
			content := files[p]
			switch {
			case strings.HasPrefix(content, "->"):
				node.Type, node.Mode, node.LinkTarget = store.NodeSymlink, 0o777, content[2:]
			case strings.HasPrefix(content, "=>"):
				node.Type, node.Mode, node.LinkTarget = store.NodeHardlink, 0o644, content[2:]
			default:
				node.Type, node.Mode, node.Size = store.NodeFile, 0o644, int64(len(content))
				if content != "" {
					h, err := w.PutChunk(ctx, []byte(content))
					require.NoError(t, err)
					node.Content = []store.Hash{h}
				}
				nfiles++
				nbytes += int64(len(content))
			}
		}
		if mode, ok := modes[p]; ok {
			node.Mode = mode
		}
		tree.Nodes = append(tree.Nodes, node)
	}
	h, err := w.PutTree(ctx, &tree)
	require.NoError(t, err)
	return h, nfiles, nbytes
}

// lcFiles is a small file set for tests.
func lcFiles(kv ...string) map[string]map[string]string {
	f := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = kv[i+1]
	}
	return map[string]map[string]string{"rootfs": f}
}

// sumOf is the hash of a string's bytes.
func sumOf(s string) store.Hash { return store.SumChunk([]byte(s)) }

// updateTestdata regenerates the committed testdata (hostile archives,
// format samples): go test ./core -run 'Hostile|Format' -update
var updateTestdata = flag.Bool("update", false, "rewrite core/testdata from the current code")
