package store

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pypj/ptest-snap/internal/venvfull"
)

// copyTree copies src to dst with the files' modes and mtimes and the
// directories' modes and mtimes, so that only what a change touches differs
// from src. It copies the data rather than hard-linking: a link would change
// the shared dataset's ctimes and link counts under other benchmarks.
func copyTree(src, dst string) error {
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			dirs = append(dirs, rel)
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, data, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chtimes(target, info.ModTime(), info.ModTime())
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		info, err := os.Stat(filepath.Join(src, dirs[i]))
		if err != nil {
			return err
		}
		t := filepath.Join(dst, dirs[i])
		if err := os.Chmod(t, info.Mode().Perm()); err != nil {
			return err
		}
		if err := os.Chtimes(t, info.ModTime(), info.ModTime()); err != nil {
			return err
		}
	}
	return nil
}

// replaceFile writes a file anew (a new inode, as an editor saving it).
func replaceFile(p string, data []byte) error {
	tmp := p + ".tmp-replace"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// applyChangeSmall applies the change "small" to the linked copy:
// remove a package of 10 MB or more with its dist-info (networkx, 19 MB),
// add a new package of about 5 MB of new content with a dist-info, append a
// line to 20 .py files. It returns the changed and added files' contents.
func applyChangeSmall(root string) (changed [][]byte, err error) {
	sp := filepath.Join(root, "lib/python3.11/site-packages")
	ents, err := os.ReadDir(sp)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.Name() == "networkx" || strings.HasPrefix(e.Name(), "networkx-") {
			if err := os.RemoveAll(filepath.Join(sp, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	// The new package: libcst's sources, each made new by a first line.
	var srcs []string
	_ = filepath.WalkDir(filepath.Join(sp, "libcst"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".py") {
			srcs = append(srcs, p)
		}
		return nil
	})
	sort.Strings(srcs)
	total := 0
	for i, p := range srcs {
		if total >= 5<<20 {
			break
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		data = append([]byte(fmt.Sprintf("# newpkg module %d\n", i)), data...)
		rel, _ := filepath.Rel(filepath.Join(sp, "libcst"), p)
		dst := filepath.Join(sp, "newpkg", rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return nil, err
		}
		changed = append(changed, data)
		total += len(data)
	}
	info := filepath.Join(sp, "newpkg-1.0.dist-info")
	if err := os.MkdirAll(info, 0o755); err != nil {
		return nil, err
	}
	for name, body := range map[string]string{"METADATA": "Metadata-Version: 2.1\nName: newpkg\nVersion: 1.0\n", "RECORD": "newpkg/__init__.py,,\n", "INSTALLER": "pip\n"} {
		if err := os.WriteFile(filepath.Join(info, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
		changed = append(changed, []byte(body))
	}
	// Append a line to 20 .py files of pygments' lexers.
	lexers, _ := filepath.Glob(filepath.Join(sp, "pygments/lexers/*.py"))
	sort.Strings(lexers)
	for _, p := range lexers[:20] {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		data = append(data, []byte("# changed\n")...)
		if err := replaceFile(p, data); err != nil {
			return nil, err
		}
		changed = append(changed, data)
	}
	return changed, nil
}

// BenchmarkStoreVenvChangeSmall stores venv-full, applies change "small" to
// a copy, stores that as the second snapshot (every file read
// again: the store's cost is the same as with the change index, which only
// saves reading), each with its change index, and reports what the second snapshot added to the store
// next to each changed and added file compressed alone at the same level
// (the bound: the per-file zstd -3 size, 1.74 MB with real zstd).
func BenchmarkStoreVenvChangeSmall(b *testing.B) {
	venvFull := venvfull.Dir(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		work := b.TempDir()
		changedDir := filepath.Join(work, "venv")
		if err := copyTree(venvFull, changedDir); err != nil {
			b.Fatal(err)
		}
		changed, err := applyChangeSmall(changedDir)
		if err != nil {
			b.Fatal(err)
		}
		s := openTest(b, filepath.Join(work, "store"))
		snapshot := func(id, dir string) WriterStats {
			w, _ := s.NewWriter(ctx)
			root, _, err := snapshotDir(ctx, w, dir, 3)
			if err != nil {
				b.Fatal(err)
			}
			idx, err := walkIndex(dir)
			if err != nil {
				b.Fatal(err)
			}
			if dir != venvFull {
				// The copy's files are new inodes: model a change made
				// in place by keeping the original's record of whatever
				// the change did not touch (same size and mtime).
				orig, err := walkIndex(venvFull)
				if err != nil {
					b.Fatal(err)
				}
				for p, r := range idx["rootfs"] {
					if o, ok := orig["rootfs"][p]; ok && o.Size == r.Size && o.MtimeNs == r.MtimeNs {
						idx["rootfs"][p] = o
					}
				}
			}
			if err := w.Commit(ctx, &Snapshot{ID: id, Engine: "dir", EnvID: "venv", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: root}}}, idx); err != nil {
				b.Fatal(err)
			}
			return w.Stats()
		}
		snapshot("one", venvFull)
		u1, _ := s.Usage(ctx)
		st := snapshot("two", changedDir)
		u2, _ := s.Usage(ctx)
		perFile := 0
		for _, data := range changed {
			perFile += len(s.encode(data))
		}
		b.ReportMetric(float64(u2.StoredBytes-u1.StoredBytes)/1e6, "MB-added-second")
		b.ReportMetric(float64(st.NewChunks), "new-chunks")
		b.ReportMetric(float64(perFile)/1e6, "MB-per-file-bound")
		b.ReportMetric(float64(len(changed)), "changed-files")
	}
}

// walkIndex builds the change index of a directory as the core would.
func walkIndex(root string) (ChangeIndex, error) {
	files := map[string]IndexRecord{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		files[rel] = IndexRecord{Size: info.Size(), MtimeNs: info.ModTime().UnixNano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}
		return nil
	})
	return ChangeIndex{"rootfs": files}, err
}
