package core

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestComparePreorder(t *testing.T) {
	// A pre-order walk with siblings sorted by name.
	order := []string{"", "a", "a/b", "a/b/c", "a/z", "a-b", "a-b/x", "a.b", "aa", "b"}
	for i, x := range order {
		for j, y := range order {
			assert.Equal(t, cmpInt(i, j), pluginapi.ComparePaths(x, y), "%q vs %q", x, y)
		}
	}
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestParentLookupPrefetch: the parent lookup of a create, which reads
// trees ahead, finds the same nodes as a plain lookup, whether asked in a
// capture's order (with directories skipped, as when they were removed) or
// in any order, and asking for paths the parent lacks.
func TestParentLookupPrefetch(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	var files []string
	for _, d := range []string{"a", "a/b", "a/b/c", "a-b", "a.b", "aa", "b/deep/er", "c"} {
		for _, f := range []string{"1", "2.py"} {
			p := d + "/" + f
			writeFile(t, filepath.Join(src, p), []byte(p), 0o644, fixedTime)
			files = append(files, p)
		}
	}
	writeFile(t, filepath.Join(src, "top"), []byte("top"), 0o644, fixedTime)
	files = append(files, "top")
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	stream := snap.Streams[0].Name

	plain := newTreeLookup(m.Store(), snap)
	want := func(p string) string {
		n, err := plain.node(ctx, stream, p)
		require.NoError(t, err)
		if n == nil {
			return "none"
		}
		return fmt.Sprint(n.Type, n.Size, n.Content)
	}
	slices.SortFunc(files, pluginapi.ComparePaths)
	missing := []string{"a/0", "a/b/c/zz", "a.b/x/y", "zz/top", "b/deep/nope/x"}
	orders := map[string][]string{
		"capture order": files,
		"some skipped":  append(slices.Clone(files[:3]), files[9:]...),
		"shuffled":      append(slices.Clone(files), missing...),
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(orders["shuffled"]), func(i, j int) {
		orders["shuffled"][i], orders["shuffled"][j] = orders["shuffled"][j], orders["shuffled"][i]
	})
	for name, paths := range orders {
		t.Run(name, func(t *testing.T) {
			w, err := m.Store().NewWriter(ctx)
			require.NoError(t, err)
			defer w.Abort()
			require.NoError(t, w.UseParent(ctx, snap.ID))
			lk := newParentLookup(ctx, w, snap)
			defer lk.close()
			for _, p := range paths {
				n, err := lk.node(ctx, stream, p)
				require.NoError(t, err)
				got := "none"
				if n != nil {
					got = fmt.Sprint(n.Type, n.Size, n.Content)
				}
				assert.Equal(t, want(p), got, p)
			}
		})
	}
}
