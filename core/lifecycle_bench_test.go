package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pypj/ptest-snap/internal/venvfull"
)

// BenchmarkLifecycleVenvFull measures the lifecycle operations on the
// shared venv-full dataset (460 MB, 38,542 files): export to a pipe-like
// writer, import into a second store, list with exclusive sizes, stats
// and diff. Run: go test ./core -run XXX -bench LifecycleVenvFull -benchtime 1x
func BenchmarkLifecycleVenvFull(b *testing.B) {
	benchDataset := venvfull.Dir(b)
	ctx := context.Background()
	scratch := os.Getenv("PTEST_SNAP_BENCH_SCRATCH")
	if scratch == "" {
		scratch = b.TempDir()
	}
	for i := 0; i < b.N; i++ {
		base, err := os.MkdirTemp(scratch, "lc-bench-")
		if err != nil {
			b.Fatal(err)
		}
		m := lcOpenAt(b, filepath.Join(base, "src"), withDirEngine)
		s, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: benchDataset})
		if err != nil {
			b.Fatal(err)
		}
		logical := float64(s.Stats.LogicalBytes)
		fmt.Fprintf(os.Stderr, "created %s %d bytes\n", s.ID, s.Stats.LogicalBytes)
		pr, pw := io.Pipe()
		var written int64
		done := make(chan error, 1)
		go func() {
			n, err := io.Copy(io.Discard, pr)
			written = n
			done <- err
		}()
		t0 := time.Now()
		_, err = m.Export(ctx, []string{s.ID}, pw, nil)
		pw.CloseWithError(err)
		if err != nil {
			b.Fatal(err)
		}
		<-done
		exportDur := time.Since(t0)
		fmt.Fprintf(os.Stderr, "export %v\n", exportDur)

		// Import from a file, as a user would.
		f := filepath.Join(base, "a.ptsa")
		out, _ := os.Create(f)
		if _, err := m.Export(ctx, []string{s.ID}, out, nil); err != nil {
			b.Fatal(err)
		}
		out.Close()
		dst := lcOpenAt(b, filepath.Join(base, "dst"))
		in, _ := os.Open(f)
		t0 = time.Now()
		if _, err := dst.Import(ctx, in, ImportOptions{}); err != nil {
			b.Fatal(err)
		}
		importDur := time.Since(t0)
		fmt.Fprintf(os.Stderr, "import %v\n", importDur)
		in.Close()

		t0 = time.Now()
		if _, err := m.List(ctx, ListOptions{Sizes: true}); err != nil {
			b.Fatal(err)
		}
		listDur := time.Since(t0)
		fmt.Fprintf(os.Stderr, "list %v\n", listDur)
		t0 = time.Now()
		if _, err := m.Stats(ctx); err != nil {
			b.Fatal(err)
		}
		statsDur := time.Since(t0)
		fmt.Fprintf(os.Stderr, "stats %v\n", statsDur)
		s2, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: benchDataset})
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if _, err := m.Diff(ctx, s.ID, s2.ID); err != nil {
			b.Fatal(err)
		}
		diffDur := time.Since(t0)
		fmt.Fprintf(os.Stderr, "diff %v\n", diffDur)
		// Close before removing: Badger retries a memtable flush into a
		// deleted directory forever.
		m.CloseEvents()
		dst.CloseEvents()
		if err := errors.Join(m.Close(), dst.Close()); err != nil {
			b.Fatal(err)
		}

		b.ReportMetric(logical/1e6/exportDur.Seconds(), "export-MB/s")
		b.ReportMetric(float64(written)/1e6, "archive-MB")
		b.ReportMetric(logical/1e6/importDur.Seconds(), "import-MB/s")
		b.ReportMetric(listDur.Seconds(), "list-sizes-s")
		b.ReportMetric(statsDur.Seconds(), "stats-s")
		b.ReportMetric(diffDur.Seconds(), "diff-s")
		os.RemoveAll(base)
	}
}
