package fstree

import (
	"context"
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/internal/venvfull"
	"github.com/pypj/ptest-snap/pluginapi"
)

// fullIndexWriter keeps the change index of a capture with its
// directories and symlinks, as an in-place restore's own index has them.
type fullIndexWriter struct {
	idx map[string]pluginapi.IndexEntry
}

func (w *fullIndexWriter) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }
func (w *fullIndexWriter) BeginStream(context.Context, string) error               { return nil }

func (w *fullIndexWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, _ io.Reader) error {
	if w.idx == nil {
		w.idx = make(map[string]pluginapi.IndexEntry)
	}
	switch e.Type {
	case pluginapi.TypeFile:
		w.idx[e.Path] = pluginapi.IndexEntry{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
	case pluginapi.TypeDir, pluginapi.TypeSymlink:
		w.idx[e.Path] = pluginapi.IndexEntry{CtimeNs: e.CtimeNs, Inode: e.Inode, Type: e.Type}
	}
	return nil
}

// BenchmarkCaptureInPlaceListingVenvFull is the listing an in-place
// restore of an unchanged venv-full makes: IndexOnly, ParentXattrs,
// UnchangedDirs, the parent (with directories and symlinks) as
// fingerprints. Every subtree is unchanged, so the walk lists the whole
// tree and sends a handful of entries.
func BenchmarkCaptureInPlaceListingVenvFull(b *testing.B) {
	venvFull := venvfull.Dir(b)
	first := &fullIndexWriter{}
	if err := Capture(context.Background(), venvFull, CaptureOptions{Stream: "rootfs", IndexOnly: true}, first); err != nil {
		b.Fatal(err)
	}
	prints, err := pluginapi.NewParentFingerprints(first.idx)
	if err != nil {
		b.Fatal(err)
	}
	opts := CaptureOptions{Stream: "rootfs", IndexOnly: true, ParentXattrs: true, UnchangedDirs: true,
		ParentFingerprints: map[string]*pluginapi.ParentFingerprints{"rootfs": prints}}
	var cpu time.Duration
	var entries int
	var flt int64
	for b.Loop() {
		c := cpuTime()
		f0 := minFaults()
		w := &countingWriter{}
		if err := Capture(context.Background(), venvFull, opts, w); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c
		flt += minFaults() - f0
		entries = w.entries
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(entries), "entries")
	b.ReportMetric(float64(flt)/float64(b.N), "minflt/op")
}

// minFaults returns the minor page faults of the process so far.
func minFaults() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt
}
