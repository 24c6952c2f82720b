package pluginapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// A create sends the engine its parent's change index: 46,509 entries for
// venv-full. As one IndexEntry message each, marshalling them in the host
// and unmarshalling them in the plugin (a message and a string per entry)
// cost ~12 and ~31 ms of CPU per create (profiles of 8 second creates of
// venv-full), both before the engine's walk can begin. To an engine that
// says it decodes it (InfoResponse.packed_index, set by Serve), each
// stream's index travels as one byte string instead (ParentStream.packed):
// gRPC copies it whole, and the plugin decodes it with one string for all
// its paths.

// A directory's or symlink's record (IndexEntry.Type, sent with
// CaptureRequest.UnchangedDirs) goes packed with a negative size, which no
// file has: an engine that does not know them finds no file of that size
// and so never takes one for unchanged.
const (
	packedSizeDir     = -1
	packedSizeSymlink = -2
)

// packedSize is the size field of e's packed form.
func packedSize(e IndexEntry) int64 {
	switch e.Type {
	case TypeDir:
		return packedSizeDir
	case TypeSymlink:
		return packedSizeSymlink
	}
	return e.Size
}

// minPackedEntry is the fewest bytes a packed entry takes (an empty path's
// length and four one-byte varints): it bounds the count a packed index
// can claim.
const minPackedEntry = 5

// packedEntryGuess is the room appendPackedIndex reserves per entry: a
// path of a venv's site-packages (~60 bytes) and its four varints (~25).
// Measuring the exact size first took a second pass over the map, a third
// of the host's ~12 ms of packing venv-full's index, on the way to the
// engine's walk; a guess too small costs one copy as append grows b.
const packedEntryGuess = 96

// appendPackedIndex appends the packed form of entries to b.
func appendPackedIndex(b []byte, entries map[string]IndexEntry) []byte {
	if size := binary.MaxVarintLen64 + len(entries)*packedEntryGuess; cap(b)-len(b) < size {
		b = append(make([]byte, 0, len(b)+size), b...)
	}
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for p, e := range entries {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
		b = binary.AppendVarint(b, packedSize(e))
		b = binary.AppendVarint(b, e.MtimeNs)
		b = binary.AppendVarint(b, e.CtimeNs)
		b = binary.AppendUvarint(b, e.Inode)
	}
	return b
}

// packedCount returns the entry count packed index b claims, if it is
// plausible (for sizing the map it is decoded into).
func packedCount(b []byte) int {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)/minPackedEntry) {
		return 0
	}
	return int(n)
}

// errPackedIndex is the error of a malformed packed index.
var errPackedIndex = errors.New("malformed packed parent index")

// decodePackedIndex adds the entries of packed index b to m. Their paths
// are substrings of b itself, which the caller must never modify
// afterwards: the plugin decodes the bytes gRPC unmarshalled for it alone,
// and a copy of venv-full's 4 MB index was ~1,000 page faults of fresh
// memory, ~7 ms of the engine's CPU before its walk could start.
func decodePackedIndex(b []byte, m map[string]IndexEntry) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)/minPackedEntry) {
		return fmt.Errorf("%w: entry count", errPackedIndex)
	}
	all := unsafe.String(unsafe.SliceData(b), len(b))
	off := k
	varint := func() int64 {
		v, k := binary.Varint(b[off:])
		if k <= 0 {
			off = -1
			return 0
		}
		off += k
		return v
	}
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(b[off:])
		if k <= 0 || l > uint64(len(b)-off-k) {
			return fmt.Errorf("%w: path of entry %d", errPackedIndex, i)
		}
		start := off + k
		off = start + int(l)
		var e IndexEntry
		if e.Size = varint(); off < 0 {
			return fmt.Errorf("%w: size of entry %d", errPackedIndex, i)
		}
		if e.MtimeNs = varint(); off < 0 {
			return fmt.Errorf("%w: mtime of entry %d", errPackedIndex, i)
		}
		if e.CtimeNs = varint(); off < 0 {
			return fmt.Errorf("%w: ctime of entry %d", errPackedIndex, i)
		}
		ino, k := binary.Uvarint(b[off:])
		if k <= 0 {
			return fmt.Errorf("%w: inode of entry %d", errPackedIndex, i)
		}
		off += k
		e.Inode = ino
		switch e.Size {
		case packedSizeDir:
			e.Type, e.Size = TypeDir, 0
		case packedSizeSymlink:
			e.Type, e.Size = TypeSymlink, 0
		}
		m[all[start:start+int(l)]] = e
	}
	if off != len(b) {
		return fmt.Errorf("%w: trailing bytes", errPackedIndex)
	}
	return nil
}
