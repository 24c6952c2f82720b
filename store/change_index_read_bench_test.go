package store

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// BenchmarkChangeIndexLoadVenvFull measures reading venv-full's change
// index back, as every create with a parent and every in-place restore do.
func BenchmarkChangeIndexLoadVenvFull(b *testing.B) {
	files := venvIndexRecords(b)
	s := openTest(b, "")
	ctx := context.Background()
	w, err := s.NewWriter(ctx)
	if err != nil {
		b.Fatal(err)
	}
	root, err := w.PutTree(ctx, &Tree{})
	if err != nil {
		b.Fatal(err)
	}
	// The file count a real snapshot records, which sizes the maps.
	snap := &Snapshot{ID: "one", Engine: "dir", EnvID: "e", CreatedAt: time.Now(),
		Streams: []Stream{{Name: "rootfs", Root: root}}, Stats: SnapshotStats{Files: int64(len(files))}}
	if err := w.Commit(ctx, snap, ChangeIndex{"rootfs": files}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	// The index is read by several goroutines: CPU time, not ns/op, is
	// what a busy machine pays.
	c0 := processCPU()
	for i := 0; i < b.N; i++ {
		idx, err := s.ChangeIndex(ctx, "one")
		if err != nil || len(idx["rootfs"]) != len(files) {
			b.Fatal(err, len(idx["rootfs"]))
		}
	}
	b.ReportMetric((processCPU()-c0).Seconds()*1000/float64(b.N), "cpu-ms/op")
}

// processCPU is the process's user and system time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIndexDirDecode measures decoding one directory's index chunk of
// 200 files, like a site-packages module directory.
func BenchmarkIndexDirDecode(b *testing.B) {
	d := newIndexDir()
	for i := 0; i < 200; i++ {
		name := string(rune('a'+i/26%26)) + string(rune('a'+i%26)) + "_module.py"
		d.records[name] = IndexRecord{Size: 4000, MtimeNs: 1700000000000000000 + int64(i)*1000, CtimeNs: 1700000000000000000 + int64(i)*1000, Inode: 1000 + uint64(i)}
	}
	enc := encodeIndexDir(d, map[string]Hash{"sub": SumChunk([]byte("x")), "sub2": SumChunk([]byte("y"))}, nil)
	var recs []indexEntry
	out := make(map[string]IndexRecord, 256)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var err error
		if recs, _, err = decodeIndexDir(enc, "lib/python3.12/site-packages/pkg/", true, recs[:0]); err != nil {
			b.Fatal(err)
		}
		clear(out)
		for _, r := range recs {
			out[r.path] = r.r
		}
	}
}
