package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Method says how a chunk's payload is stored.
type Method byte

// Methods. The numbers are stored on disk: never renumber them.
const (
	// MethodRaw stores the bytes as they are: compression did not pay.
	MethodRaw Method = 0
	// MethodZstd is one zstd frame without a dictionary.
	MethodZstd Method = 1
	// MethodZstdDict is one zstd frame compressed with the dictionary whose
	// id follows the length in the header.
	MethodZstdDict Method = 2
)

// ErrCorrupt is wrapped by every error about an undecodable chunk.
var ErrCorrupt = errors.New("corrupt compressed chunk")

// ErrUnknownDict is wrapped when a chunk names a dictionary the codec lacks.
var ErrUnknownDict = errors.New("unknown compression dictionary")

// MaxChunkSize bounds the uncompressed size the decoder accepts, so a hostile
// header cannot make it allocate without limit. The store's chunker never
// makes chunks above 8 MiB; trees and change indexes stay far below this.
const MaxChunkSize = 64 << 20

// DefaultLevel is the zstd level used for chunks. Measured on venv-full
// (every file compressed alone in pieces of at most 1 MiB, one core,
// BenchmarkVenvLevels; MB stored of 350 MB, throughput):
//
//	SpeedFastest           (≈ zstd -1)  124.0 MB  198 MB/s
//	SpeedDefault           (≈ zstd -3)  118.7 MB  167 MB/s
//	SpeedBetterCompression (≈ zstd -7)  115.9 MB   94 MB/s
//
// The default level is 4 % smaller than the fastest for 15 % more time;
// the better level buys 2.4 % more for 78 % more time, which the initial
// create (target: 1.5x a tar | zstd -1) cannot afford. The whole store
// (small files packed, store.BenchmarkStoreVenvFull, one run, ratios of
// write throughput to the default level):
//
//	level 1: 110.3 MB stored, 113.4 MB on disk, 1.95x
//	level 2: 104.3 MB stored, 107.4 MB on disk, 1
//	level 3: 100.7 MB stored, 103.8 MB on disk, 0.65x
//
// Only the default level meets the 110 MB target at a usable speed. The
// store uses it for packs of small files (half of a first snapshot's packs
// take SpeedFastest, store.firstFastEvery) and SpeedFastest (EncodeLevel)
// for large chunks stored alone, where it costs less ratio (store.bigChunkLevel
// has the figures). The 1.95x above is wall time of one run on a
// shared machine; on one thread's CPU time SpeedDefault costs 36 % more
// than SpeedFastest on venv-full's data, both for packs and large chunks.
var DefaultLevel = zstd.SpeedDefault

// The header: a method byte, the uvarint uncompressed length, and for
// MethodZstdDict the uvarint dictionary id; then the payload.

// minGain is the fraction of its size a chunk must shrink by to be stored
// compressed: below 1/32 (3 %) the decompression cost on every restore is not
// worth the bytes (already-compressed wheels, .pyc of tiny modules, images).
const minGain = 32

// Codec encodes and decodes chunks. It is safe for concurrent use: its zstd
// encoders and decoders are pools (klauspost's Encoder.EncodeAll and
// Decoder.DecodeAll keep one internal state per concurrent caller, up to the
// concurrency given at construction, and block further callers until one is
// free, which also bounds memory).
type Codec struct {
	level       zstd.EncoderLevel
	concurrency int

	plain *zstd.Encoder

	mu      sync.RWMutex
	byLevel map[zstd.EncoderLevel]*zstd.Encoder // EncodeLevel's encoders, made on first use
	hashes  *zstd.Encoder                       // EncodeHashes's encoder, made on first use
	dicts   map[uint32]*dictCodec
	dec     *zstd.Decoder // knows every dictionary in dicts
}

type dictCodec struct {
	raw []byte
	enc *zstd.Encoder
}

// Options configure NewCodec.
type Options struct {
	// Level is the zstd encoder level; 0 means DefaultLevel.
	Level zstd.EncoderLevel
	// Concurrency bounds how many chunks are compressed or decompressed at
	// once; 0 means GOMAXPROCS.
	Concurrency int
}

// NewCodec returns a codec without dictionaries.
func NewCodec(opts Options) (*Codec, error) {
	if opts.Level == 0 {
		opts.Level = DefaultLevel
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = runtime.GOMAXPROCS(0)
	}
	c := &Codec{level: opts.Level, concurrency: opts.Concurrency, dicts: map[uint32]*dictCodec{}}
	var err error
	c.plain, err = zstd.NewWriter(nil, c.encoderOptions()...)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	if err := c.rebuildDecoder(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Codec) encoderOptions(extra ...zstd.EOption) []zstd.EOption {
	o := []zstd.EOption{
		zstd.WithEncoderLevel(c.level),
		zstd.WithEncoderConcurrency(c.concurrency),
		// The chunk header already carries the length and the store
		// verifies BLAKE3 of every chunk it reads: a frame CRC would only
		// cost 4 bytes per chunk (150 KB over venv-full) and time.
		zstd.WithEncoderCRC(false),
		// Chunks are at most a few MiB: a smaller window keeps each
		// encoder state small, which matters for peak RSS.
		zstd.WithWindowSize(4 << 20),
		zstd.WithLowerEncoderMem(true),
	}
	return append(o, extra...)
}

// rebuildDecoder makes a decoder that knows every dictionary; c.mu must be
// held for writing (or c not yet shared).
func (c *Codec) rebuildDecoder() error {
	opts := []zstd.DOption{
		zstd.WithDecoderConcurrency(c.concurrency),
		zstd.WithDecoderMaxMemory(MaxChunkSize),
		zstd.WithDecoderLowmem(true),
	}
	for id, d := range c.dicts {
		opts = append(opts, decoderDictOption(id, d.raw))
	}
	dec, err := zstd.NewReader(nil, opts...)
	if err != nil {
		return fmt.Errorf("zstd decoder: %w", err)
	}
	if c.dec != nil {
		c.dec.Close()
	}
	c.dec = dec
	return nil
}

// Level returns the encoder level.
func (c *Codec) Level() zstd.EncoderLevel { return c.level }

// AddDict registers a dictionary under id (id 0 is reserved for "none").
// The dictionary is either a zstd dictionary (as BuildDict makes) or raw
// content. Adding an id twice with the same bytes is a no-op.
func (c *Codec) AddDict(id uint32, dict []byte) error {
	if id == 0 {
		return errors.New("dictionary id 0 is reserved")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.dicts[id]; ok {
		return nil
	}
	opt, err := encoderDictOption(id, dict)
	if err != nil {
		return err
	}
	enc, err := zstd.NewWriter(nil, c.encoderOptions(opt)...)
	if err != nil {
		return fmt.Errorf("zstd dictionary %d: %w", id, err)
	}
	c.dicts[id] = &dictCodec{raw: append([]byte(nil), dict...), enc: enc}
	if err := c.rebuildDecoder(); err != nil {
		delete(c.dicts, id)
		return err
	}
	return nil
}

// HasDict reports whether the dictionary id is registered.
func (c *Codec) HasDict(id uint32) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.dicts[id]
	return ok
}

// EncodeLevel is Encode without a dictionary at another zstd level than the
// codec's (the store compresses large chunks faster than packs of small
// files; see store.bigChunkLevel). Its encoder pool is made on first use.
func (c *Codec) EncodeLevel(dst, src []byte, level zstd.EncoderLevel) []byte {
	if level == 0 || level == c.level {
		return c.Encode(dst, src, 0)
	}
	c.mu.RLock()
	enc := c.byLevel[level]
	c.mu.RUnlock()
	if enc == nil {
		c.mu.Lock()
		if enc = c.byLevel[level]; enc == nil {
			var err error
			o := c.encoderOptions()
			o = append(o, zstd.WithEncoderLevel(level))
			if enc, err = zstd.NewWriter(nil, o...); err != nil {
				// Only invalid options fail, and these are the
				// codec's own with a valid level: fall back.
				c.mu.Unlock()
				return c.Encode(dst, src, 0)
			}
			if c.byLevel == nil {
				c.byLevel = map[zstd.EncoderLevel]*zstd.Encoder{}
			}
			c.byLevel[level] = enc
		}
		c.mu.Unlock()
	}
	return encodeWith(enc, dst, src, 0)
}

// EncodeHashes is Encode for data that is mostly hashes between short
// repeated fields, such as the store's trees: it finds the repeats at
// SpeedFastest and leaves the literals (the hashes) without Huffman coding
// (zstd.WithNoEntropyCompression), which spends most of its time there to
// gain nothing on random bytes. Measured on the 9,209 trees of a venv-full
// store (3.19 MB; one thread, best of 7): 2,539,116 bytes in 18.7 ms,
// against 2,538,483 bytes in 62.4 ms with entropy coding. Any zstd decoder
// reads the result.
func (c *Codec) EncodeHashes(dst, src []byte) []byte {
	c.mu.RLock()
	enc := c.hashes
	c.mu.RUnlock()
	if enc == nil {
		c.mu.Lock()
		if enc = c.hashes; enc == nil {
			var err error
			o := c.encoderOptions(zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithNoEntropyCompression(true))
			if enc, err = zstd.NewWriter(nil, o...); err != nil {
				// Only invalid options fail, and these are the
				// codec's own: fall back.
				c.mu.Unlock()
				return c.EncodeLevel(dst, src, zstd.SpeedFastest)
			}
			c.hashes = enc
		}
		c.mu.Unlock()
	}
	return encodeWith(enc, dst, src, 0)
}

// Encode appends the encoded form of src to dst and returns it. dictID 0
// compresses without a dictionary; an unknown dictID falls back to none.
func (c *Codec) Encode(dst, src []byte, dictID uint32) []byte {
	enc := c.plain
	if dictID != 0 {
		c.mu.RLock()
		d := c.dicts[dictID]
		c.mu.RUnlock()
		if d != nil {
			enc = d.enc
		} else {
			dictID = 0
		}
	}
	return encodeWith(enc, dst, src, dictID)
}

// encodeWith encodes src with enc (dictID's encoder, or 0 for none), or
// stores it raw when compression does not pay.
func encodeWith(enc *zstd.Encoder, dst, src []byte, dictID uint32) []byte {
	start := len(dst)
	method := MethodZstd
	if dictID != 0 {
		method = MethodZstdDict
	}
	dst = appendHeader(dst, method, len(src), dictID)
	hdr := len(dst) - start
	dst = enc.EncodeAll(src, dst)
	if payload := len(dst) - start - hdr; payload+hdr >= len(src)-len(src)/minGain {
		dst = appendHeader(dst[:start], MethodRaw, len(src), 0)
		dst = append(dst, src...)
	}
	return dst
}

func appendHeader(dst []byte, m Method, n int, dictID uint32) []byte {
	dst = append(dst, byte(m))
	dst = binary.AppendUvarint(dst, uint64(n))
	if m == MethodZstdDict {
		dst = binary.AppendUvarint(dst, uint64(dictID))
	}
	return dst
}

// Header is the parsed header of an encoded chunk.
type Header struct {
	Method  Method
	RawLen  int    // uncompressed length
	DictID  uint32 // for MethodZstdDict
	Payload int    // offset of the payload
}

// ParseHeader reads the header of an encoded chunk.
func ParseHeader(src []byte) (Header, error) {
	if len(src) < 2 {
		return Header{}, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(src))
	}
	h := Header{Method: Method(src[0])}
	if h.Method > MethodZstdDict {
		return Header{}, fmt.Errorf("%w: unknown method %d", ErrCorrupt, src[0])
	}
	n, k := binary.Uvarint(src[1:])
	if k <= 0 || n > MaxChunkSize {
		return Header{}, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	h.RawLen, h.Payload = int(n), 1+k
	if h.Method == MethodZstdDict {
		id, k := binary.Uvarint(src[h.Payload:])
		if k <= 0 || id == 0 || id > 1<<32-1 {
			return Header{}, fmt.Errorf("%w: bad dictionary id", ErrCorrupt)
		}
		h.DictID, h.Payload = uint32(id), h.Payload+k
	}
	return h, nil
}

// Decode appends the decoded bytes of src to dst and returns them.
func (c *Codec) Decode(dst, src []byte) ([]byte, error) {
	h, err := ParseHeader(src)
	if err != nil {
		return nil, err
	}
	payload := src[h.Payload:]
	switch h.Method {
	case MethodRaw:
		if len(payload) != h.RawLen {
			return nil, fmt.Errorf("%w: raw length %d, header says %d", ErrCorrupt, len(payload), h.RawLen)
		}
		return append(dst, payload...), nil
	case MethodZstdDict:
		if !c.HasDict(h.DictID) {
			return nil, fmt.Errorf("%w %d", ErrUnknownDict, h.DictID)
		}
	}
	if cap(dst)-len(dst) < h.RawLen {
		nd := make([]byte, len(dst), len(dst)+h.RawLen)
		copy(nd, dst)
		dst = nd
	}
	start := len(dst)
	c.mu.RLock()
	dec := c.dec
	out, err := dec.DecodeAll(payload, dst)
	c.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(out)-start != h.RawLen {
		return nil, fmt.Errorf("%w: decoded %d bytes, header says %d", ErrCorrupt, len(out)-start, h.RawLen)
	}
	return out, nil
}

// Close releases the encoders and decoders.
func (c *Codec) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.plain.Close()
	for _, d := range c.dicts {
		_ = d.enc.Close()
	}
	for _, e := range c.byLevel {
		_ = e.Close()
	}
	if c.hashes != nil {
		_ = c.hashes.Close()
	}
	if c.dec != nil {
		c.dec.Close()
		c.dec = nil
	}
}
