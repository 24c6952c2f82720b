package pluginapi_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"

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
	const venv = "/work/data/venv-full"
	if _, err := os.Stat(venv); err != nil {
		b.Skipf("dataset absent: %v", err)
	}
	benchDir(b, venv, pluginapi.HostOptions{})
}

// BenchmarkCaptureVenvFullInline is the same with the shared body ring
// off: every body travels inside gRPC messages (what an engine written
// without the ring costs).
func BenchmarkCaptureVenvFullInline(b *testing.B) {
	const venv = "/work/data/venv-full"
	if _, err := os.Stat(venv); err != nil {
		b.Skipf("dataset absent: %v", err)
	}
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
