package fstree

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/internal/venvfull"
	"github.com/pypj/ptest-snap/pluginapi"
)

// The benchmarks run on the shared dataset venv-full ($PTEST_SNAP_VENV_FULL,
// default /work/data/venv-full; they skip when it is absent) and compare
// with the command-line tools in the same run; compare ratios, not
// absolute times, on a shared machine:
//
//	go test -run '^$' -bench . -benchtime 3x ./pluginapi/fstree/

// countingWriter consumes bodies the cheapest way, or hashes them as the
// store does.
type countingWriter struct {
	hash    bool
	entries int
	bytes   int64
	buf     []byte
}

func (w *countingWriter) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }
func (w *countingWriter) BeginStream(context.Context, string) error               { return nil }

func (w *countingWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	w.entries++
	if body == nil {
		return nil
	}
	if !w.hash {
		n, err := io.CopyBuffer(io.Discard, body, w.buf)
		w.bytes += n
		return err
	}
	h := blake3.New()
	n, err := io.CopyBuffer(h, body, w.buf)
	w.bytes += n
	h.Sum(nil)
	return err
}

func runShell(b *testing.B, script string) {
	b.Helper()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// BenchmarkCaptureVenvFull captures venv-full into a writer that discards
// bodies and into one that BLAKE3-hashes them (as the store does, but on
// one goroutine), and runs tar | zstd -1 -T0 on the same tree in the same
// iteration, reporting each time and the ratios to tar | zstd.
func BenchmarkCaptureVenvFull(b *testing.B) {
	venvFull := venvfull.Dir(b)
	parentDir, name := filepath.Split(venvFull)
	capture := func(hash bool) *countingWriter {
		w := &countingWriter{hash: hash, buf: make([]byte, 256<<10)}
		if err := Capture(context.Background(), venvFull, CaptureOptions{Stream: "rootfs"}, w); err != nil {
			b.Fatal(err)
		}
		return w
	}
	capture(false) // warm the page cache
	var discard, hashed, tarZstd, discardCPU, tarZstdCPU time.Duration
	var w *countingWriter
	for b.Loop() {
		cpu0 := cpuTime()
		discard += timed(func() { w = capture(false) })
		discardCPU += cpuTime() - cpu0
		hashed += timed(func() { capture(true) })
		cpu0 = childrenCPUTime()
		tarZstd += timed(func() { runShell(b, "tar -cf - -C "+parentDir+" "+name+" | zstd -q -1 -T0 >/dev/null") })
		tarZstdCPU += childrenCPUTime() - cpu0
	}
	n := float64(b.N)
	b.ReportMetric(discardCPU.Seconds()/n, "discard-cpu-s/op")
	b.ReportMetric(tarZstdCPU.Seconds()/n, "tar-zstd-cpu-s/op")
	b.ReportMetric(discard.Seconds()/n, "discard-s/op")
	b.ReportMetric(hashed.Seconds()/n, "blake3-s/op")
	b.ReportMetric(tarZstd.Seconds()/n, "tar-zstd-s/op")
	b.ReportMetric(discard.Seconds()/tarZstd.Seconds(), "discard/tar-zstd")
	b.ReportMetric(hashed.Seconds()/tarZstd.Seconds(), "blake3/tar-zstd")
	b.ReportMetric(float64(w.entries), "entries")
	b.ReportMetric(float64(w.bytes)/1e6, "MB")
}

// BenchmarkApplyVenvFull restores venv-full, captured into memory first,
// into a fresh empty directory, and runs cp -a of the same tree into
// another fresh directory in the same iteration (alternating which goes
// first), reporting each time and the ratio. Nothing is deleted until the
// end: creating files soon after deleting many is several times slower on
// these machines.
func BenchmarkApplyVenvFull(b *testing.B) {
	venvFull := venvfull.Dir(b)
	scratch, err := os.MkdirTemp(os.Getenv("FSTREE_BENCH_DIR"), "fstree-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(scratch) })
	snap := &memWriter{}
	if err := Capture(context.Background(), venvFull, CaptureOptions{Stream: "rootfs"}, snap); err != nil {
		b.Fatal(err)
	}
	n := 0
	fresh := func() string {
		n++
		return filepath.Join(scratch, fmt.Sprint(n))
	}
	apply := func() {
		a, err := NewApplier(fresh(), ApplyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := ApplyAll(context.Background(), &memReader{recs: snap.recs}, map[string]*Applier{"rootfs": a}); err != nil {
			b.Fatal(err)
		}
	}
	cp := func() { runShell(b, "cp -a "+venvFull+" "+fresh()) }
	var ours, theirs, oursCPU, theirsCPU time.Duration
	measure := func(f func(), wall, cpu *time.Duration, cpuNow func() time.Duration) {
		runShell(b, "sync")
		c := cpuNow()
		*wall += timed(f)
		*cpu += cpuNow() - c
	}
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			measure(apply, &ours, &oursCPU, cpuTime)
			measure(cp, &theirs, &theirsCPU, childrenCPUTime)
		} else {
			measure(cp, &theirs, &theirsCPU, childrenCPUTime)
			measure(apply, &ours, &oursCPU, cpuTime)
		}
		i++
	}
	b.ReportMetric(oursCPU.Seconds()/float64(b.N), "fstree-cpu-s/op")
	b.ReportMetric(theirsCPU.Seconds()/float64(b.N), "cp-a-cpu-s/op")
	b.ReportMetric(ours.Seconds()/float64(b.N), "fstree-s/op")
	b.ReportMetric(theirs.Seconds()/float64(b.N), "cp-a-s/op")
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "fstree/cp-a")
}

// BenchmarkApplyInPlaceVenvFull resets a copy of venv-full in place after
// 20 of its .py files were appended to and 20 extra files added: every
// other entry comes marked Unchanged, as the host plans it. This is the
// engine's share of the "undo a test run" restore.
func BenchmarkApplyInPlaceVenvFull(b *testing.B) {
	venvFull := venvfull.Dir(b)
	scratch, err := os.MkdirTemp(os.Getenv("FSTREE_BENCH_DIR"), "fstree-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(scratch) })
	snap := &memWriter{}
	if err := Capture(context.Background(), venvFull, CaptureOptions{Stream: "rootfs"}, snap); err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(scratch, "venv")
	a, err := NewApplier(target, ApplyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := ApplyAll(context.Background(), &memReader{recs: snap.recs}, map[string]*Applier{"rootfs": a}); err != nil {
		b.Fatal(err)
	}
	// 20 .py files are appended to and an extra file is added beside
	// each: the host would find those files and their directories changed
	// (a directory's mtime moves when an entry is added).
	changed := make(map[string]bool)
	var changedFiles []string
	for i, r := range snap.recs {
		if len(changedFiles) < 20 && r.e.Type == pluginapi.TypeFile && filepath.Ext(r.e.Path) == ".py" && i%97 == 0 {
			changedFiles = append(changedFiles, r.e.Path)
			changed[r.e.Path] = true
			changed[filepath.Dir(r.e.Path)] = true
		}
	}
	plan := make([]record, len(snap.recs))
	for i, r := range snap.recs {
		if !changed[r.e.Path] {
			r.e.Unchanged, r.body, r.hasBody = true, nil, false
		}
		plan[i] = r
	}
	dirtyRun := func() {
		for k, rel := range changedFiles {
			p := filepath.Join(target, rel)
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintln(f, "# changed by a test run")
			f.Close()
			if err := os.WriteFile(filepath.Join(filepath.Dir(p), fmt.Sprintf("extra-%d.txt", k)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, trust := range []bool{false, true} {
		name := "list-all"
		if trust {
			name = "trust-unchanged-dirs"
		}
		b.Run(name, func(b *testing.B) {
			var finish, finishCPU, cpuAll time.Duration
			for b.Loop() {
				b.StopTimer()
				dirtyRun()
				b.StartTimer()
				cpu0 := cpuTime()
				a, err := NewApplier(target, ApplyOptions{InPlace: true, TrustUnchangedDirs: trust})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range plan {
					var body io.Reader
					if r.hasBody {
						body = bytes.NewReader(r.body)
					}
					if err := a.Apply(context.Background(), &r.e, body); err != nil {
						b.Fatal(err)
					}
				}
				cpu1 := cpuTime()
				finish += timed(func() {
					if err := a.Finish(context.Background()); err != nil {
						b.Fatal(err)
					}
				})
				finishCPU += cpuTime() - cpu1
				cpuAll += cpuTime() - cpu0
				for k, rel := range changedFiles {
					if _, err := os.Lstat(filepath.Join(target, filepath.Dir(rel), fmt.Sprintf("extra-%d.txt", k))); err == nil {
						b.Fatal("extra file left")
					}
				}
			}
			n := float64(b.N)
			b.ReportMetric(finish.Seconds()/n, "finish-s/op")
			b.ReportMetric(finishCPU.Seconds()/n, "finish-cpu-s/op")
			b.ReportMetric(cpuAll.Seconds()/n, "cpu-s/op")
		})
	}
}

// cpuTime is the user and system CPU time used by this process so far: on
// a busy shared machine it says more than wall time.
func cpuTime() time.Duration { return rusage(unix.RUSAGE_SELF) }

// childrenCPUTime is the CPU time of the commands this process ran and
// waited for (tar, zstd, cp), so far.
func childrenCPUTime() time.Duration { return rusage(unix.RUSAGE_CHILDREN) }

func rusage(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCaptureIndexOnlyVenvFull is the walk the host makes of a target
// before an in-place restore: every entry, no body.
func BenchmarkCaptureIndexOnlyVenvFull(b *testing.B) {
	venvFull := venvfull.Dir(b)
	var cpu time.Duration
	for b.Loop() {
		c := cpuTime()
		w := &countingWriter{}
		if err := Capture(context.Background(), venvFull, CaptureOptions{Stream: "rootfs", IndexOnly: true}, w); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkCaptureUnchangedVenvFull captures venv-full with the change
// index of a first capture, so every file is unchanged (a second create
// without changes), alternating without and with ParentXattrs in the same
// iteration, and reports the CPU time of each.
func BenchmarkCaptureUnchangedVenvFull(b *testing.B) {
	venvFull := venvfull.Dir(b)
	first := &memIndexWriter{}
	if err := Capture(context.Background(), venvFull, CaptureOptions{Stream: "rootfs", IndexOnly: true}, first); err != nil {
		b.Fatal(err)
	}
	parent := pluginapi.ParentIndex{"rootfs": first.idx}
	capture := func(parentXattrs bool) {
		w := &countingWriter{buf: make([]byte, 256<<10)}
		opts := CaptureOptions{Stream: "rootfs", Parent: parent, ParentXattrs: parentXattrs}
		if err := Capture(context.Background(), venvFull, opts, w); err != nil {
			b.Fatal(err)
		}
		if w.bytes != 0 {
			b.Fatalf("%d bytes read from unchanged files", w.bytes)
		}
	}
	var readCPU, parentCPU time.Duration
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first.
		for j := range 2 {
			withParent := (i+j)%2 == 1
			cpu0 := cpuTime()
			capture(withParent)
			if withParent {
				parentCPU += cpuTime() - cpu0
			} else {
				readCPU += cpuTime() - cpu0
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(readCPU.Seconds()/n, "read-xattrs-cpu-s/op")
	b.ReportMetric(parentCPU.Seconds()/n, "parent-xattrs-cpu-s/op")
	b.ReportMetric(float64(len(first.idx)), "files")
}

// memIndexWriter keeps the change index of a capture's regular files.
type memIndexWriter struct {
	idx map[string]pluginapi.IndexEntry
}

func (w *memIndexWriter) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }
func (w *memIndexWriter) BeginStream(context.Context, string) error               { return nil }

func (w *memIndexWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, _ io.Reader) error {
	if w.idx == nil {
		w.idx = make(map[string]pluginapi.IndexEntry)
	}
	if e.Type == pluginapi.TypeFile {
		w.idx[e.Path] = pluginapi.IndexEntry{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
	}
	return nil
}
