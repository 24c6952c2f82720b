package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/internal/venvfull"
)

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

func chunkAll(t testing.TB, data []byte, p ChunkerParams) [][]byte {
	c, err := NewChunkerParams(bytes.NewReader(data), p)
	require.NoError(t, err)
	var out [][]byte
	for {
		ch, err := c.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out = append(out, bytes.Clone(ch))
	}
}

func TestChunker(t *testing.T) {
	p := ChunkerParams{Min: 2 << 10, Avg: 8 << 10, Max: 32 << 10}
	data := randomBytes(1, 1<<20)
	chunks := chunkAll(t, data, p)
	assert.Equal(t, data, bytes.Join(chunks, nil), "chunks reassemble the input")
	for i, c := range chunks {
		assert.LessOrEqual(t, len(c), p.Max)
		if i < len(chunks)-1 {
			assert.GreaterOrEqual(t, len(c), p.Min)
		}
	}
	avg := len(data) / len(chunks)
	assert.InDelta(t, p.Avg, avg, float64(p.Avg), "average near the target")

	// Content-defined: an insertion near the start changes only the
	// chunks around it.
	edited := append(append(bytes.Clone(data[:1000]), []byte("inserted")...), data[1000:]...)
	again := chunkAll(t, edited, p)
	old := map[Hash]bool{}
	for _, c := range chunks {
		old[SumChunk(c)] = true
	}
	same := 0
	for _, c := range again {
		if old[SumChunk(c)] {
			same++
		}
	}
	assert.Greater(t, same, len(again)-4, "all but the first chunks are unchanged")

	// Small input is one chunk; empty input none.
	assert.Len(t, chunkAll(t, data[:100], p), 1)
	assert.Empty(t, chunkAll(t, nil, p))
	// Deterministic.
	assert.Equal(t, chunks, chunkAll(t, data, p))

	_, err := NewChunkerParams(nil, ChunkerParams{Min: 10, Avg: 5, Max: 20})
	assert.Error(t, err)
}

func BenchmarkChunker(b *testing.B) {
	data := randomBytes(2, 16<<20)
	b.SetBytes(int64(len(data)))
	c := NewChunker(nil)
	for i := 0; i < b.N; i++ {
		c.Reset(bytes.NewReader(data))
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	}
}

func BenchmarkHash(b *testing.B) {
	for _, n := range []int{4 << 10, 1 << 20} {
		data := randomBytes(3, n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for i := 0; i < b.N; i++ {
				SumChunk(data)
			}
		})
	}
}

// BenchmarkChunkSizes chunks the large files of venv-full (> 256 KiB: the
// only ones the sizes matter for) with several parameter sets, compresses
// each chunk alone as the store does, and reports the stored size and the
// chunk count. This is the measurement behind DefaultChunkerParams.
func BenchmarkChunkSizes(b *testing.B) {
	venvFull := venvfull.Dir(b)
	var large [][]byte
	total := 0
	walkFiles(b, venvFull, func(data []byte) {
		if len(data) > 256<<10 {
			large = append(large, data)
			total += len(data)
		}
	})
	s := openTest(b, "")
	for _, p := range []ChunkerParams{
		{Min: 64 << 10, Avg: 256 << 10, Max: 1 << 20},
		{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20},
		{Min: 512 << 10, Avg: 2 << 20, Max: 8 << 20},
	} {
		b.Run(fmt.Sprintf("%dK-%dK-%dK", p.Min>>10, p.Avg>>10, p.Max>>10), func(b *testing.B) {
			b.SetBytes(int64(total))
			var stored, chunks int
			for i := 0; i < b.N; i++ {
				stored, chunks = 0, 0
				for _, f := range large {
					c, _ := NewChunkerParams(bytes.NewReader(f), p)
					for {
						ch, err := c.Next()
						if err != nil {
							break
						}
						SumChunk(ch)
						stored += len(s.codec.Encode(nil, ch, 0))
						chunks++
					}
				}
			}
			b.ReportMetric(float64(stored)/1e6, "MB-stored")
			b.ReportMetric(float64(chunks), "chunks")
		})
	}
}
