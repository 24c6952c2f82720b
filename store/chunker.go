package store

import (
	"errors"
	"fmt"
	"io"
)

// ChunkerParams are the content-defined chunking sizes.
type ChunkerParams struct {
	Min, Avg, Max int
}

// DefaultChunkerParams are the sizes the store chunks file bodies with.
//
// Why these: a virtualenv is mostly small files (each one chunk whatever
// the sizes; small chunks are packed, see packer.go) and a few large shared
// objects and data files. For the large ones, smaller chunks compress worse
// (each is its own zstd frame) and cost a key, a tree entry and a lookup
// each, while dedup between snapshots of a venv is almost entirely
// whole-file. BenchmarkChunkSizes on the files of venv-full above 256 KiB
// (76 MB raw), min/avg/max → stored MB, chunks, throughput:
//
//	64K/256K/1M   17.80 MB  260 chunks  110 MB/s
//	256K/1M/4M    17.39 MB  101 chunks  146 MB/s
//	512K/2M/8M    17.28 MB   83 chunks  149 MB/s
//
// 256K/1M/4M is within 0.6 % of the largest sizes in size and speed, while
// a rewritten 20 MB library still re-uses most of its chunks and a restore
// never holds more than 4 MiB of one file in memory per worker.
var DefaultChunkerParams = ChunkerParams{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}

// Chunker splits a stream into content-defined chunks with FastCDC (Xia et
// al., 2016/2020): a gear rolling hash, a cut point skipped below Min, a
// stricter mask before Avg and a looser one after it ("normalized chunking",
// which narrows the size distribution), and a hard cut at Max. A stream
// shorter than Min is one chunk.
type Chunker struct {
	r            io.Reader
	p            ChunkerParams
	maskS, maskL uint64
	buf          []byte
	start, end   int
	eof          bool
	err          error
}

// NewChunker returns a chunker reading r with DefaultChunkerParams.
func NewChunker(r io.Reader) *Chunker {
	c, _ := NewChunkerParams(r, DefaultChunkerParams)
	return c
}

// NewChunkerParams returns a chunker with the given sizes.
func NewChunkerParams(r io.Reader, p ChunkerParams) (*Chunker, error) {
	if p.Min <= 0 || p.Avg <= p.Min || p.Max <= p.Avg || p.Max > 64<<20 {
		return nil, fmt.Errorf("chunker sizes %d/%d/%d: want 0 < min < avg < max <= 64 MiB", p.Min, p.Avg, p.Max)
	}
	bits := 0
	for 1<<(bits+1) <= p.Avg {
		bits++
	}
	return &Chunker{
		r: r, p: p,
		// Normalization level 2: two bits more before Avg, two fewer after.
		maskS: topBits(bits + 2),
		maskL: topBits(bits - 2),
		buf:   make([]byte, p.Max),
	}, nil
}

// topBits returns a mask of the n highest bits: with a gear hash (shift left,
// add), the high bits depend on the most recent 64 bytes.
func topBits(n int) uint64 {
	if n <= 0 {
		return 0
	}
	if n >= 64 {
		return ^uint64(0)
	}
	return ^uint64(0) << (64 - n)
}

// Reset makes c read a new stream, keeping its buffer.
func (c *Chunker) Reset(r io.Reader) {
	c.r, c.start, c.end, c.eof, c.err = r, 0, 0, false, nil
}

// Next returns the next chunk (valid until the next call) or io.EOF.
func (c *Chunker) Next() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.end-c.start < c.p.Max && !c.eof {
		copy(c.buf, c.buf[c.start:c.end])
		c.end -= c.start
		c.start = 0
		for c.end < len(c.buf) && !c.eof {
			n, err := c.r.Read(c.buf[c.end:])
			c.end += n
			if errors.Is(err, io.EOF) {
				c.eof = true
			} else if err != nil {
				c.err = err
				return nil, err
			}
		}
	}
	if c.start == c.end {
		c.err = io.EOF
		return nil, io.EOF
	}
	n := c.cut(c.buf[c.start:c.end])
	chunk := c.buf[c.start : c.start+n]
	c.start += n
	return chunk, nil
}

// cut returns the length of the next chunk of data.
func (c *Chunker) cut(data []byte) int {
	n := len(data)
	if n <= c.p.Min {
		return n
	}
	if n > c.p.Max {
		n = c.p.Max
	}
	normal := c.p.Avg
	if normal > n {
		normal = n
	}
	var fp uint64
	maskS, maskL := c.maskS, c.maskL
	for i, b := range data[c.p.Min:normal] {
		fp = fp<<1 + gear[b]
		if fp&maskS == 0 {
			return c.p.Min + i + 1
		}
	}
	for i, b := range data[normal:n] {
		fp = fp<<1 + gear[b]
		if fp&maskL == 0 {
			return normal + i + 1
		}
	}
	return n
}

// gear is the table of the rolling hash: 256 pseudo-random 64-bit values
// from splitmix64 with a fixed seed. It must never change: it decides where
// chunks are cut, so changing it would stop new snapshots deduplicating
// against old ones (correctness would not suffer, only size).
var gear = func() (t [256]uint64) {
	x := uint64(0x7074657374736e70) // "ptestsnp"
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		t[i] = z ^ z>>31
	}
	return t
}()
