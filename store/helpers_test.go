package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(context.Background(), Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testFiles makes n pseudo-random compressible files keyed by name.
func testFiles(seed uint64, n, size int) map[string][]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"import", "def", "return", "self", "class", "None", "if", "else", "for", "in", "print", "value", "module", "package"}
	files := map[string][]byte{}
	for i := 0; i < n; i++ {
		var b []byte
		for len(b) < size {
			b = append(b, words[r.IntN(len(words))]...)
			b = append(b, ' ')
			if r.IntN(8) == 0 {
				b = fmt.Appendf(b, "%d\n", r.IntN(1000))
			}
		}
		files[fmt.Sprintf("f%04d.py", i)] = b[:size]
	}
	return files
}

// writeSnapshot stores files as one directory (plus a subdirectory holding
// the same files again, so trees are shared) and commits a snapshot.
func writeSnapshot(t testing.TB, s *Store, id string, files map[string][]byte) *Snapshot {
	t.Helper()
	ctx := context.Background()
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	snap, err := writeSnapshotWith(ctx, w, id, files)
	require.NoError(t, err)
	return snap
}

func writeSnapshotWith(ctx context.Context, w *Writer, id string, files map[string][]byte) (*Snapshot, error) {
	sub := &Tree{}
	names := sortedKeys(files)
	for _, name := range names {
		n := Node{Name: name, Type: NodeFile, Mode: 0o644, MtimeNs: 1, Size: int64(len(files[name]))}
		c := NewChunker(bytes.NewReader(files[name]))
		for {
			chunk, err := c.Next()
			if err != nil {
				break
			}
			h, err := w.PutChunk(ctx, chunk)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, h)
		}
		sub.Nodes = append(sub.Nodes, n)
	}
	subH, err := w.PutTree(ctx, sub)
	if err != nil {
		return nil, err
	}
	root := &Tree{Nodes: append([]Node{{Name: "a-sub", Type: NodeDir, Mode: 0o755, Subtree: subH}}, sub.Nodes...)}
	rootH, err := w.PutTree(ctx, root)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{ID: id, Engine: "dir", EnvID: "env1", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: rootH}}}
	idx := ChangeIndex{"rootfs": {}}
	for _, name := range names {
		idx["rootfs"][name] = IndexRecord{Size: int64(len(files[name])), MtimeNs: 1, CtimeNs: 2, Inode: 3}
	}
	if err := w.Commit(ctx, snap, idx); err != nil {
		return nil, err
	}
	return snap, nil
}
