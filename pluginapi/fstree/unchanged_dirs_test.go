package fstree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// parentOf is the parent index a host would send after capture w: every
// file's record, and the ctime and inode of every directory and symlink.
func parentOf(w *memWriter) pluginapi.ParentIndex {
	idx := map[string]pluginapi.IndexEntry{}
	for _, r := range w.recs {
		e := r.e
		switch e.Type {
		case pluginapi.TypeFile:
			idx[e.Path] = pluginapi.IndexEntry{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
		case pluginapi.TypeDir, pluginapi.TypeSymlink:
			idx[e.Path] = pluginapi.IndexEntry{Type: e.Type, CtimeNs: e.CtimeNs, Inode: e.Inode}
		}
	}
	return pluginapi.ParentIndex{"rootfs": idx}
}

// unchangedDirs returns the paths of the directories w marked unchanged.
func unchangedDirs(w *memWriter) []string {
	var out []string
	for _, r := range w.recs {
		if r.e.Type == pluginapi.TypeDir && r.e.Unchanged {
			out = append(out, r.e.Path)
		}
	}
	return out
}

// TestCaptureUnchangedDirs: with UnchangedDirs a directory whose whole
// subtree is the parent's is one entry, counting what is beneath it, and
// nothing beneath it is sent; any change inside (a file's content, an
// entry added, a directory's mode, a symlink replaced), a hard link or an
// exclude makes the walk send the directory's entries again.
func TestCaptureUnchangedDirs(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, root string)
		opts   CaptureOptions
		// want: the directories sent unchanged afterwards.
		want []string
	}{
		{"nothing changed", func(*testing.T, string) {}, CaptureOptions{},
			// lib holds a hard link; readonly, sticky, bin and
			// empty-dir hold none.
			[]string{"bin", "empty-dir", "lib/pkg", "lib/pkg-extra", "readonly", "sticky"}},
		{"file content deep inside", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "lib/pkg/mod.py"), "changed\n", 0o644)
		}, CaptureOptions{}, []string{"bin", "empty-dir", "lib/pkg-extra", "readonly", "sticky"}},
		{"entry added to an empty directory", func(t *testing.T, root string) {
			require.NoError(t, os.Mkdir(filepath.Join(root, "empty-dir/nested-empty/new"), 0o755))
		}, CaptureOptions{}, []string{"bin", "lib/pkg", "lib/pkg-extra", "readonly", "sticky"}},
		{"directory mode", func(t *testing.T, root string) {
			chmod(t, filepath.Join(root, "sticky"), 0o755)
		}, CaptureOptions{}, []string{"bin", "empty-dir", "lib/pkg", "lib/pkg-extra", "readonly"}},
		{"symlink replaced", func(t *testing.T, root string) {
			require.NoError(t, os.Remove(filepath.Join(root, "bin/rel-link")))
			require.NoError(t, os.Symlink("../elsewhere", filepath.Join(root, "bin/rel-link")))
		}, CaptureOptions{}, []string{"empty-dir", "lib/pkg", "lib/pkg-extra", "readonly", "sticky"}},
		{"excluded entry", func(*testing.T, string) {}, CaptureOptions{Excludes: []string{"suid"}},
			[]string{"empty-dir", "lib/pkg", "lib/pkg-extra", "readonly", "sticky"}},
	}
	for _, tt := range tests {
		for _, prints := range []bool{false, true} {
			t.Run(tt.name+map[bool]string{false: "", true: " (fingerprints)"}[prints], func(t *testing.T) {
				root := buildTree(t)
				first := capture(t, root, CaptureOptions{})
				tt.change(t, root)
				opts := withParent(t, tt.opts, parentOf(first), prints)
				opts.UnchangedDirs = true
				second := capture(t, root, opts)
				assert.Equal(t, tt.want, unchangedDirs(second))

				// Beneath an unchanged directory nothing is sent; what it
				// counts is what a full capture sends beneath it.
				full := capture(t, root, CaptureOptions{Excludes: tt.opts.Excludes})
				for _, r := range second.recs {
					if r.e.Type != pluginapi.TypeDir || !r.e.Unchanged {
						continue
					}
					var files, dirs, size int64
					for _, f := range full.recs {
						if len(f.e.Path) <= len(r.e.Path) || f.e.Path[:len(r.e.Path)+1] != r.e.Path+"/" {
							continue
						}
						switch f.e.Type {
						case pluginapi.TypeDir:
							dirs++
						default:
							files++
							size += f.e.Size
						}
					}
					assert.Equal(t, []int64{files, dirs, size}, []int64{r.e.SubtreeFiles, r.e.SubtreeDirs, r.e.SubtreeBytes}, r.e.Path)
					assert.Empty(t, r.e.Xattrs, r.e.Path)
					for _, s := range second.recs {
						assert.NotContains(t, s.e.Path, r.e.Path+"/", "sent beneath unchanged %s", r.e.Path)
					}
					f := find(t, full.recs, r.e.Path)
					assert.Equal(t, []any{f.e.Mode, f.e.MtimeNs, f.e.CtimeNs, f.e.Inode}, []any{r.e.Mode, r.e.MtimeNs, r.e.CtimeNs, r.e.Inode})
				}
				// Everything else is sent as without UnchangedDirs.
				opts.UnchangedDirs = false
				plain := capture(t, root, opts)
				var want []string
				for _, p := range paths(plain.recs) {
					keep := true
					for _, d := range tt.want {
						if len(p) > len(d) && p[:len(d)+1] == d+"/" {
							keep = false
						}
					}
					if keep {
						want = append(want, p)
					}
				}
				assert.Equal(t, want, paths(second.recs))
			})
		}
	}
}

// TestCaptureUnchangedDirsNeedsDirectoryRecords: a parent index of files
// only (a snapshot of before, or an engine's host that does not offer
// them) marks no directory unchanged, nor does UnchangedDirs without a
// parent or with IndexOnly.
func TestCaptureUnchangedDirsNeedsDirectoryRecords(t *testing.T) {
	root := buildTree(t)
	first := capture(t, root, CaptureOptions{})
	filesOnly := pluginapi.ParentIndex{"rootfs": {}}
	for p, e := range parentOf(first)["rootfs"] {
		if e.Type == 0 {
			filesOnly["rootfs"][p] = e
		}
	}
	for name, opts := range map[string]CaptureOptions{
		"files only": {Parent: filesOnly, UnchangedDirs: true},
		"no parent":  {UnchangedDirs: true},
	} {
		t.Run(name, func(t *testing.T) {
			w := capture(t, root, opts)
			assert.Empty(t, unchangedDirs(w))
			assert.Equal(t, paths(first.recs), paths(w.recs))
		})
	}
	// A directory of the parent's name that is now a symlink is not the
	// parent's directory.
	idx := parentOf(first)
	e := idx["rootfs"]["bin"]
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(filepath.Join(root, "bin"), &st))
	e.Type = pluginapi.TypeSymlink
	idx["rootfs"]["bin"] = e
	w := capture(t, root, CaptureOptions{Parent: idx, UnchangedDirs: true})
	assert.NotContains(t, unchangedDirs(w), "bin")
	w = capture(t, root, withParent(t, CaptureOptions{UnchangedDirs: true}, idx, true))
	assert.NotContains(t, unchangedDirs(w), "bin", "fingerprints")
}

// An index-only capture (an in-place restore's listing) given the parent
// with its directories sends an unchanged subtree as one entry as well,
// and nothing beneath it; it still marks no file Unchanged and sends no
// body. A changed subtree is listed entry by entry.
func TestCaptureIndexOnlyUnchangedDirs(t *testing.T) {
	root := buildTree(t)
	first := capture(t, root, CaptureOptions{})
	w := capture(t, root, CaptureOptions{Parent: parentOf(first), UnchangedDirs: true, IndexOnly: true})
	dirs := unchangedDirs(w)
	require.NotEmpty(t, dirs)
	for _, r := range w.recs {
		assert.False(t, r.hasBody, r.e.Path)
		assert.False(t, r.e.Unchanged && r.e.Type != pluginapi.TypeDir, r.e.Path)
		for _, d := range dirs {
			assert.False(t, strings.HasPrefix(r.e.Path, d+"/"), "%s listed beneath unchanged %s", r.e.Path, d)
		}
	}
	// Touch one directory's mode: it and those above it are listed
	// entry by entry again.
	d := dirs[0]
	require.NoError(t, os.Chmod(filepath.Join(root, d), 0o711))
	w = capture(t, root, CaptureOptions{Parent: parentOf(first), UnchangedDirs: true, IndexOnly: true})
	assert.NotContains(t, unchangedDirs(w), d)
	assert.Contains(t, paths(w.recs), d)
}
