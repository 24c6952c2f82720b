package compress

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"
)

// zstdDictMagic starts a dictionary in zstd's own format (with entropy
// tables); anything else is used as raw content.
const zstdDictMagic = 0xEC30A437

// DictSize is the size of dictionaries BuildDict makes. Measured on
// venv-full's small files (see BenchmarkDictSizes): 64 KiB and 112 KiB
// dictionaries save nearly the same, 32 KiB noticeably less; 112 KiB costs
// nothing worth counting in a store of 100 MB, so we keep the larger.
const DictSize = 112 << 10

// MinDictSamples is how many bytes of samples BuildDict needs before a
// dictionary is worth training; below it the dictionary would fit the few
// samples it saw and little else.
const MinDictSamples = 256 << 10

// ErrTooFewSamples is returned by BuildDict when the samples are too small
// to train a useful dictionary.
var ErrTooFewSamples = errors.New("too few samples to train a dictionary")

// BuildDict trains a zstd dictionary with the given id from samples (each
// one small file or chunk) at the codec's level.
func BuildDict(id uint32, samples [][]byte, level zstd.EncoderLevel) (d []byte, err error) {
	total := 0
	for _, s := range samples {
		total += len(s)
	}
	if total < MinDictSamples || len(samples) < 16 {
		return nil, fmt.Errorf("%w: %d samples, %d bytes", ErrTooFewSamples, len(samples), total)
	}
	if level == 0 {
		level = DefaultLevel
	}
	// The builder indexes with panics on some degenerate inputs in older
	// versions; a failed training must never take the store down.
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("build dictionary: %v", r)
		}
	}()
	d, err = dict.BuildZstdDict(samples, dict.Options{
		MaxDictSize: DictSize,
		HashBytes:   6,
		ZstdDictID:  id,
		ZstdLevel:   level,
	})
	if err != nil {
		return nil, fmt.Errorf("build dictionary: %w", err)
	}
	return d, nil
}

func isZstdDict(d []byte) bool {
	return len(d) >= 8 && binary.LittleEndian.Uint32(d) == zstdDictMagic
}

func encoderDictOption(id uint32, d []byte) (zstd.EOption, error) {
	if isZstdDict(d) {
		if got := binary.LittleEndian.Uint32(d[4:]); got != id {
			return nil, fmt.Errorf("dictionary has id %d, registered as %d", got, id)
		}
		return zstd.WithEncoderDict(d), nil
	}
	return zstd.WithEncoderDictRaw(id, d), nil
}

func decoderDictOption(id uint32, d []byte) zstd.DOption {
	if isZstdDict(d) {
		return zstd.WithDecoderDicts(d)
	}
	return zstd.WithDecoderDictRaw(id, d)
}
