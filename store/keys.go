package store

import (
	"encoding/binary"
	"sort"
	"time"
)

// Key kinds; see doc.go for the layout.
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
