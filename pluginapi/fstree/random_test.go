package fstree

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// randomTree builds a tree of files, directories, symlinks and hard links
// whose names come from a small alphabet, so two trees from different seeds
// share many paths with different types: the in-place restore between them
// exercises every type change.
func randomTree(t *testing.T, root string, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 42))
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	var files []string
	var build func(dir string, depth int)
	build = func(dir string, depth int) {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for _, n := range names {
			p := filepath.Join(dir, n)
			switch k := rng.IntN(10); {
			case k < 4:
				writeFile(t, p, []string{"", "x", strings.Repeat("y", 3000)}[rng.IntN(3)], []uint32{0o644, 0o4755}[rng.IntN(2)])
				files = append(files, p)
			case k < 7 && depth < 3:
				build(p, depth+1)
			case k < 8:
				require.NoError(t, os.Symlink([]string{"a", "../b", "/etc/hostname", "missing"}[rng.IntN(4)], p))
			case k < 9 && len(files) > 0:
				require.NoError(t, os.Link(files[rng.IntN(len(files))], p))
			}
		}
	}
	build(root, 0)
	// The same path gets the same mtime in every tree, so equal files are
	// kept by the in-place plan.
	require.NoError(t, filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		ns := 1_500_000_000_000_000_000 + int64(len(p))*1_000_000_007 + int64(p[len(p)-1])
		ts := []unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

func TestRandomTreesInPlace(t *testing.T) {
	base := t.TempDir()
	var snaps []*memWriter
	for seed := range uint64(6) {
		src := filepath.Join(base, fmt.Sprint("src", seed))
		randomTree(t, src, seed)
		snaps = append(snaps, capture(t, src, CaptureOptions{}))
	}
	target := filepath.Join(base, "target")
	require.NoError(t, restore(t, snaps[0].recs, target, ApplyOptions{}))
	assert.Equal(t, comparable(snaps[0].recs), comparable(capture(t, target, CaptureOptions{}).recs))
	for i := 1; i < len(snaps); i++ {
		plan := planInPlace(t, snaps[i].recs, target)
		kept := 0
		for _, r := range plan {
			if r.e.Unchanged {
				kept++
			}
		}
		t.Logf("tree %d: %d entries, %d kept", i, len(plan), kept)
		require.NoError(t, restore(t, plan, target, ApplyOptions{InPlace: true, Workers: 1 + i%3}), "to tree %d", i)
		got := capture(t, target, CaptureOptions{})
		// Hard links may pair up differently after in place (a kept file
		// is not re-linked), so compare what each path holds.
		assert.Equal(t, flattenLinks(snaps[i].recs), flattenLinks(got.recs), "to tree %d", i)
	}
}

// flattenLinks replaces hard links by the file they name, with its body,
// and strips per-capture fields.
func flattenLinks(recs []record) []record {
	byPath := make(map[string]record)
	out := comparable(recs)
	for i, r := range out {
		if r.e.Type == pluginapi.TypeHardlink {
			f := byPath[r.e.LinkTarget]
			f.e.Path = r.e.Path
			out[i] = f
		}
		byPath[r.e.Path] = out[i]
	}
	return out
}
