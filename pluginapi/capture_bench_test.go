package pluginapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/pypj/ptest-snap/internal/venvfull"
	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/plugins/dir"
)

// hashingWriter is the host-side writer of the capture benchmarks: it
// BLAKE3-hashes every body, as the store's chunker would, and counts.
type hashingWriter struct {
	h       *blake3.Hasher
	sum     [32]byte
	bytes   int64
	entries int
}

func (w *hashingWriter) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }
func (w *hashingWriter) BeginStream(context.Context, string) error               { return nil }

func (w *hashingWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	w.entries++
	if body == nil {
		return nil
	}
	w.h.Reset()
	n, err := io.Copy(w.h, body)
	w.bytes += n
	w.h.Sum(w.sum[:0])
	if err == nil && n != e.Size {
		err = fmt.Errorf("%s: %d bytes for size %d", e.Path, n, e.Size)
	}
	return err
}

// captureOnce captures target with e into a fresh hashingWriter.
func captureOnce(b *testing.B, e pluginapi.Engine, target string) *hashingWriter {
	w := &hashingWriter{h: blake3.New()}
	if err := e.Capture(context.Background(), &pluginapi.CaptureRequest{Target: target}, w); err != nil {
		b.Fatal(err)
	}
	return w
}

// cpuSeconds returns the user+system CPU time of this process.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// procCPUSeconds returns the user+system CPU time of process pid.
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// benchPaired captures target alternately in-process and through the
// plugin, so both see the same machine load, and reports each one's
// throughput, their ratio, and the CPU seconds each spent per capture.
func benchPaired(b *testing.B, target string, inproc pluginapi.Engine, plugin *pluginapi.Plugin) {
	// Warm the page cache and both engines.
	captureOnce(b, inproc, target)
	captureOnce(b, plugin, target)

	var inWall, plWall time.Duration
	var inCPU, plHostCPU, plPluginCPU float64
	var bytes int64
	var pairRatios []float64
	for b.Loop() {
		c0, t0 := cpuSeconds(), time.Now()
		w := captureOnce(b, inproc, target)
		inThis := time.Since(t0)
		inWall += inThis
		inCPU += cpuSeconds() - c0

		c0, p0, t0 := cpuSeconds(), procCPUSeconds(plugin.PID()), time.Now()
		wp := captureOnce(b, plugin, target)
		plThis := time.Since(t0)
		plWall += plThis
		pairRatios = append(pairRatios, 100*inThis.Seconds()/plThis.Seconds())
		plHostCPU += cpuSeconds() - c0
		plPluginCPU += procCPUSeconds(plugin.PID()) - p0
		if wp.bytes != w.bytes || wp.entries != w.entries {
			b.Fatalf("plugin captured %d entries, %d bytes; in-process %d, %d", wp.entries, wp.bytes, w.entries, w.bytes)
		}
		bytes = w.bytes
	}
	n := float64(b.N)
	inMBps := float64(bytes) * n / inWall.Seconds() / 1e6
	plMBps := float64(bytes) * n / plWall.Seconds() / 1e6
	b.ReportMetric(inMBps, "inproc-MB/s")
	b.ReportMetric(plMBps, "plugin-MB/s")
	b.ReportMetric(100*plMBps/inMBps, "plugin/inproc-%")
	// The median of each pair's ratio resists bursts of load from other
	// processes better than the ratio of sums.
	slices.Sort(pairRatios)
	b.ReportMetric(pairRatios[len(pairRatios)/2], "median-pair-%")
	// What the boundary costs in CPU, independent of the machine's load:
	// in-process CPU over the plugin path's CPU (host + plugin process).
	b.ReportMetric(100*inCPU/(plHostCPU+plPluginCPU), "cpu-efficiency-%")
	b.ReportMetric(inCPU/n, "inproc-cpu-s")
	b.ReportMetric(plHostCPU/n, "plugin-host-cpu-s")
	b.ReportMetric(plPluginCPU/n, "plugin-proc-cpu-s")
}

// BenchmarkCaptureVenvFull captures the venv-full dataset with the
// directory engine in-process (dir.New()) and through its plugin binary,
// alternately, into the same BLAKE3-hashing writer, and reports the
// plugin's throughput as a percentage of the in-process one.
//
//	go test -run '^$' -bench CaptureVenvFull -benchtime 5x ./pluginapi/
func BenchmarkCaptureVenvFull(b *testing.B) {
	venv := venvfull.Dir(b)
	benchDir(b, venv, pluginapi.HostOptions{})
}

// BenchmarkCaptureVenvFullInline is the same with the shared body ring
// off: every body travels inside gRPC messages (what an engine written
// without the ring costs).
func BenchmarkCaptureVenvFullInline(b *testing.B) {
	venv := venvfull.Dir(b)
	benchDir(b, venv, pluginapi.HostOptions{InlineBodies: true})
}

func benchDir(b *testing.B, target string, opts pluginapi.HostOptions) {
	s := spec("dir")
	if path := os.Getenv("PTEST_SNAP_BENCH_DIR_ENGINE"); path != "" {
		s.Path = path // another build of the dir engine, e.g. one that profiles itself
	}
	if _, err := os.Stat(s.Path); err != nil {
		b.Skipf("dir engine not built: %v", err)
	}
	h := pluginapi.NewHost(opts)
	defer h.Close()
	p, err := h.Launch(context.Background(), s)
	if err != nil {
		b.Fatal(err)
	}
	benchPaired(b, target, dir.New(), p)
}

// BenchmarkRestoreVenvFull restores venv-full (captured once into memory)
// with the directory engine in-process and through its plugin, alternately,
// into fresh directories under the benchmark's temp dir.
//
//	go test -run '^$' -bench RestoreVenvFull -benchtime 2x ./pluginapi/
func BenchmarkRestoreVenvFull(b *testing.B) {
	venv := venvfull.Dir(b)
	s := spec("dir")
	if _, err := os.Stat(s.Path); err != nil {
		b.Skipf("dir engine not built: %v", err)
	}
	for _, inline := range []bool{false, true} {
		b.Run(fmt.Sprintf("inline=%v", inline), func(b *testing.B) {
			h := pluginapi.NewHost(pluginapi.HostOptions{InlineBodies: inline})
			defer h.Close()
			p, err := h.Launch(context.Background(), s)
			if err != nil {
				b.Fatal(err)
			}
			var rec memoryWriter
			if err := dir.New().Capture(context.Background(), &pluginapi.CaptureRequest{Target: venv}, &rec); err != nil {
				b.Fatal(err)
			}
			// restore returns the wall time and the CPU seconds of this
			// process and the plugin's of one restore, without the removal.
			restore := func(e pluginapi.Engine, target string) (time.Duration, float64) {
				c0, p0, t0 := cpuSeconds(), procCPUSeconds(p.PID()), time.Now()
				_, err := e.Restore(context.Background(), &pluginapi.RestoreRequest{
					Target: target, OriginalTarget: venv, Metadata: rec.meta, Streams: rec.streams,
				}, &memoryReader{entries: rec.entries})
				if err != nil {
					b.Fatal(err)
				}
				d, cpu := time.Since(t0), cpuSeconds()-c0+procCPUSeconds(p.PID())-p0
				b.StopTimer()
				_ = os.RemoveAll(target)
				b.StartTimer()
				return d, cpu
			}
			var inWall, plWall time.Duration
			var inCPU, plCPU float64
			for b.Loop() {
				d, cpu := restore(dir.New(), filepath.Join(b.TempDir(), "in"))
				inWall, inCPU = inWall+d, inCPU+cpu
				d, cpu = restore(p, filepath.Join(b.TempDir(), "pl"))
				plWall, plCPU = plWall+d, plCPU+cpu
			}
			b.ReportMetric(100*inWall.Seconds()/plWall.Seconds(), "plugin/inproc-%")
			b.ReportMetric(100*inCPU/plCPU, "cpu-efficiency-%")
			b.ReportMetric(inWall.Seconds()/float64(b.N), "inproc-s")
			b.ReportMetric(plWall.Seconds()/float64(b.N), "plugin-s")
		})
	}
}

type memoryEntry struct {
	stream string
	entry  pluginapi.Entry
	body   []byte
}

// memoryWriter keeps a capture in memory for the restore benchmark.
type memoryWriter struct {
	meta    pluginapi.Metadata
	streams []string
	entries []memoryEntry
}

func (w *memoryWriter) WriteMetadata(_ context.Context, m pluginapi.Metadata) error {
	w.meta = m
	return nil
}

func (w *memoryWriter) BeginStream(_ context.Context, name string) error {
	w.streams = append(w.streams, name)
	return nil
}

func (w *memoryWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	m := memoryEntry{stream: w.streams[len(w.streams)-1], entry: *e}
	if body != nil {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		m.body = b
	}
	w.entries = append(w.entries, m)
	return nil
}

type memoryReader struct{ entries []memoryEntry }

func (r *memoryReader) Next(context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if len(r.entries) == 0 {
		return "", nil, nil, io.EOF
	}
	e := &r.entries[0]
	r.entries = r.entries[1:]
	var body io.Reader
	if e.entry.Type == pluginapi.TypeFile && !e.entry.Unchanged {
		body = bytes.NewReader(e.body)
	}
	ent := e.entry
	return e.stream, &ent, body, nil
}
