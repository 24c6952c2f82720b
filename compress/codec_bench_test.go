package compress

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/pypj/ptest-snap/internal/venvfull"
)

// loadVenv reads every regular file of the dataset, split into pieces of at
// most 1 MiB (the store's average chunk), in walk order.
func loadVenv(b *testing.B) (chunks [][]byte, total int) {
	b.Helper()
	venvFull := venvfull.Dir(b)
	err := filepath.WalkDir(venvFull, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		total += len(data)
		for len(data) > 1<<20 {
			chunks = append(chunks, data[:1<<20])
			data = data[1<<20:]
		}
		chunks = append(chunks, data)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return chunks, total
}

// firstSamples returns the first n bytes of chunks of at most 16 KiB, as the
// store samples them.
func firstSamples(chunks [][]byte, n int) [][]byte {
	var out [][]byte
	got := 0
	for _, c := range chunks {
		if len(c) <= 16<<10 && got < n {
			out = append(out, c)
			got += len(c)
		}
	}
	return out
}

// BenchmarkVenvLevels compresses every file of venv-full at each level,
// without and with a dictionary trained on the first 8 MiB of small files,
// and reports the total compressed size (MB) — the measurement the default
// level and the dictionary are chosen by.
func BenchmarkVenvLevels(b *testing.B) {
	chunks, total := loadVenv(b)
	samples := firstSamples(chunks, 8<<20)
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		for _, useDict := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/dict=%v", level, useDict), func(b *testing.B) {
				c, err := NewCodec(Options{Level: level})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				id := uint32(0)
				if useDict {
					d, err := BuildDict(1, samples, level)
					if err != nil {
						b.Fatal(err)
					}
					if err := c.AddDict(1, d); err != nil {
						b.Fatal(err)
					}
					id = 1
				}
				b.SetBytes(int64(total))
				b.ResetTimer()
				var out int
				var buf []byte
				for i := 0; i < b.N; i++ {
					out = 0
					for _, ch := range chunks {
						did := uint32(0)
						if len(ch) <= 64<<10 {
							did = id
						}
						buf = c.Encode(buf[:0], ch, did)
						out += len(buf)
					}
				}
				b.ReportMetric(float64(out)/1e6, "MB-stored")
			})
		}
	}
}

// BenchmarkDictSizes trains dictionaries from different amounts of samples
// and reports what the small files of venv-full compress to with each, and
// how long training takes (ns/op is one training).
func BenchmarkDictSizes(b *testing.B) {
	chunks, _ := loadVenv(b)
	var small [][]byte
	smallTotal := 0
	for _, c := range chunks {
		if len(c) <= 64<<10 {
			small = append(small, c)
			smallTotal += len(c)
		}
	}
	for _, train := range []int{2 << 20, 8 << 20, 32 << 20} {
		b.Run(fmt.Sprintf("train=%dMiB", train>>20), func(b *testing.B) {
			samples := firstSamples(chunks, train)
			var d []byte
			var err error
			for i := 0; i < b.N; i++ {
				if d, err = BuildDict(1, samples, DefaultLevel); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			c, _ := NewCodec(Options{})
			defer c.Close()
			if err := c.AddDict(1, d); err != nil {
				b.Fatal(err)
			}
			out, plain := 0, 0
			for _, s := range small {
				out += len(c.Encode(nil, s, 1))
				plain += len(c.Encode(nil, s, 0))
			}
			b.ReportMetric(float64(smallTotal)/1e6, "MB-small-raw")
			b.ReportMetric(float64(plain)/1e6, "MB-small-nodict")
			b.ReportMetric(float64(out)/1e6, "MB-small-dict")
		})
	}
}

func benchData(n int) []byte { return pySource(42, n) }

// BenchmarkEncode and BenchmarkDecode measure one chunk at typical sizes.
func BenchmarkEncode(b *testing.B) {
	c, _ := NewCodec(Options{})
	defer c.Close()
	for _, n := range []int{2 << 10, 64 << 10, 1 << 20} {
		data := benchData(n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			var buf []byte
			for i := 0; i < b.N; i++ {
				buf = c.Encode(buf[:0], data, 0)
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	c, _ := NewCodec(Options{})
	defer c.Close()
	for _, n := range []int{2 << 10, 64 << 10, 1 << 20} {
		enc := c.Encode(nil, benchData(n), 0)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			var buf []byte
			var err error
			for i := 0; i < b.N; i++ {
				if buf, err = c.Decode(buf[:0], enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
