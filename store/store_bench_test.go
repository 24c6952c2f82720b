package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
)

// benchChunk returns a distinct compressible chunk of n bytes for index i.
func benchChunk(i uint64, n int, base []byte) []byte {
	c := make([]byte, n)
	copy(c, base)
	binary.LittleEndian.PutUint64(c, i)
	return c
}

// BenchmarkPutChunk stores new distinct chunks from parallel goroutines
// (b.RunParallel, GOMAXPROCS of them), as the core's worker pool does;
// "dup" puts chunks that are already stored (the dedup path).
func BenchmarkPutChunk(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{4 << 10, 1 << 20} {
		base := testFiles(5, 1, size)["f0000.py"]
		b.Run(fmt.Sprintf("new/%dKiB", size>>10), func(b *testing.B) {
			s := openTest(b, "")
			w, _ := s.NewWriter(ctx)
			var next atomic.Uint64
			b.SetBytes(int64(size))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := w.PutChunk(ctx, benchChunk(next.Add(1), size, base)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := s.packer.flush(); err != nil {
				b.Fatal(err)
			}
			if err := s.chunks.flush(); err != nil {
				b.Fatal(err)
			}
		})
		b.Run(fmt.Sprintf("dup/%dKiB", size>>10), func(b *testing.B) {
			s := openTest(b, "")
			w, _ := s.NewWriter(ctx)
			const distinct = 256
			for i := 0; i < distinct; i++ {
				if _, err := w.PutChunk(ctx, benchChunk(uint64(i), size, base)); err != nil {
					b.Fatal(err)
				}
			}
			w.Abort()
			chunks := make([][]byte, distinct)
			for i := range chunks {
				chunks[i] = benchChunk(uint64(i), size, base)
			}
			var next atomic.Uint64
			b.SetBytes(int64(size))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w, _ := s.NewWriter(ctx)
				defer w.Abort()
				for pb.Next() {
					if _, err := w.PutChunk(ctx, chunks[next.Add(1)%distinct]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGetChunk reads stored chunks back (decompress + verify), in
// parallel: small ones come from packs, large ones are stored alone.
func BenchmarkGetChunk(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := openTest(b, "")
			w, _ := s.NewWriter(ctx)
			base := testFiles(6, 1, size)["f0000.py"]
			const distinct = 512
			hashes := make([]Hash, distinct)
			for i := range hashes {
				h, err := w.PutChunk(ctx, benchChunk(uint64(i), size, base))
				if err != nil {
					b.Fatal(err)
				}
				hashes[i] = h
			}
			if err := s.packer.flush(); err != nil {
				b.Fatal(err)
			}
			if err := s.chunks.flush(); err != nil {
				b.Fatal(err)
			}
			var next atomic.Uint64
			b.SetBytes(int64(size))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					// Sequential order, as a restore reads.
					if _, err := s.GetChunk(ctx, hashes[next.Add(1)%distinct]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
