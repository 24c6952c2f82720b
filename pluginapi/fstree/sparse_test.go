package fstree

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// sparsePlan turns a full in-place plan into the sparse stream a host sends
// (pluginapi.RestoreRequest.Sparse): the entries to write, the deletion of
// every topmost path the target has and the snapshot lacks, and the kept
// directories along their paths, in stream order.
func sparsePlan(t *testing.T, plan []record, target string) []record {
	t.Helper()
	inSnap := map[string]pluginapi.Entry{}
	for _, r := range plan {
		inSnap[r.e.Path] = r.e
	}
	var out []record
	for _, r := range capture(t, target, CaptureOptions{}).recs {
		parent, _ := splitPath(r.e.Path)
		if _, ok := inSnap[r.e.Path]; !ok && (parent == "" || inSnap[parent].Type == pluginapi.TypeDir) {
			out = append(out, record{stream: r.stream, e: pluginapi.Entry{Path: r.e.Path, Type: r.e.Type, Delete: true}})
		}
	}
	for _, r := range plan {
		if !r.e.Unchanged {
			out = append(out, r)
		}
	}
	// The kept directories above what is sent.
	sent := map[string]bool{}
	for _, r := range out {
		sent[r.e.Path] = true
	}
	for _, r := range slices.Clone(out) {
		for p, _ := splitPath(r.e.Path); p != ""; p, _ = splitPath(p) {
			if !sent[p] {
				sent[p] = true
				e := inSnap[p]
				e.Unchanged = true
				out = append(out, record{stream: r.stream, e: e})
			}
		}
	}
	slices.SortFunc(out, func(a, b record) int {
		return strings.Compare(strings.ReplaceAll(a.e.Path, "/", "\x00"), strings.ReplaceAll(b.e.Path, "/", "\x00"))
	})
	return out
}

// A sparse in-place restore deletes what it is told (files, whole trees),
// rewrites and recreates what is sent, links hard links to files it kept
// without being sent them, leaves everything else alone, and yields the
// snapshot exactly, directory mtimes included.
func TestInPlaceSparse(t *testing.T) {
	src := buildTree(t)
	snap := capture(t, src, CaptureOptions{})
	dst := filepath.Join(t.TempDir(), "dst")
	require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{}))

	writeFile(t, filepath.Join(dst, "lib/pkg/mod.py"), "modified", 0o644)
	writeFile(t, filepath.Join(dst, "lib/pkg/new.py"), "added", 0o644)
	writeFile(t, filepath.Join(dst, "newdir/x/y"), "added tree", 0o644)
	require.NoError(t, os.Symlink("/etc", filepath.Join(dst, "lib/new-link")))
	require.NoError(t, os.RemoveAll(filepath.Join(dst, "readonly"))) // a removed tree
	require.NoError(t, os.Remove(filepath.Join(dst, "lib/hard-a")))  // a hard link to a kept file
	require.NoError(t, os.Remove(filepath.Join(dst, "lib64")))       // symlink → dir
	writeFile(t, filepath.Join(dst, "lib64/f"), "f", 0o644)
	require.NoError(t, os.RemoveAll(filepath.Join(dst, "sticky"))) // dir → file
	writeFile(t, filepath.Join(dst, "sticky"), "now a file", 0o644)

	plan := planInPlace(t, snap.recs, dst)
	require.True(t, find(t, plan, "a.txt").e.Unchanged, "the hard links' file is kept")
	// A kept file that is not sent is not touched, even if it differs
	// (proves nothing beyond the stream is looked at).
	writeFile(t, filepath.Join(dst, "bin/sgid"), "Y", 0o2711)
	var sgid unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(dst, "bin/sgid"), &sgid))
	sparse := sparsePlan(t, plan, dst)
	require.Less(t, len(sparse), len(plan))
	for _, r := range sparse {
		assert.NotEqual(t, "bin/sgid", r.e.Path)
		assert.NotEqual(t, "a.txt", r.e.Path, "the kept file is not sent")
	}
	require.Contains(t, paths(sparse), "lib/hard-a")

	require.NoError(t, restore(t, sparse, dst, ApplyOptions{InPlace: true, Sparse: true}))
	got := comparable(capture(t, dst, CaptureOptions{}).recs)
	want := comparable(snap.recs)
	for i := range want {
		if want[i].e.Path == "bin/sgid" {
			want[i].body = []byte("Y")
			want[i].e.MtimeNs = sgid.Mtim.Nano()
		}
	}
	assert.Equal(t, want, got)
	var a, h unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(dst, "a.txt"), &a))
	require.NoError(t, unix.Lstat(filepath.Join(dst, "lib/hard-a"), &h))
	assert.Equal(t, a.Ino, h.Ino, "the hard link names the kept file")
}

// The statistics an Applier records of what it wrote are those the files
// have afterwards, hard-linked ones included.
func TestRecordWritten(t *testing.T) {
	src := buildTree(t)
	snap := capture(t, src, CaptureOptions{})
	for name, opts := range map[string]ApplyOptions{
		"new target": {RecordWritten: true},
		"in place":   {RecordWritten: true, InPlace: true},
	} {
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			a, err := NewApplier(dst, opts)
			require.NoError(t, err)
			for _, r := range snap.recs {
				require.NoError(t, a.Apply(t.Context(), &r.e, bodyOf(r)))
			}
			assert.Nil(t, a.Written(), "nothing before Finish")
			require.NoError(t, a.Finish(t.Context()))
			w := a.Written()
			files := 0
			for _, r := range snap.recs {
				if r.e.Type != pluginapi.TypeFile {
					assert.NotContains(t, w, r.e.Path)
					continue
				}
				files++
				var st unix.Stat_t
				require.NoError(t, unix.Lstat(filepath.Join(dst, r.e.Path), &st))
				assert.Equal(t, pluginapi.IndexEntry{Size: st.Size, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}, w[r.e.Path], r.e.Path)
			}
			assert.Len(t, w, files)
		})
	}
}

// Deletions are refused outside a sparse in-place restore, and one never
// goes through a symlink: a directory the stream names must be a real one.
func TestSparseDeleteRefusals(t *testing.T) {
	dst := t.TempDir()
	writeFile(t, filepath.Join(dst, "f"), "f", 0o644)
	del := []record{{stream: "rootfs", e: pluginapi.Entry{Path: "f", Type: pluginapi.TypeFile, Delete: true}}}
	err := restore(t, del, dst, ApplyOptions{InPlace: true})
	require.ErrorIs(t, err, pluginapi.ErrUnsafePath)
	assert.FileExists(t, filepath.Join(dst, "f"))

	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "victim"), "v", 0o644)
	require.NoError(t, os.Symlink(outside, filepath.Join(dst, "d")))
	through := []record{
		{stream: "rootfs", e: pluginapi.Entry{Path: "d", Type: pluginapi.TypeDir, Mode: 0o755, Unchanged: true}},
		{stream: "rootfs", e: pluginapi.Entry{Path: "d/victim", Type: pluginapi.TypeFile, Delete: true}},
	}
	require.Error(t, restore(t, through, dst, ApplyOptions{InPlace: true, Sparse: true}))
	assert.FileExists(t, filepath.Join(outside, "victim"))

	// Not beneath a path that was not sent as a directory either.
	orphan := []record{{stream: "rootfs", e: pluginapi.Entry{Path: "d/victim", Type: pluginapi.TypeFile, Delete: true}}}
	require.ErrorIs(t, restore(t, orphan, dst, ApplyOptions{InPlace: true, Sparse: true}), pluginapi.ErrUnsafePath)
	assert.FileExists(t, filepath.Join(outside, "victim"))
}

// Deletions run while the stream goes on, more at once than maxDeletes:
// when Finish returns every one is done and the directories they were in
// have the snapshot's mtimes; an entry at or beneath a deleted path is
// refused, and a hard link never names a deleted file.
func TestSparseDeletionsInBackground(t *testing.T) {
	src := t.TempDir()
	for i := range 3 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("pkg%d/keep.py", i)), "keep", 0o644)
	}
	snap := capture(t, src, CaptureOptions{})
	dst := filepath.Join(t.TempDir(), "dst")
	require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{}))
	// What the snapshot lacks: more trees than maxDeletes, each of several
	// files, in each of the snapshot's directories and at the root.
	for i := range 3 {
		for k := range 2*maxDeletes + 1 {
			for f := range 5 {
				writeFile(t, filepath.Join(dst, fmt.Sprintf("pkg%d/extra%d/m%d.py", i, k, f)), "extra", 0o644)
			}
		}
		writeFile(t, filepath.Join(dst, fmt.Sprintf("extra-file%d", i)), "extra", 0o644)
	}
	sparse := sparsePlan(t, planInPlace(t, snap.recs, dst), dst)
	deletes := 0
	for _, r := range sparse {
		if r.e.Delete {
			deletes++
		}
	}
	require.Equal(t, 3*(2*maxDeletes+1)+3, deletes)
	require.NoError(t, restore(t, sparse, dst, ApplyOptions{InPlace: true, Sparse: true}))
	assert.Equal(t, comparable(snap.recs), comparable(capture(t, dst, CaptureOptions{}).recs))

	writeFile(t, filepath.Join(dst, "gone/f"), "f", 0o644)
	writeFile(t, filepath.Join(dst, "gone-file"), "f", 0o644)
	for name, recs := range map[string][]record{
		"beneath a deleted directory": {
			{stream: "rootfs", e: pluginapi.Entry{Path: "gone", Type: pluginapi.TypeDir, Delete: true}},
			{stream: "rootfs", e: pluginapi.Entry{Path: "gone/f", Type: pluginapi.TypeFile, Mode: 0o644, Size: 1}, body: []byte("x"), hasBody: true},
		},
		"the deleted path again": {
			{stream: "rootfs", e: pluginapi.Entry{Path: "gone", Type: pluginapi.TypeDir, Delete: true}},
			{stream: "rootfs", e: pluginapi.Entry{Path: "gone", Type: pluginapi.TypeDir, Mode: 0o755}},
		},
		"a hard link to a deleted file": {
			{stream: "rootfs", e: pluginapi.Entry{Path: "gone-file", Type: pluginapi.TypeFile, Delete: true}},
			{stream: "rootfs", e: pluginapi.Entry{Path: "link", Type: pluginapi.TypeHardlink, LinkTarget: "gone-file"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := restore(t, recs, dst, ApplyOptions{InPlace: true, Sparse: true})
			require.ErrorIs(t, err, pluginapi.ErrUnsafePath)
			assert.NoFileExists(t, filepath.Join(dst, "link"))
		})
	}
}
