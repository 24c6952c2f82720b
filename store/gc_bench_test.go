package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/internal/venvfull"
)

// BenchmarkGCVenvFull stores venv-full, then a second snapshot holding half
// of its site-packages, deletes the first and collects it: what a user's
// gc after deleting an env's old snapshot costs, phase by phase
// (GCWithOptions' progress), with how often progress was reported.
//
// Sub-benchmarks vary the value-log file size: smaller files concentrate a
// deleted snapshot's garbage in whole files (more disk back for less
// rewriting) at the cost of more files; s-create is the first snapshot's
// time, vlog-files their number after it.
func BenchmarkGCVenvFull(b *testing.B) {
	root := venvfull.Dir(b)
	for _, mib := range []int64{16, 32, 64} {
		b.Run(fmt.Sprintf("vlog=%dMiB", mib), func(b *testing.B) { benchGCVenv(b, root, mib<<20) })
	}
}

func benchGCVenv(b *testing.B, root string, vlogSize int64) {
	ctx := context.Background()
	dur := map[GCPhase]time.Duration{}
	calls := map[GCPhase]int{}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		s, err := Open(ctx, Options{Dir: dir, valueLogFileSize: vlogSize})
		require.NoError(b, err)
		createStart := time.Now()
		w, err := s.NewWriter(ctx)
		require.NoError(b, err)
		all, _, err := snapshotDir(ctx, w, root, 2)
		require.NoError(b, err)
		require.NoError(b, w.Commit(ctx, &Snapshot{ID: "all", Engine: "dir", EnvID: "venv", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: all}}}, nil))
		b.ReportMetric(time.Since(createStart).Seconds(), "s-create")
		vlogs, _ := filepath.Glob(filepath.Join(dbDir(dir), "*.vlog"))
		b.ReportMetric(float64(len(vlogs)), "vlog-files")

		sp := all
		for _, name := range []string{"lib", "", "site-packages"} {
			t, err := s.GetTree(ctx, sp)
			require.NoError(b, err)
			found := false
			for _, n := range t.Nodes {
				if n.Type == NodeDir && (name == "" || n.Name == name) {
					sp, found = n.Subtree, true
					break
				}
			}
			require.True(b, found, "no %q", name)
		}
		t, err := s.GetTree(ctx, sp)
		require.NoError(b, err)
		w2, err := s.NewWriter(ctx)
		require.NoError(b, err)
		half, err := w2.PutTree(ctx, &Tree{Nodes: t.Nodes[:len(t.Nodes)/2]})
		require.NoError(b, err)
		require.NoError(b, w2.Commit(ctx, &Snapshot{ID: "half", Engine: "dir", EnvID: "venv", CreatedAt: time.Now(), Streams: []Stream{{Name: "rootfs", Root: half}}}, nil))
		require.NoError(b, s.DeleteSnapshot(ctx, "all"))

		b.StartTimer()
		var phase GCPhase
		start := time.Now()
		st, err := s.GCWithOptions(ctx, GCOptions{Progress: func(p GCProgress) {
			if p.Phase != phase {
				if phase != "" {
					dur[phase] += time.Since(start)
				}
				phase, start = p.Phase, time.Now()
			}
			calls[p.Phase]++
		}})
		dur[phase] += time.Since(start)
		b.StopTimer()
		require.NoError(b, err)
		b.ReportMetric(float64(st.ChunksDeleted), "chunks-deleted")
		b.ReportMetric(float64(st.BytesReclaimed)/1e6, "MB-reclaimed")
		b.ReportMetric(float64(st.DiskBefore-st.DiskAfter)/1e6, "MB-disk-freed")
		b.ReportMetric(float64(st.DiskBefore)/1e6, "MB-disk-before")
		b.ReportMetric(float64(st.DiskAfter)/1e6, "MB-disk-after")
		require.NoError(b, s.Close())
		b.StartTimer()
	}
	for _, p := range []GCPhase{GCMark, GCSweep, GCRepack, GCVlog} {
		b.ReportMetric(dur[p].Seconds()/float64(b.N), "s-"+string(p))
		b.ReportMetric(float64(calls[p])/float64(b.N), "reports-"+string(p))
	}
}
