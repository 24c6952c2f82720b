// Package compress is the chunk codec of the store: zstd encoder and decoder
// pools on github.com/klauspost/compress, safe for concurrent use, and a small
// header that says how a chunk's bytes were stored (raw when compression
// does not pay, zstd, or zstd with a shared dictionary) and how long they are
// uncompressed.
//
// Dictionaries: most files of a Python virtualenv are small (38,542 files in
// venv-full, most below 4 KiB) and zstd compresses a small input alone only
// about 2x, because every frame starts with empty history. The codec
// supports dictionaries (BuildDict trains one with klauspost's builder) and
// BenchmarkVenvLevels measures them; on venv-full a 112 KiB dictionary saved
// only 4.5 MB of 118.7 MB and halved encoding speed, while packing
// neighbouring small files into one frame saved 16 MB. So the store packs
// (store/packer.go) and does not use dictionaries today.
package compress
