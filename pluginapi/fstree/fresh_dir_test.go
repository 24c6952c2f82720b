package fstree

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// freshDirTree has directories of many modes (created with their final
// mode, with 0700, or finished at the end), each holding a file, and
// nested, with distinct mtimes.
func freshDirTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	modes := map[string]uint32{
		"d0755": 0o755, "d0700": 0o700, "d0750": 0o750, "d0775": 0o775,
		"d0777": 0o777, "d2755": 0o2755, "d0311": 0o311, "d0555": 0o555,
		"d0711": 0o711, "d1777": 0o1777,
	}
	for name := range modes {
		writeFile(t, filepath.Join(root, name, "f"), name, 0o644)
		writeFile(t, filepath.Join(root, name, "sub", "g"), name, 0o600)
	}
	writeFile(t, filepath.Join(root, "z-last"), "last", 0o644)
	for name, mode := range modes {
		chmod(t, filepath.Join(root, name, "sub"), mode)
	}
	for name, mode := range modes {
		chmod(t, filepath.Join(root, name), mode)
	}
	setMtimes(t, root, 1_700_000_000_987_654_321)
	return root
}

// A new target's directories, finished on their own descriptors as the
// stream passes them, get exactly the snapshot's modes and ns mtimes, under
// the usual umask and one that strips bits the snapshot has (so a
// directory created with its final mode must be chmodded after all).
func TestNewTargetDirectoriesFinishedEarly(t *testing.T) {
	src := freshDirTree(t)
	snap := capture(t, src, CaptureOptions{})
	for _, mask := range []int{0o022, 0o077} {
		old := unix.Umask(mask)
		dst := filepath.Join(t.TempDir(), "dst")
		err := restore(t, snap.recs, dst, ApplyOptions{})
		unix.Umask(old)
		require.NoError(t, err, "umask %o", mask)
		again := capture(t, dst, CaptureOptions{})
		assert.Equal(t, comparable(snap.recs), comparable(again.recs), "umask %o", mask)
	}
}

// A stream that goes back into a directory it has passed (not pre-order,
// which the pluginapi checks forbid but an Applier used directly accepts)
// still leaves that directory with the snapshot's mtime: Finish sets it
// again, since writing into it moved it after it was finished.
func TestNewTargetStreamBackIntoFinishedDirectory(t *testing.T) {
	src := freshDirTree(t)
	snap := capture(t, src, CaptureOptions{})
	late := -1
	for i, r := range snap.recs {
		if r.e.Path == "d0755/f" {
			late = i
		}
	}
	require.GreaterOrEqual(t, late, 0)
	recs := append([]record{}, snap.recs[:late]...)
	recs = append(recs, snap.recs[late+1:]...)
	recs = append(recs, snap.recs[late]) // after everything else
	dst := filepath.Join(t.TempDir(), "dst")
	require.NoError(t, restore(t, recs, dst, ApplyOptions{}))
	again := capture(t, dst, CaptureOptions{})
	want := find(t, snap.recs, "d0755")
	got := find(t, again.recs, "d0755")
	assert.Equal(t, want.e.MtimeNs, got.e.MtimeNs, "mtime set again after the late file")
	assert.Equal(t, want.e.Mode, got.e.Mode)
	b, err := os.ReadFile(filepath.Join(dst, "d0755", "f"))
	require.NoError(t, err)
	assert.Equal(t, "d0755", string(b))
}
