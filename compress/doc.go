// Package compress is the chunk codec of the store: zstd encoder and decoder
// pools on github.com/klauspost/compress, safe for concurrent use, and a small
// header that says how a chunk's bytes were stored (raw, zstd, or zstd with a
// shared dictionary) and how long they are uncompressed.
//
// Why a dictionary: most files of a Python virtualenv are small (38,542
// files in venv-full, most below 4 KiB). zstd compresses a small input alone
// only about 2x because every frame starts with empty history; a dictionary
// trained on the same kind of data gives each small chunk that history. See
// codec.go for the measured numbers behind the level and the thresholds.
package compress
