package fstree

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// A file is created with part of its mode and gets the rest only when the
// fstat after writing it says so: every mode, whatever the umask lets
// through, and every owner must still come out exact, and the statistics
// recorded must be those after the last change (a late chmod moves the
// ctime).
func TestFileModesAndOwnersExact(t *testing.T) {
	modes := []uint32{0o644, 0o755, 0o600, 0o444, 0o400, 0o000, 0o664, 0o666, 0o777, 0o775, 0o4755, 0o2711, 0o6755, 0o1644, 0o711}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	type owner struct{ uid, gid uint32 }
	owners := []owner{{uid, gid}}
	if isRoot() {
		owners = append(owners, owner{23456, gid}, owner{uid, 12345}, owner{23456, 12345})
	}
	var recs []record
	recs = append(recs, record{stream: "rootfs", e: pluginapi.Entry{Path: "d", Type: pluginapi.TypeDir, Mode: 0o755, UID: uid, GID: gid, MtimeNs: 1_600_000_000_123_456_789}})
	i := 0
	for _, m := range modes {
		for _, o := range owners {
			for _, dir := range []string{"", "d/"} {
				i++
				body := fmt.Sprintf("file %d\n", i)
				recs = append(recs, record{stream: "rootfs", hasBody: true, body: []byte(body), e: pluginapi.Entry{
					Path: fmt.Sprintf("%sf%03d", dir, i), Type: pluginapi.TypeFile, Mode: m, UID: o.uid, GID: o.gid,
					Size: int64(len(body)), MtimeNs: 1_500_000_000_000_000_000 + int64(i)*1_000_003_007,
				}})
			}
		}
	}
	// The stream is in path order.
	slices.SortFunc(recs, func(a, b record) int { return pluginapi.ComparePaths(a.e.Path, b.e.Path) })

	for _, c := range []struct{ inPlace, setgid bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		inPlace := c.inPlace
		t.Run(fmt.Sprintf("in place %v, setgid target %v", c.inPlace, c.setgid), func(t *testing.T) {
			if c.setgid && !isRoot() {
				t.Skip("needs root to give the target another group")
			}
			dst := filepath.Join(t.TempDir(), "dst")
			require.NoError(t, os.Mkdir(dst, 0o755))
			if c.setgid {
				// A setgid target of another group: what is created in
				// it gets that group until the applier sets the entry's.
				require.NoError(t, os.Chown(dst, 0, 4242))
				require.NoError(t, unix.Chmod(dst, 0o2775))
			}
			old := unix.Umask(0o027) // takes group read from what open may set
			a, err := NewApplier(dst, ApplyOptions{InPlace: inPlace, RecordWritten: true, Workers: 3})
			if err == nil {
				for _, r := range recs {
					if err = a.Apply(t.Context(), &r.e, bodyOf(r)); err != nil {
						break
					}
				}
				if err == nil {
					err = a.Finish(t.Context())
				}
			}
			unix.Umask(old)
			require.NoError(t, err)
			w := a.Written()
			for _, r := range recs {
				if r.e.Type != pluginapi.TypeFile {
					continue
				}
				p := filepath.Join(dst, r.e.Path)
				var st unix.Stat_t
				require.NoError(t, unix.Lstat(p, &st))
				assert.Equal(t, fmt.Sprintf("%o", r.e.Mode), fmt.Sprintf("%o", st.Mode&0o7777), r.e.Path)
				assert.Equal(t, [2]uint32{r.e.UID, r.e.GID}, [2]uint32{st.Uid, st.Gid}, r.e.Path)
				assert.Equal(t, r.e.MtimeNs, st.Mtim.Nano(), r.e.Path)
				got, err := os.ReadFile(p)
				if st.Mode&0o444 != 0 || isRoot() {
					require.NoError(t, err)
					assert.Equal(t, r.body, got, r.e.Path)
				}
				assert.Equal(t, pluginapi.IndexEntry{Size: st.Size, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}, w[r.e.Path], r.e.Path)
			}
		})
	}
}

// Directories get their metadata at Finish, a level at a time with several
// goroutines: a wide and deep tree of directories with distinct modes
// (read-only and closed ones among them) and mtimes comes back exact.
func TestManyDirectoriesFinishExact(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	modes := []uint32{0o755, 0o700, 0o555, 0o750, 0o2775, 0o1777, 0o711, 0o500}
	var dirs []string
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		for i := range 5 {
			d := filepath.Join(dir, fmt.Sprintf("d%d", i))
			writeFile(t, filepath.Join(d, "f"), d, 0o644)
			dirs = append(dirs, d)
			if depth < 3 {
				walk(d, depth+1)
			}
		}
	}
	walk(src, 0)
	setMtimes(t, src, 1_400_000_000_000_000_007)
	// Modes last, deepest first, so the tree can still be built and read.
	for i := len(dirs) - 1; i >= 0; i-- {
		chmod(t, dirs[i], modes[i%len(modes)])
	}
	t.Cleanup(func() { makeWritable(src) })
	snap := capture(t, src, CaptureOptions{})
	dst := filepath.Join(t.TempDir(), "dst")
	t.Cleanup(func() { makeWritable(dst) })
	require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{RecordWritten: true}))
	assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst, CaptureOptions{}).recs))
}

// makeWritable opens every directory under root to its owner, so the test
// can remove it.
func makeWritable(root string) {
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
}
