package compress

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func pySource(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := []string{"import os\n", "def ", "return ", "self.", "class ", "None", " if ", " else ", "for x in ", "print(", "value", "(self, *args, **kwargs):\n    ", "\"\"\"Docstring.\"\"\"\n"}
	var b []byte
	for len(b) < size {
		b = append(b, words[r.IntN(len(words))]...)
		if r.IntN(5) == 0 {
			b = fmt.Appendf(b, "%d", r.IntN(100000))
		}
	}
	return b[:size]
}

func TestRoundTrip(t *testing.T) {
	c, err := NewCodec(Options{})
	require.NoError(t, err)
	defer c.Close()
	random := make([]byte, 10000)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		method Method
	}{
		{"empty", nil, MethodRaw},
		{"tiny", []byte("x"), MethodRaw},
		{"text", pySource(1, 20000), MethodZstd},
		{"random stays raw", random, MethodRaw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := c.Encode(nil, tc.data, 0)
			h, err := ParseHeader(enc)
			require.NoError(t, err)
			assert.Equal(t, tc.method, h.Method)
			assert.Equal(t, len(tc.data), h.RawLen)
			dec, err := c.Decode(nil, enc)
			require.NoError(t, err)
			assert.Equal(t, len(tc.data), len(dec))
			assert.True(t, bytes.Equal(tc.data, dec))
		})
	}
}

func TestDictionary(t *testing.T) {
	var samples [][]byte
	for i := 0; i < 400; i++ {
		samples = append(samples, pySource(uint64(i), 1500))
	}
	d, err := BuildDict(7, samples, 0)
	require.NoError(t, err)
	c, err := NewCodec(Options{})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.AddDict(7, d))

	file := pySource(9999, 2000)
	plain := c.Encode(nil, file, 0)
	withDict := c.Encode(nil, file, 7)
	h, err := ParseHeader(withDict)
	require.NoError(t, err)
	assert.Equal(t, MethodZstdDict, h.Method)
	assert.Equal(t, uint32(7), h.DictID)
	assert.Less(t, len(withDict), len(plain), "the dictionary must help a small file")
	got, err := c.Decode(nil, withDict)
	require.NoError(t, err)
	assert.Equal(t, file, got)

	// A codec that lacks the dictionary says so.
	other, err := NewCodec(Options{})
	require.NoError(t, err)
	defer other.Close()
	_, err = other.Decode(nil, withDict)
	assert.ErrorIs(t, err, ErrUnknownDict)

	_, err = BuildDict(8, samples[:3], 0)
	assert.ErrorIs(t, err, ErrTooFewSamples)
}

func TestCorruptInput(t *testing.T) {
	c, err := NewCodec(Options{})
	require.NoError(t, err)
	defer c.Close()
	enc := c.Encode(nil, pySource(3, 5000), 0)
	for _, bad := range [][]byte{
		nil,
		{9, 1},
		{byte(MethodRaw), 5, 'a'},
		append([]byte{byte(MethodZstd), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, enc[3:]...),
		enc[:len(enc)-3],
		append(bytes.Clone(enc[:len(enc)/2]), make([]byte, len(enc)/2)...),
	} {
		_, err := c.Decode(nil, bad)
		assert.True(t, errors.Is(err, ErrCorrupt), "%x: %v", bad, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	c, err := NewCodec(Options{Concurrency: 2})
	require.NoError(t, err)
	defer c.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				data := pySource(uint64(g*1000+i), 3000+i)
				got, err := c.Decode(nil, c.Encode(nil, data, 0))
				assert.NoError(t, err)
				assert.Equal(t, data, got)
			}
		}()
	}
	wg.Wait()
}

// TestEncodeLevel: chunks encoded at another level than the codec's decode
// with the same codec (the level is not in the format), concurrently, and
// incompressible data is stored raw at every level.
func TestEncodeLevel(t *testing.T) {
	c, err := NewCodec(Options{})
	require.NoError(t, err)
	defer c.Close()
	noise := make([]byte, 100<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := pySource(uint64(i), 300<<10)
			for _, level := range []zstd.EncoderLevel{0, zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
				enc := c.EncodeLevel(nil, src, level)
				assert.Equal(t, MethodZstd, Method(enc[0]), "level %v", level)
				assert.Less(t, len(enc), len(src)/2, "level %v", level)
				dec, err := c.Decode(nil, enc)
				assert.NoError(t, err)
				assert.True(t, bytes.Equal(src, dec), "level %v round trip", level)
				raw := c.EncodeLevel(nil, noise, level)
				assert.Equal(t, MethodRaw, Method(raw[0]), "level %v on noise", level)
			}
		}()
	}
	wg.Wait()
}

// literalTypes returns the literals block type (0 raw, 1 RLE, 2
// compressed, 3 treeless) of each compressed block of one zstd frame
// (RFC 8878, 3.1.1).
func literalTypes(t *testing.T, frame []byte) []byte {
	t.Helper()
	require.GreaterOrEqual(t, len(frame), 6)
	require.Equal(t, []byte{0x28, 0xb5, 0x2f, 0xfd}, frame[:4], "zstd magic")
	fhd := frame[4]
	p := 5
	single := fhd&0x20 != 0
	if !single {
		p++ // window descriptor
	}
	p += []int{0, 1, 2, 4}[fhd&3]
	fcs := []int{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		fcs = 1
	}
	p += fcs
	var types []byte
	for {
		require.LessOrEqual(t, p+3, len(frame))
		hdr := int(frame[p]) | int(frame[p+1])<<8 | int(frame[p+2])<<16
		p += 3
		last, typ, size := hdr&1 == 1, (hdr>>1)&3, hdr>>3
		if typ == 1 {
			size = 1 // RLE: one byte repeated
		}
		if typ == 2 {
			types = append(types, frame[p]&3)
		}
		p += size
		if last {
			return types
		}
	}
}

// TestEncodeHashes: EncodeHashes round-trips, leaves literals without
// Huffman coding where SpeedFastest would code them (text: so the test can
// tell the two apart), and on tree-like data (names, modes and 32-byte
// hashes) is as small as SpeedFastest within 1 %.
func TestEncodeHashes(t *testing.T) {
	c, err := NewCodec(Options{})
	require.NoError(t, err)
	defer c.Close()
	r := rand.New(rand.NewPCG(3, 4))
	var tree []byte
	for i := range 3000 {
		tree = fmt.Appendf(tree, "\x01module_%04d.py\x00\xa4\x81\x00\x00", i)
		var h [32]byte
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		tree = append(tree, h[:]...)
	}
	text := pySource(9, 200000)
	for name, data := range map[string][]byte{"tree": tree, "text": text} {
		t.Run(name, func(t *testing.T) {
			enc := c.EncodeHashes(nil, data)
			h, err := ParseHeader(enc)
			require.NoError(t, err)
			require.Equal(t, MethodZstd, h.Method)
			dec, err := c.Decode(nil, enc)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, dec))
			for _, lt := range literalTypes(t, enc[h.Payload:]) {
				assert.Less(t, lt, byte(2), "literals left raw or RLE")
			}
			fast := c.EncodeLevel(nil, data, zstd.SpeedFastest)
			if name == "text" {
				fh, err := ParseHeader(fast)
				require.NoError(t, err)
				assert.Contains(t, literalTypes(t, fast[fh.Payload:]), byte(2), "SpeedFastest codes text literals")
			} else {
				assert.InDelta(t, len(fast), len(enc), float64(len(fast))/100, "tree-like data: %d against SpeedFastest's %d", len(enc), len(fast))
			}
		})
	}
}
