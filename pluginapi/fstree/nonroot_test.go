package fstree

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const nonRootDirEnv = "FSTREE_TEST_NONROOT_DIR"

// TestUnprivileged runs the round trip as an unprivileged user: ownership
// is best effort (entries owned by root are restored as the user's), and a
// read-only directory is still filled, then made read-only. Run as root,
// it re-runs itself as nobody (uid 65534).
func TestUnprivileged(t *testing.T) {
	if dir := os.Getenv(nonRootDirEnv); dir != "" {
		unprivilegedRoundTrip(t, dir)
		return
	}
	if !isRoot() {
		unprivilegedRoundTrip(t, t.TempDir())
		return
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o777))
	for p := filepath.Dir(dir); p != "/"; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		if fi.Mode().Perm()&0o001 == 0 {
			// t.TempDir's parent is private to root: open it up for
			// the child (it is removed with the test).
			require.NoError(t, os.Chmod(p, fi.Mode().Perm()|0o711))
		}
		if p == os.TempDir() {
			break
		}
	}
	// The test binary lives in a directory private to root: run a copy.
	self, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	bin := filepath.Join(dir, "fstree.test")
	require.NoError(t, os.WriteFile(bin, self, 0o755))
	cmd := exec.Command(bin, "-test.run=^TestUnprivileged$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), nonRootDirEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "--- PASS: TestUnprivileged")
}

func unprivilegedRoundTrip(t *testing.T, dir string) {
	require.NotZero(t, os.Geteuid(), "must run unprivileged")
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "ro/file"), "read-only", 0o444)
	writeFile(t, filepath.Join(src, "ro/sub/x"), "x", 0o644)
	writeFile(t, filepath.Join(src, "rw"), "rw", 0o4755)
	require.NoError(t, os.Symlink("ro/file", filepath.Join(src, "link")))
	chmod(t, filepath.Join(src, "ro/sub"), 0o500)
	chmod(t, filepath.Join(src, "ro"), 0o555)
	setMtimes(t, src, 1_650_000_000_000_000_001)
	snap := capture(t, src, CaptureOptions{})

	dst := filepath.Join(dir, "dst")
	require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{}))
	assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst, CaptureOptions{}).recs))

	// Entries owned by root: restored as ours, not an error.
	rootOwned := make([]record, len(snap.recs))
	for i, r := range snap.recs {
		r.e.UID, r.e.GID = 0, 0
		rootOwned[i] = r
	}
	dst2 := filepath.Join(dir, "dst2")
	require.NoError(t, restore(t, rootOwned, dst2, ApplyOptions{}))
	assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst2, CaptureOptions{}).recs))

	// Let the test's cleanup (as root, or as us) remove the read-only dirs.
	for _, d := range []string{src, dst, dst2} {
		chmod(t, filepath.Join(d, "ro"), 0o755)
		chmod(t, filepath.Join(d, "ro/sub"), 0o755)
	}
}
