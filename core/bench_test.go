package core

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pypj/ptest-snap/internal/venvfull"
	"github.com/pypj/ptest-snap/pluginapi"
)

// benchScratch is where the benchmark copies the dataset; override with
// PTEST_SNAP_BENCH_SCRATCH.
func benchScratch(b *testing.B) string {
	dir := os.Getenv("PTEST_SNAP_BENCH_SCRATCH")
	if dir == "" {
		dir = os.TempDir()
	}
	d, err := os.MkdirTemp(dir, "core-bench-")
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func sh(b *testing.B, script string) time.Duration {
	b.Helper()
	exec.Command("sync").Run()
	start := time.Now()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
	return time.Since(start)
}

func timed(b *testing.B, fn func() error) time.Duration {
	b.Helper()
	exec.Command("sync").Run()
	start := time.Now()
	if err := fn(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// cpuSeconds returns the user+system CPU time of this process (who =
// RUSAGE_SELF) or of its waited-for children (RUSAGE_CHILDREN).
func cpuSeconds(who int) float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func maxRSSMB() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024
}

// BenchmarkVenvFull runs the foundation issue's scenario on venv-full with
// the in-process directory engine, side by side with its peers, and reports
// each time and the ratios against the targets:
//
//	initial create ≤ 1.5 × tar -cf - X | zstd -1 -T0
//	second create after change small ≤ 0.15 × initial create
//	restore to an empty directory ≤ 1.0 × cp -a
//	in-place restore undoing change small ≤ 0.1 × restore
//	peak RSS ≤ 300 MB
//
// Run: go test -run '^$' -bench VenvFull -benchtime 1x ./core/
// (the first create of the process is what peak-create-RSS measures).
func BenchmarkVenvFull(b *testing.B) {
	benchDataset := venvfull.Dir(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		scratch := benchScratch(b)
		x := filepath.Join(scratch, "X")
		sh(b, fmt.Sprintf("cp -a %s %s", benchDataset, x))
		m := openManagerAt(b, filepath.Join(scratch, "store"), map[string]pluginapi.Engine{"dir": newDirEngine()})

		c0 := cpuSeconds(syscall.RUSAGE_CHILDREN)
		tTar := sh(b, fmt.Sprintf("tar -cf - -C %s . | zstd -1 -T0 >/dev/null", x))
		cpuTar := cpuSeconds(syscall.RUSAGE_CHILDREN) - c0
		c0 = cpuSeconds(syscall.RUSAGE_SELF)
		var s1ID string
		tCreate := timed(b, func() error {
			s, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: x})
			if err == nil {
				s1ID = s.ID
			}
			return err
		})
		cpuCreate := cpuSeconds(syscall.RUSAGE_SELF) - c0
		rssCreate := maxRSSMB()
		usage, _ := m.Store().Usage(ctx)

		tCp := sh(b, fmt.Sprintf("cp -a %s %s", x, filepath.Join(scratch, "cp")))
		tRestore := timed(b, func() error {
			_, err := m.Restore(ctx, RestoreOptions{Ref: s1ID, Target: filepath.Join(scratch, "restored")})
			return err
		})

		if err := changeSmall(x); err != nil {
			b.Fatal(err)
		}
		var s2New int64
		tSecond := timed(b, func() error {
			s, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: x})
			if err == nil {
				s2New = s.Stats.StoredBytes
			}
			return err
		})
		var inplace *RestoreResult
		tInPlace := timed(b, func() error {
			var err error
			inplace, err = m.Restore(ctx, RestoreOptions{Ref: s1ID, Target: x, InPlace: true})
			return err
		})

		b.ReportMetric(tTar.Seconds(), "tar-zstd-s")
		b.ReportMetric(tCreate.Seconds(), "create-s")
		b.ReportMetric(tCreate.Seconds()/tTar.Seconds(), "create/tar(≤1.5)")
		b.ReportMetric(cpuTar, "tar-zstd-cpu-s")
		b.ReportMetric(cpuCreate, "create-cpu-s")
		b.ReportMetric(tSecond.Seconds(), "second-s")
		b.ReportMetric(tSecond.Seconds()/tCreate.Seconds(), "second/create(≤0.15)")
		b.ReportMetric(tCp.Seconds(), "cp-a-s")
		b.ReportMetric(tRestore.Seconds(), "restore-s")
		b.ReportMetric(tRestore.Seconds()/tCp.Seconds(), "restore/cp(≤1.0)")
		b.ReportMetric(tInPlace.Seconds(), "inplace-s")
		b.ReportMetric(tInPlace.Seconds()/tRestore.Seconds(), "inplace/restore(≤0.1)")
		b.ReportMetric(rssCreate, "create-peak-RSS-MB")
		b.ReportMetric(maxRSSMB(), "peak-RSS-MB")
		b.ReportMetric(float64(usage.DiskBytes)/1e6, "store-MB")
		b.ReportMetric(float64(s2New)/1e6, "second-stored-MB")
		b.Logf("in-place undo: %+v", inplace.Stats)

		m.Close()
		os.RemoveAll(scratch)
	}
}

// changeSmall applies change `small` to the venv at x: remove the smallest
// top-level package of at least 10 MB with its dist-info, add a package of
// about 5 MB of new content with a dist-info, and append a line to 20 .py
// files elsewhere.
func changeSmall(x string) error {
	sps, _ := filepath.Glob(filepath.Join(x, "lib", "python3*", "site-packages"))
	if len(sps) != 1 {
		return fmt.Errorf("no site-packages in %s", x)
	}
	sp := sps[0]
	ents, err := os.ReadDir(sp)
	if err != nil {
		return err
	}
	var victim, victimInfo string
	var best int64
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".dist-info") {
			continue
		}
		infos, _ := filepath.Glob(filepath.Join(sp, e.Name()+"-*.dist-info"))
		if len(infos) != 1 {
			continue
		}
		var size int64
		filepath.WalkDir(filepath.Join(sp, e.Name()), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					size += fi.Size()
				}
			}
			return nil
		})
		if size >= 10<<20 && (best == 0 || size < best) {
			best, victim, victimInfo = size, filepath.Join(sp, e.Name()), infos[0]
		}
	}
	if victim == "" {
		return fmt.Errorf("no package of 10 MB in %s", sp)
	}
	if err := os.RemoveAll(victim); err != nil {
		return err
	}
	if err := os.RemoveAll(victimInfo); err != nil {
		return err
	}
	// ~5 MB of new content: 40 modules of ~128 KiB of random text.
	rng := rand.New(rand.NewPCG(1, 2))
	pkg := filepath.Join(sp, "ptestsnap_newpkg")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		return err
	}
	const letters = "abcdefghijklmnopqrstuvwxyz_ =()\n"
	for i := 0; i < 40; i++ {
		buf := make([]byte, 128<<10)
		for j := range buf {
			buf[j] = letters[rng.IntN(len(letters))]
		}
		if err := os.WriteFile(filepath.Join(pkg, fmt.Sprintf("mod%02d.py", i)), buf, 0o644); err != nil {
			return err
		}
	}
	info := filepath.Join(sp, "ptestsnap_newpkg-1.0.dist-info")
	if err := os.MkdirAll(info, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(info, "METADATA"), []byte("Metadata-Version: 2.1\nName: ptestsnap-newpkg\nVersion: 1.0\n"), 0o644); err != nil {
		return err
	}
	// 20 .py files of other packages get a line.
	var pys []string
	filepath.WalkDir(sp, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".py") && !strings.HasPrefix(p, pkg) {
			pys = append(pys, p)
		}
		return nil
	})
	sort.Strings(pys)
	for k := 0; k < 20; k++ {
		p := pys[(k*7919)%len(pys)]
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString("# ptest-snap change small\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkCreateVenvFull is the initial create alone, for profiling
// (-cpuprofile, -memprofile).
func BenchmarkCreateVenvFull(b *testing.B) {
	benchDataset := venvfull.Dir(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		scratch := benchScratch(b)
		m := openManagerAt(b, filepath.Join(scratch, "store"), map[string]pluginapi.Engine{"dir": newDirEngine()})
		exec.Command("sync").Run()
		stop := heapWatch(b, os.Getenv("PTEST_SNAP_HEAP_PROFILE"))
		b.StartTimer()
		if _, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: benchDataset}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		stop()
		b.ReportMetric(maxRSSMB(), "peak-RSS-MB")
		m.Close()
		os.RemoveAll(scratch)
	}
}

// heapWatch writes a heap profile to path each time the live heap reaches
// a new high (checked every 200 ms), to see what a peak consists of.
func heapWatch(b *testing.B, path string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var high uint64
		var anon, file int64
		defer func() { b.Logf("max RssAnon %d MB, max RssFile %d MB", anon>>10, file>>10) }()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			a, f := rssParts()
			anon, file = max(anon, a), max(file, f)
			if path == "" {
				continue
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > high {
				high = ms.HeapAlloc
				if f, err := os.Create(path); err == nil {
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// rssParts returns the process's anonymous and file-backed resident KiB.
func rssParts() (anon, file int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		var v int64
		if _, err := fmt.Sscanf(line, "RssAnon: %d kB", &v); err == nil {
			anon = v
		}
		if _, err := fmt.Sscanf(line, "RssFile: %d kB", &v); err == nil {
			file = v
		}
	}
	return anon, file
}

// BenchmarkInPlaceUndoSmall times the in-place restore that undoes change
// small on a copy of venv-full, and its parts: one index-only listing of
// the target (the restore makes one before and, when it rewrote anything,
// one after). Set PTEST_SNAP_BENCH_PAUSE=30s to wait out the file system's
// slow-create period after change small's deletions.
func BenchmarkInPlaceUndoSmall(b *testing.B) {
	benchDataset := venvfull.Dir(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		scratch := benchScratch(b)
		x := filepath.Join(scratch, "X")
		sh(b, fmt.Sprintf("cp -a %s %s", benchDataset, x))
		eng := newDirEngine()
		m, err := Open(ctx, Options{StoreDir: filepath.Join(scratch, "store"),
			Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Engines: func(context.Context, string) (pluginapi.Engine, error) { return eng, nil }})
		if err != nil {
			b.Fatal(err)
		}
		s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: x})
		if err != nil {
			b.Fatal(err)
		}
		if err := changeSmall(x); err != nil {
			b.Fatal(err)
		}
		if d, err := time.ParseDuration(os.Getenv("PTEST_SNAP_BENCH_PAUSE")); err == nil {
			time.Sleep(d)
		}
		tList := timed(b, func() error { _, err := captureIndex(ctx, eng, x, nil, nil); return err })
		exec.Command("sync").Run()
		b.StartTimer()
		res, err := m.Restore(ctx, RestoreOptions{Ref: s1.ID, Target: x, InPlace: true})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(tList.Seconds(), "list-s")
		b.Logf("stats %+v", res.Stats)
		m.Close()
		os.RemoveAll(scratch)
	}
}

// BenchmarkRestoreVenvFull restores venv-full to an empty directory, side
// by side with cp -a of the same tree (target: restore ≤ 1.0 × cp -a).
func BenchmarkRestoreVenvFull(b *testing.B) {
	benchDataset := venvfull.Dir(b)
	ctx := context.Background()
	b.StopTimer()
	scratch := benchScratch(b)
	// Cleanups run last-in first-out: the store closes before its files go.
	b.Cleanup(func() { os.RemoveAll(scratch) })
	m := openManagerAt(b, filepath.Join(scratch, "store"), map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: benchDataset})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		tCp := sh(b, fmt.Sprintf("cp -a %s %s", benchDataset, filepath.Join(scratch, fmt.Sprint("cp", i))))
		c0 := cpuSeconds(syscall.RUSAGE_SELF)
		exec.Command("sync").Run()
		start := time.Now()
		b.StartTimer()
		_, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: filepath.Join(scratch, fmt.Sprint("r", i))})
		b.StopTimer()
		tRestore := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(tCp.Seconds(), "cp-a-s")
		b.ReportMetric(tRestore.Seconds(), "restore-s")
		b.ReportMetric(tRestore.Seconds()/tCp.Seconds(), "restore/cp(≤1.0)")
		b.ReportMetric(cpuSeconds(syscall.RUSAGE_SELF)-c0, "restore-cpu-s")
	}
}

// BenchmarkSecondCreateSmall times the create after change small, with the
// parent, alone (for -cpuprofile).
func BenchmarkSecondCreateSmall(b *testing.B) {
	benchDataset := venvfull.Dir(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		scratch := benchScratch(b)
		x := filepath.Join(scratch, "X")
		sh(b, fmt.Sprintf("cp -a %s %s", benchDataset, x))
		m := openManagerAt(b, filepath.Join(scratch, "store"), map[string]pluginapi.Engine{"dir": newDirEngine()})
		if _, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: x}); err != nil {
			b.Fatal(err)
		}
		if err := changeSmall(x); err != nil {
			b.Fatal(err)
		}
		exec.Command("sync").Run()
		b.StartTimer()
		s, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: x})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("stats %+v", s.Stats)
		m.Close()
		os.RemoveAll(scratch)
	}
}
