package store

import (
	"encoding/binary"
	"sort"
	"time"
)

// Key kinds; see doc.go for the layout.
//
// What they cost: after a first snapshot of venv-full, db/ is 6.38 MB of
// the store's 108.6 MB (2026-11-29, every key of a fresh store read back):
// one 5.98 MB table and a 0.38 MB value log. The table holds 52,385 'c'
// keys (33 bytes each, 1.73 MB): 43,076 pack references (~21-byte values,
// ~0.9 MB), 9,213 trees (9.3 MB raw, those encoded below valueThreshold
// ~2.2 MB; the rest are in the value log) and 96 locators of chunks
// stored alone; 129 'p' locators; Badger's own cost (versions, entry
// headers, offsets, block index 146 KB, bloom filter 46 KB) is ~1 MB.
// Most of it is hashes. The same entries written into fresh Badgers
// (one table each): 5.98 MB as now, 5.90 MB with 16 KiB blocks, 5.25 MB
// with Snappy, 4.78 MB with ZSTD and 16 KiB blocks. Those 1.2 MB would
// let ~21 more packs take SpeedFastest (packer.go: 56 KB and 1.6 ms of one
// thread each), ~33 ms, against ~8 ms to compress the table and a block
// cache that every lookup of a second create and a restore would go
// through (Badger refuses compression without one): not worth it.
const (
	kindChunk    = 'c'
	kindPack     = 'p'
	kindSnapshot = 's'
	kindName     = 'n'
	kindEnv      = 'e'
	kindIndex    = 'x'
	kindMeta     = 'm'
)

func chunkKey(h Hash) []byte {
	k := make([]byte, 1+len(h))
	k[0] = kindChunk
	copy(k[1:], h[:])
	return k
}

func snapshotKey(id string) []byte { return append([]byte{kindSnapshot}, id...) }
func nameKey(name string) []byte   { return append([]byte{kindName}, name...) }
func indexKey(id string) []byte    { return append([]byte{kindIndex}, id...) }
func metaKey(name string) []byte   { return append([]byte{kindMeta}, name...) }

// envPrefix is the prefix of one environment's entries in the env/time
// index; engine and env id cannot contain NUL (Snapshot.validate).
func envPrefix(engine, envID string) []byte {
	k := append([]byte{kindEnv}, engine...)
	k = append(k, 0)
	k = append(k, envID...)
	return append(k, 0)
}

// envKey orders one environment's snapshots by creation time: the time is
// big-endian with the sign bit flipped, so byte order is time order.
func envKey(engine, envID string, t time.Time, id string) []byte {
	k := envPrefix(engine, envID)
	k = binary.BigEndian.AppendUint64(k, uint64(t.UnixNano())^(1<<63))
	return append(k, id...)
}

// sortedKeys returns a map's keys in byte order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
