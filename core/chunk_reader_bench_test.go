package core

import (
	"context"
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pypj/ptest-snap/internal/venvfull"
	"github.com/pypj/ptest-snap/pluginapi"
)

// BenchmarkRestoreReaderVenvFull is the host's side of a restore of
// venv-full alone: every entry read from a restoreReader and every body
// discarded, no engine. It reports the wall and CPU time of one pass and
// the chunks read from the store; compare with BenchmarkRestoreVenvFull
// (the whole restore) to see what the engine's side costs.
//
// Run: go test -run '^$' -bench RestoreReaderVenvFull -benchtime 3x ./core/
func BenchmarkRestoreReaderVenvFull(b *testing.B) {
	dataset := venvfull.Dir(b)
	ctx := context.Background()
	m := openManagerAt(b, filepath.Join(b.TempDir(), "store"), map[string]pluginapi.Engine{"dir": newDirEngine()})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: dataset})
	if err != nil {
		b.Fatal(err)
	}
	var wall time.Duration
	var cpu float64
	var fetched int64
	for b.Loop() {
		c0, start := cpuSeconds(syscall.RUSAGE_SELF), time.Now()
		rr := newRestoreReader(ctx, m.store, snap, nil, false, nil, 0, nil)
		for {
			_, _, body, err := rr.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if body != nil {
				if _, err := io.Copy(io.Discard, body); err != nil {
					b.Fatal(err)
				}
			}
		}
		rr.close()
		wall += time.Since(start)
		cpu += cpuSeconds(syscall.RUSAGE_SELF) - c0
		fetched += rr.chunks.fetched
	}
	n := float64(b.N)
	b.ReportMetric(wall.Seconds()/n, "wall-s/op")
	b.ReportMetric(cpu/n, "cpu-s/op")
	b.ReportMetric(float64(fetched)/n, "chunks-read/op")
}
