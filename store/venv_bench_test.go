package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pypj/ptest-snap/internal/venvfull"
)

// dirJob is one file body to chunk and store.
type dirJob struct {
	path string
	node *Node
}

// snapshotDir stores the directory tree at root through w with a pool of
// workers (as the core does): one pass builds the trees' nodes, the workers
// store the file bodies, then the trees are stored bottom-up.
func snapshotDir(ctx context.Context, w *Writer, root string, workers int) (Hash, int64, error) {
	var jobs []dirJob
	var logical int64
	type dir struct {
		tree Tree
		subs map[int]*dir
	}
	var build func(p string) (*dir, error)
	build = func(p string) (*dir, error) {
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		d := &dir{subs: map[int]*dir{}}
		d.tree.Nodes = make([]Node, 0, len(ents))
		for _, e := range ents {
			fp := filepath.Join(p, e.Name())
			info, err := os.Lstat(fp)
			if err != nil {
				return nil, err
			}
			st := info.Sys().(*syscall.Stat_t)
			n := Node{Name: e.Name(), Mode: uint32(info.Mode().Perm()), UID: st.Uid, GID: st.Gid, MtimeNs: info.ModTime().UnixNano()}
			switch {
			case info.Mode().IsRegular():
				n.Type, n.Size = NodeFile, info.Size()
				logical += n.Size
			case info.IsDir():
				n.Type = NodeDir
				sub, err := build(fp)
				if err != nil {
					return nil, err
				}
				d.subs[len(d.tree.Nodes)] = sub
			case info.Mode()&os.ModeSymlink != 0:
				n.Type = NodeSymlink
				if n.LinkTarget, err = os.Readlink(fp); err != nil {
					return nil, err
				}
			default:
				continue
			}
			d.tree.Nodes = append(d.tree.Nodes, n)
		}
		for i := range d.tree.Nodes {
			if d.tree.Nodes[i].Type == NodeFile {
				jobs = append(jobs, dirJob{filepath.Join(p, d.tree.Nodes[i].Name), &d.tree.Nodes[i]})
			}
		}
		return d, nil
	}
	top, err := build(root)
	if err != nil {
		return Hash{}, 0, err
	}
	ch := make(chan dirJob)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *Chunker
			for j := range ch {
				f, err := os.Open(j.path)
				if err != nil {
					errs <- err
					continue
				}
				if c == nil {
					c = NewChunker(f)
				} else {
					c.Reset(f)
				}
				for {
					data, err := c.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						errs <- err
						break
					}
					h, err := w.PutChunk(ctx, data)
					if err != nil {
						errs <- err
						break
					}
					j.node.Content = append(j.node.Content, h)
				}
				f.Close()
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errs:
		return Hash{}, 0, err
	default:
	}
	var put func(d *dir) (Hash, error)
	put = func(d *dir) (Hash, error) {
		for i, sub := range d.subs {
			h, err := put(sub)
			if err != nil {
				return Hash{}, err
			}
			d.tree.Nodes[i].Subtree = h
		}
		return w.PutTree(ctx, &d.tree)
	}
	h, err := put(top)
	return h, logical, err
}

// BenchmarkStoreVenvFull stores every file of venv-full into a new store
// through a Writer with 3 workers (as the core does), commits, reads every
// file back in tree order with 3 workers (as a restore does), closes, and
// reports write and read throughput over the logical bytes, the store's
// final size and the process's peak RSS, at zstd levels (1 fastest,
// 2 default) for packs and for big chunks stored alone (packs=2/big=1 is
// the store's default, see bigChunkLevel).
func BenchmarkStoreVenvFull(b *testing.B) {
	venvFull := venvfull.Dir(b)
	for _, c := range []struct{ packs, big int }{{2, 1}, {2, 2}, {1, 1}} {
		b.Run(fmt.Sprintf("packs=%d/big=%d", c.packs, c.big), func(b *testing.B) { benchStoreVenv(b, venvFull, c.packs, c.big) })
	}
}

func benchStoreVenv(b *testing.B, venvFull string, level, bigLevel int) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		s, err := Open(ctx, Options{Dir: dir, CompressionLevel: level, bigChunkLevel: bigLevel})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		w, _ := s.NewWriter(ctx)
		root, logical, err := snapshotDir(ctx, w, venvFull, 3)
		if err != nil {
			b.Fatal(err)
		}
		snap := &Snapshot{ID: "venv", Engine: "dir", EnvID: "venv-full", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: root}}}
		if err := w.Commit(ctx, snap, nil); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		if p := os.Getenv("PTEST_SNAP_HEAP_PROFILE"); p != "" {
			if f, err := os.Create(p); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		// A second snapshot of the unchanged env, as the core makes it
		// with the change index: every tree put again, every file's
		// chunk list reused (referenced, not read).
		start2 := time.Now()
		w2, _ := s.NewWriter(ctx)
		root2, err := reputTrees(ctx, s, w2, root)
		if err != nil {
			b.Fatal(err)
		}
		snap2 := &Snapshot{ID: "venv2", Engine: "dir", EnvID: "venv-full", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: root2}}}
		if err := w2.Commit(ctx, snap2, nil); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start2).Seconds(), "s-second-unchanged")
		b.ReportMetric(float64(w2.Stats().NewChunks), "new-chunks-second")
		readMBs, err := readAllFiles(ctx, s, root, 3)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(readMBs, "MB/s-read")
		b.ReportMetric(float64(s.packLoads.Load()), "pack-loads")
		u, err := s.Usage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		disk, _ := dirSize(dir)
		b.SetBytes(logical)
		b.ReportMetric(float64(logical)/1e6/elapsed.Seconds(), "MB/s-write")
		b.ReportMetric(float64(u.StoredBytes)/1e6, "MB-stored")
		b.ReportMetric(float64(disk)/1e6, "MB-disk-closed")
		b.ReportMetric(float64(u.Chunks), "chunks")
		b.ReportMetric(float64(u.Packs), "packs")
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.Sys)/1e6, "MB-go-sys")
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
			b.ReportMetric(float64(ru.Maxrss)/1024, "MB-peak-rss")
		}
	}
}

// walkFiles calls fn with the content of every regular file under root.
func walkFiles(tb testing.TB, root string, fn func([]byte)) {
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil {
			fn(data)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// readAllFiles reads every file's chunks in tree order with a pool of
// workers, as a restore does, and returns the read throughput in MB/s.
func readAllFiles(ctx context.Context, s *Store, root Hash, workers int) (float64, error) {
	start := time.Now()
	var order []Hash
	var walk func(h Hash) error
	walk = func(h Hash) error {
		t, err := s.GetTree(ctx, h)
		if err != nil {
			return err
		}
		for _, n := range t.Nodes {
			order = append(order, n.Content...)
			if n.Type == NodeDir {
				if err := walk(n.Subtree); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return 0, err
	}
	ch := make(chan Hash, 64)
	var total atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range ch {
				data, err := s.GetChunk(ctx, h)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				total.Add(int64(len(data)))
			}
		}()
	}
	for _, h := range order {
		ch <- h
	}
	close(ch)
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(total.Load()) / 1e6 / time.Since(start).Seconds(), nil
}

// reputTrees puts every tree under root again through w, bottom-up.
func reputTrees(ctx context.Context, s *Store, w *Writer, root Hash) (Hash, error) {
	t, err := s.GetTree(ctx, root)
	if err != nil {
		return Hash{}, err
	}
	for i := range t.Nodes {
		if t.Nodes[i].Type == NodeDir {
			if t.Nodes[i].Subtree, err = reputTrees(ctx, s, w, t.Nodes[i].Subtree); err != nil {
				return Hash{}, err
			}
		}
	}
	return w.PutTree(ctx, t)
}
