package fstree

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestRoundTripNewTarget(t *testing.T) {
	src := buildTree(t)
	snap := capture(t, src, CaptureOptions{})
	for _, workers := range []int{1, DefaultWorkers} {
		dst := filepath.Join(t.TempDir(), "restored", "deeper") // parents are created
		require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{Workers: workers}))
		again := capture(t, dst, CaptureOptions{})
		// Same paths, types, bytes, modes (setuid too), owners, ns mtimes of
		// files and directories, symlink targets, hard links and xattrs.
		assert.Equal(t, comparable(snap.recs), comparable(again.recs), "workers=%d", workers)

		var a, b unix.Stat_t
		require.NoError(t, unix.Lstat(filepath.Join(dst, "a.txt"), &a))
		require.NoError(t, unix.Lstat(filepath.Join(dst, "z-hard-a"), &b))
		assert.Equal(t, a.Ino, b.Ino, "hard links share an inode")
		assert.EqualValues(t, 3, a.Nlink)
	}
}

func TestXattrRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if !xattrsSupported(t, dir) {
		t.Skipf("the file system of %s does not support user.* xattrs; xattr round trip not tested here", dir)
	}
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "d/f"), "f", 0o644)
	require.NoError(t, unix.Setxattr(filepath.Join(src, "d/f"), "user.a", []byte("1"), 0))
	require.NoError(t, unix.Setxattr(filepath.Join(src, "d/f"), "user.empty", nil, 0))
	require.NoError(t, unix.Setxattr(filepath.Join(src, "d"), "user.dir", bytes.Repeat([]byte{0, 1, 2}, 700), 0))
	snap := capture(t, src, CaptureOptions{})
	assert.Equal(t, map[string][]byte{"user.a": []byte("1"), "user.empty": {}}, find(t, snap.recs, "d/f").e.Xattrs)
	assert.Len(t, find(t, snap.recs, "d").e.Xattrs["user.dir"], 2100)

	dst := filepath.Join(dir, "dst")
	require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{}))
	assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst, CaptureOptions{}).recs))

	// In place, a stale xattr on a kept directory is removed.
	require.NoError(t, unix.Setxattr(filepath.Join(dst, "d"), "user.stale", []byte("x"), 0))
	require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{InPlace: true}))
	assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst, CaptureOptions{}).recs))
}

func TestRewriteHook(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "bin/script"), "#!/old/venv/bin/python\nprint(1)\n", 0o755)
	writeFile(t, filepath.Join(src, "pyvenv.cfg"), "home = /usr/bin\nprefix = /old/venv\n", 0o644)
	writeFile(t, filepath.Join(src, "data"), "/old/venv stays", 0o644)
	snap := capture(t, src, CaptureOptions{})

	dst := filepath.Join(t.TempDir(), "new")
	opts := ApplyOptions{Rewrite: func(e *pluginapi.Entry) (func([]byte) ([]byte, error), bool) {
		if e.Path != "pyvenv.cfg" && !strings.HasPrefix(e.Path, "bin/") {
			return nil, false
		}
		return func(b []byte) ([]byte, error) {
			return bytes.ReplaceAll(b, []byte("/old/venv"), []byte("/a/much/longer/new/venv")), nil
		}, true
	}}
	require.NoError(t, restore(t, snap.recs, dst, opts))
	got, err := os.ReadFile(filepath.Join(dst, "bin/script"))
	require.NoError(t, err)
	assert.Equal(t, "#!/a/much/longer/new/venv/bin/python\nprint(1)\n", string(got))
	got, err = os.ReadFile(filepath.Join(dst, "data"))
	require.NoError(t, err)
	assert.Equal(t, "/old/venv stays", string(got))
	fi, err := os.Stat(filepath.Join(dst, "bin/script"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	assert.Equal(t, find(t, snap.recs, "bin/script").e.MtimeNs, fi.ModTime().UnixNano())
}

// planInPlace marks the snapshot's entries that the target already holds
// exactly, as the host does before an in-place restore (from an index-only
// capture of the target; here bodies are compared directly).
func planInPlace(t *testing.T, snap []record, target string) []record {
	t.Helper()
	now := capture(t, target, CaptureOptions{})
	have := make(map[string]record)
	for _, r := range now.recs {
		have[r.e.Path] = r
	}
	out := make([]record, len(snap))
	for i, r := range snap {
		h, ok := have[r.e.Path]
		if ok && h.e.Type == r.e.Type && h.e.Mode == r.e.Mode && h.e.MtimeNs == r.e.MtimeNs &&
			h.e.UID == r.e.UID && h.e.GID == r.e.GID && h.e.LinkTarget == r.e.LinkTarget &&
			h.e.Size == r.e.Size && bytes.Equal(h.body, r.body) && r.e.Type != pluginapi.TypeHardlink {
			r.e.Unchanged, r.body, r.hasBody = true, nil, false
		}
		out[i] = r
	}
	return out
}

func TestInPlace(t *testing.T) {
	src := buildTree(t)
	snap := capture(t, src, CaptureOptions{})
	dst := filepath.Join(t.TempDir(), "dst")
	require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{}))

	// What a test run does to an environment.
	chmod(t, filepath.Join(dst, "readonly"), 0o755)
	writeFile(t, filepath.Join(dst, "lib/pkg/mod.py"), "modified", 0o644) // modified
	writeFile(t, filepath.Join(dst, "lib/pkg/new.py"), "added", 0o644)    // added file
	writeFile(t, filepath.Join(dst, "newdir/x/y"), "added tree", 0o644)   // added tree
	require.NoError(t, os.Remove(filepath.Join(dst, "readonly/f")))       // deleted
	chmod(t, filepath.Join(dst, "bin/tool"), 0o700)                       // mode change
	require.NoError(t, os.RemoveAll(filepath.Join(dst, "empty-dir")))     // deleted empty dirs
	require.NoError(t, os.Remove(filepath.Join(dst, "big.bin")))          // file → dir
	writeFile(t, filepath.Join(dst, "big.bin/inner"), "i", 0o644)
	require.NoError(t, os.RemoveAll(filepath.Join(dst, "sticky"))) // dir → file
	writeFile(t, filepath.Join(dst, "sticky"), "now a file", 0o644)
	require.NoError(t, os.Remove(filepath.Join(dst, "a.txt"))) // hard-linked file → symlink
	require.NoError(t, os.Symlink("/etc", filepath.Join(dst, "a.txt")))
	require.NoError(t, os.Remove(filepath.Join(dst, "lib64"))) // symlink → dir
	writeFile(t, filepath.Join(dst, "lib64/f"), "f", 0o644)
	require.NoError(t, os.Remove(filepath.Join(dst, "dangling"))) // symlink retargeted
	require.NoError(t, os.Symlink("elsewhere", filepath.Join(dst, "dangling")))
	writeFile(t, filepath.Join(dst, "lib/pkg/__init__.py"), "", 0o644) // only mtime changes
	writeFile(t, filepath.Join(dst, "bin/suid"), "x", 0o755)           // setuid bit lost

	plan := planInPlace(t, snap.recs, dst)
	unchanged := 0
	for _, r := range plan {
		if r.e.Unchanged {
			unchanged++
		}
	}
	require.Greater(t, unchanged, 5, "the plan keeps what did not change")

	// An entry the host marks unchanged is left alone, even if it is not
	// (proves it is not rewritten): keep bin/sgid's content different.
	writeFile(t, filepath.Join(dst, "bin/sgid"), "Y", 0o2711)
	var sgid unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(dst, "bin/sgid"), &sgid))
	for i := range plan {
		if plan[i].e.Path == "bin/sgid" {
			require.True(t, plan[i].e.Unchanged)
		}
	}

	require.NoError(t, restore(t, plan, dst, ApplyOptions{InPlace: true}))

	got := comparable(capture(t, dst, CaptureOptions{}).recs)
	want := comparable(snap.recs)
	for i := range want {
		if want[i].e.Path == "bin/sgid" {
			want[i].body = []byte("Y")
			want[i].e.MtimeNs = sgid.Mtim.Nano()
		}
	}
	assert.Equal(t, want, got)
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(dst, "bin/sgid"), &st))
	assert.Equal(t, sgid.Ino, st.Ino, "unchanged file kept, not rewritten")

	// Nothing left behind: no temporary names.
	entries, err := os.ReadDir(filepath.Join(dst, "lib/pkg"))
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), ".ptest-snap-")
	}

	// A second in-place restore of an already exact tree changes nothing.
	writeFile(t, filepath.Join(dst, "bin/sgid"), "y", 0o2711)
	ts := []unix.Timespec{unix.NsecToTimespec(0), unix.NsecToTimespec(find(t, snap.recs, "bin/sgid").e.MtimeNs)}
	require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, "bin/sgid"), ts, 0))
	require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, "bin"), []unix.Timespec{ts[0], unix.NsecToTimespec(find(t, snap.recs, "bin").e.MtimeNs)}, 0))
	plan = planInPlace(t, snap.recs, dst)
	for _, r := range plan {
		if r.e.Type != pluginapi.TypeHardlink {
			assert.True(t, r.e.Unchanged, r.e.Path)
		}
	}
	require.NoError(t, restore(t, plan, dst, ApplyOptions{InPlace: true}))
	assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst, CaptureOptions{}).recs))
}

func TestInPlaceUnchangedMissing(t *testing.T) {
	dst := t.TempDir()
	recs := []record{{stream: "rootfs", e: pluginapi.Entry{Path: "gone", Type: pluginapi.TypeFile, Mode: 0o644, Unchanged: true}}}
	err := restore(t, recs, dst, ApplyOptions{InPlace: true})
	assert.ErrorContains(t, err, `unchanged entry "gone" missing from target`)
	err = restore(t, recs, filepath.Join(dst, "new"), ApplyOptions{})
	assert.ErrorContains(t, err, "unchanged")

	// There, but of another type.
	require.NoError(t, os.Symlink("x", filepath.Join(dst, "gone")))
	err = restore(t, recs, dst, ApplyOptions{InPlace: true})
	assert.ErrorContains(t, err, `unchanged file "gone" is something else`)
}

func TestRefusals(t *testing.T) {
	file := func(p string) record {
		return record{stream: "rootfs", e: pluginapi.Entry{Path: p, Type: pluginapi.TypeFile, Mode: 0o644, Size: 4}, body: []byte("evil"), hasBody: true}
	}
	dir := func(p string) record {
		return record{stream: "rootfs", e: pluginapi.Entry{Path: p, Type: pluginapi.TypeDir, Mode: 0o755}}
	}
	symlink := func(p, target string) record {
		return record{stream: "rootfs", e: pluginapi.Entry{Path: p, Type: pluginapi.TypeSymlink, LinkTarget: target}}
	}
	hardlink := func(p, target string) record {
		return record{stream: "rootfs", e: pluginapi.Entry{Path: p, Type: pluginapi.TypeHardlink, LinkTarget: target}}
	}
	unchanged := func(r record) record { r.e.Unchanged, r.body, r.hasBody = true, nil, false; return r }

	tests := []struct {
		name    string
		inPlace bool
		// prepare plants things in the target (in-place) given the
		// outside directory.
		prepare func(t *testing.T, target, outside string)
		recs    func(outside string) []record
	}{
		{"dot-dot", false, nil, func(string) []record { return []record{file("../escape")} }},
		{"dot-dot inside", false, nil, func(string) []record { return []record{dir("a"), file("a/../../escape")} }},
		{"absolute", false, nil, func(o string) []record { return []record{file(o + "/escape")} }},
		{"empty element", false, nil, func(string) []record { return []record{dir("a"), file("a//escape")} }},
		{"dot element", false, nil, func(string) []record { return []record{file("./escape")} }},
		{"empty path", false, nil, func(string) []record { return []record{file("")} }},
		{"parent never sent", false, nil, func(string) []record { return []record{file("a/escape")} }},
		{"file beneath a symlink entry", false, nil, func(o string) []record {
			return []record{symlink("sub", o), file("sub/escape")}
		}},
		{"dir beneath a symlink entry", false, nil, func(o string) []record {
			return []record{symlink("sub", o), dir("sub/d")}
		}},
		{"same path twice", false, nil, func(o string) []record { return []record{symlink("sub", o), dir("sub")} }},
		{"hard link outside", false, nil, func(o string) []record { return []record{hardlink("h", o+"/escape")} }},
		{"hard link with dot-dot", false, nil, func(string) []record { return []record{hardlink("h", "../outside/escape")} }},
		{"hard link to a path not in the stream", false, nil, func(string) []record { return []record{hardlink("h", "escape")} }},
		{"hard link to a symlink entry", false, nil, func(o string) []record {
			return []record{symlink("s", o+"/escape"), hardlink("h", "s")}
		}},
		{"planted symlink, parent not in stream", true, plantSymlink, func(string) []record { return []record{file("sub/escape")} }},
		{"planted symlink, parent marked unchanged", true, plantSymlink, func(string) []record {
			return []record{unchanged(dir("sub")), file("sub/escape")}
		}},
		{"planted symlink, deeper", true, plantSymlink, func(string) []record {
			return []record{unchanged(dir("sub")), dir("sub/d"), file("sub/d/escape")}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			require.NoError(t, os.Mkdir(outside, 0o755))
			writeFile(t, filepath.Join(outside, "keep"), "keep", 0o644)
			target := filepath.Join(base, "target")
			if tt.prepare != nil {
				require.NoError(t, os.Mkdir(target, 0o755))
				tt.prepare(t, target, outside)
			}
			err := restore(t, tt.recs(outside), target, ApplyOptions{InPlace: tt.inPlace})
			require.ErrorIs(t, err, pluginapi.ErrUnsafePath)
			names, err := os.ReadDir(outside)
			require.NoError(t, err)
			require.Len(t, names, 1, "nothing written outside the target")
			_, err = os.Lstat(filepath.Join(base, "escape"))
			assert.ErrorIs(t, err, os.ErrNotExist)
		})
	}
}

func plantSymlink(t *testing.T, target, outside string) {
	require.NoError(t, os.Symlink(outside, filepath.Join(target, "sub")))
}

func TestInPlaceReplacesPlantedSymlinkWithDir(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	require.NoError(t, os.Mkdir(outside, 0o755))
	target := filepath.Join(base, "target")
	require.NoError(t, os.Mkdir(target, 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(target, "sub")))
	recs := []record{
		{stream: "rootfs", e: pluginapi.Entry{Path: "sub", Type: pluginapi.TypeDir, Mode: 0o755}},
		{stream: "rootfs", e: pluginapi.Entry{Path: "sub/x", Type: pluginapi.TypeFile, Mode: 0o644, Size: 1}, body: []byte("x"), hasBody: true},
	}
	require.NoError(t, restore(t, recs, target, ApplyOptions{InPlace: true}))
	fi, err := os.Lstat(filepath.Join(target, "sub"))
	require.NoError(t, err)
	assert.True(t, fi.IsDir(), "the symlink was replaced by the directory")
	assert.FileExists(t, filepath.Join(target, "sub/x"))
	names, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, names)
}

func TestNewTargetMustBeEmpty(t *testing.T) {
	target := t.TempDir()
	writeFile(t, filepath.Join(target, "something"), "x", 0o644)
	_, err := NewApplier(target, ApplyOptions{})
	assert.ErrorIs(t, err, pluginapi.ErrTargetExists)

	_, err = NewApplier(filepath.Join(target, "something"), ApplyOptions{InPlace: true})
	assert.ErrorIs(t, err, pluginapi.ErrTargetExists, "a file is no directory to restore into")

	a, err := NewApplier(t.TempDir(), ApplyOptions{})
	require.NoError(t, err, "an empty directory is fine")
	require.NoError(t, a.Close())
}

func TestApplierCloseMidway(t *testing.T) {
	src := buildTree(t)
	snap := capture(t, src, CaptureOptions{})
	a, err := NewApplier(filepath.Join(t.TempDir(), "dst"), ApplyOptions{})
	require.NoError(t, err)
	r := &memReader{recs: snap.recs[:len(snap.recs)/2]}
	for {
		_, e, body, err := r.Next(context.Background())
		if err != nil {
			break
		}
		require.NoError(t, a.Apply(context.Background(), e, body))
	}
	require.NoError(t, a.Close())
	assert.Error(t, a.Apply(context.Background(), &snap.recs[len(snap.recs)-1].e, nil))
	// goleak in TestMain checks the workers are gone.
}

func TestRewriteRefusesHugeSize(t *testing.T) {
	recs := []record{{stream: "rootfs", e: pluginapi.Entry{Path: "f", Type: pluginapi.TypeFile, Mode: 0o644, Size: 1 << 40}, body: []byte("tiny"), hasBody: true}}
	opts := ApplyOptions{Rewrite: func(*pluginapi.Entry) (func([]byte) ([]byte, error), bool) {
		return func(b []byte) ([]byte, error) { return b, nil }, true
	}}
	err := restore(t, recs, filepath.Join(t.TempDir(), "dst"), opts)
	assert.ErrorContains(t, err, "too large to rewrite")
}

func TestShortBodyFails(t *testing.T) {
	for _, size := range []int64{10, 3 << 20} { // written by a worker, and streamed inline
		recs := []record{{stream: "rootfs", e: pluginapi.Entry{Path: "f", Type: pluginapi.TypeFile, Mode: 0o644, Size: size}, body: []byte("short"), hasBody: true}}
		dst := filepath.Join(t.TempDir(), "dst")
		err := restore(t, recs, dst, ApplyOptions{})
		assert.Error(t, err, "size %d", size)
	}
}

func TestInPlaceTrustUnchangedDirs(t *testing.T) {
	src := buildTree(t)
	snap := capture(t, src, CaptureOptions{})
	dst := filepath.Join(t.TempDir(), "dst")
	require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{}))

	writeFile(t, filepath.Join(dst, "lib/pkg/extra.py"), "extra", 0o644) // lib/pkg's mtime moves
	writeFile(t, filepath.Join(dst, "newdir/x"), "x", 0o644)             // in root: always listed
	// An extra whose directory's mtime is set back: the documented miss.
	writeFile(t, filepath.Join(dst, "bin/hidden"), "h", 0o644)
	binMtime := find(t, snap.recs, "bin").e.MtimeNs
	require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, "bin"), []unix.Timespec{unix.NsecToTimespec(0), unix.NsecToTimespec(binMtime)}, 0))

	plan := planInPlace(t, snap.recs, dst)
	assert.False(t, find(t, plan, "lib/pkg").e.Unchanged)
	assert.True(t, find(t, plan, "bin").e.Unchanged)
	require.NoError(t, restore(t, plan, dst, ApplyOptions{InPlace: true, TrustUnchangedDirs: true}))

	assert.NoFileExists(t, filepath.Join(dst, "lib/pkg/extra.py"))
	assert.NoDirExists(t, filepath.Join(dst, "newdir"))
	assert.FileExists(t, filepath.Join(dst, "bin/hidden"), "kept: its directory looked unchanged")
	require.NoError(t, os.Remove(filepath.Join(dst, "bin/hidden")))
	require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, "bin"), []unix.Timespec{unix.NsecToTimespec(0), unix.NsecToTimespec(binMtime)}, 0))
	assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst, CaptureOptions{}).recs))
}

// TestInPlaceKeepsExcluded: an in-place restore of a capture taken with
// excludes leaves the excluded paths of the target alone (a file, a whole
// directory, a pattern on the base name at any depth) and still deletes
// the other extras.
func TestInPlaceKeepsExcluded(t *testing.T) {
	excludes := []string{"__pycache__", "data/big", "*.log"}
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprintf("TrustUnchangedDirs=%v", trust), func(t *testing.T) {
			src := t.TempDir()
			writeFile(t, filepath.Join(src, "keep.txt"), "v1", 0o644)
			writeFile(t, filepath.Join(src, "data/small"), "s", 0o644)
			writeFile(t, filepath.Join(src, "pkg/mod.py"), "m", 0o644)
			excluded := map[string]string{
				"__pycache__/x.pyc":     "top cache",
				"pkg/__pycache__/y.pyc": "nested cache",
				"data/big/blob":         "big data",
				"data/big/sub/deep":     "deeper",
				"run.log":               "log",
				"pkg/deep.log":          "nested log",
			}
			for p, c := range excluded {
				writeFile(t, filepath.Join(src, p), c, 0o644)
			}
			snap := capture(t, src, CaptureOptions{Excludes: excludes})
			for _, r := range snap.recs {
				require.False(t, matchExcludes(excludes, r.e.Path, filepath.Base(r.e.Path)), r.e.Path)
			}

			// The target: the source itself, changed by a test run.
			dst := src
			writeFile(t, filepath.Join(dst, "keep.txt"), "v2 modified", 0o644)
			writeFile(t, filepath.Join(dst, "extra.txt"), "x", 0o644)
			writeFile(t, filepath.Join(dst, "extradir/z"), "z", 0o644)
			writeFile(t, filepath.Join(dst, "data/other"), "o", 0o644)
			writeFile(t, filepath.Join(dst, "data/big/new"), "added to an excluded dir", 0o644)
			excluded["data/big/new"] = "added to an excluded dir"
			writeFile(t, filepath.Join(dst, "pkg/__pycache__/y.pyc"), "rewritten cache", 0o644)
			excluded["pkg/__pycache__/y.pyc"] = "rewritten cache"

			require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{InPlace: true, TrustUnchangedDirs: trust, Excludes: excludes}))

			for p, c := range excluded {
				b, err := os.ReadFile(filepath.Join(dst, p))
				require.NoError(t, err, p)
				assert.Equal(t, c, string(b), p)
			}
			b, err := os.ReadFile(filepath.Join(dst, "keep.txt"))
			require.NoError(t, err)
			assert.Equal(t, "v1", string(b))
			for _, p := range []string{"extra.txt", "extradir", "data/other"} {
				assert.NoFileExists(t, filepath.Join(dst, p))
				assert.NoDirExists(t, filepath.Join(dst, p))
			}
			// What the excludes leave out is the same as before the restore.
			assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst, CaptureOptions{Excludes: excludes}).recs))

			// Without the excludes, the same restore deletes them: the
			// snapshot does not have them.
			require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{InPlace: true, TrustUnchangedDirs: trust}))
			assert.NoDirExists(t, filepath.Join(dst, "data/big"))
			assert.NoFileExists(t, filepath.Join(dst, "run.log"))
		})
	}
}

func TestApplierRejectsBadExclude(t *testing.T) {
	_, err := NewApplier(t.TempDir(), ApplyOptions{InPlace: true, Excludes: []string{"[oops"}})
	require.ErrorIs(t, err, path.ErrBadPattern)
}

// TestWorkerPerDirectory: every file of a directory goes to the worker the
// directory was given, and idle workers take consecutive directories in
// turn, so no two workers create in one directory at once.
func TestWorkerPerDirectory(t *testing.T) {
	a := &Applier{queues: make([]chan *fileJob, 3)}
	for i := range a.queues {
		a.queues[i] = make(chan *fileJob, workerQueueLen)
	}
	d0, d1, d2, d3 := newDirHandle(-1), newDirHandle(-1), newDirHandle(-1), newDirHandle(-1)
	assert.Equal(t, 0, a.workerFor(d0))
	assert.Equal(t, 1, a.workerFor(d1))
	assert.Equal(t, 0, a.workerFor(d0), "a directory keeps its worker")
	assert.Equal(t, 2, a.workerFor(d2))
	// Worker 0 is busy: the next directory goes to an idle one.
	a.queues[0] <- &fileJob{}
	assert.Equal(t, 1, a.workerFor(d3))
	assert.Equal(t, 0, a.workerFor(d0), "even when its queue is the longest")
}

// TestRoundTripManyDirectoriesEachWorkerCount restores a tree of many
// directories, each with files, subdirectories and files after them (so a
// directory's files are queued before and after its subdirectories'), with
// one worker and with more workers than directories at a level.
func TestRoundTripManyDirectoriesEachWorkerCount(t *testing.T) {
	src := t.TempDir()
	for i := range 12 {
		d := filepath.Join(src, fmt.Sprintf("pkg%02d", i))
		require.NoError(t, os.MkdirAll(filepath.Join(d, "sub", "deeper"), 0o755))
		for j := range 5 {
			body := []byte(strings.Repeat(fmt.Sprintf("%d-%d\n", i, j), i*50+j+1))
			require.NoError(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("a%d.py", j)), body, 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("z%d.py", j)), body, 0o600))
			require.NoError(t, os.WriteFile(filepath.Join(d, "sub", fmt.Sprintf("m%d.py", j)), body, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(d, "sub", "deeper", fmt.Sprintf("n%d", j)), body, 0o644))
		}
	}
	snap := capture(t, src, CaptureOptions{})
	for _, workers := range []int{1, 2, DefaultWorkers, 16} {
		dst := filepath.Join(t.TempDir(), "restored")
		require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{Workers: workers}))
		again := capture(t, dst, CaptureOptions{})
		assert.Equal(t, comparable(snap.recs), comparable(again.recs), "workers=%d", workers)
	}
}
