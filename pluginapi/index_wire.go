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
		b = appendPackedEntry(b, p, e)
	}
	return b
}

// appendPackedEntry appends the packed form of path's entry e to b.
func appendPackedEntry(b []byte, path string, e IndexEntry) []byte {
	b = binary.AppendUvarint(b, uint64(len(path)))
	b = append(b, path...)
	b = binary.AppendVarint(b, packedSize(e))
	b = binary.AppendVarint(b, e.MtimeNs)
	b = binary.AppendVarint(b, e.CtimeNs)
	return binary.AppendUvarint(b, e.Inode)
}

// PackedIndex is one stream's parent index in its packed form, built entry
// by entry as the host reads the index from its store
// (CaptureRequest.ParentPacked). Building a map of every path first, only
// to pack it for the engine, took ~30 ms of the host's CPU per second
// create of venv-full (46,509 inserts and the map's growth, then a pass
// over the map whose keys lie all over the heap), ~14 ms of it between
// the index being read and the capture starting.
type PackedIndex struct {
	// b holds packedCountRoom bytes for the count, then the entries.
	b []byte
	n int
}

// packedCountRoom is the room kept before the entries for their count.
const packedCountRoom = binary.MaxVarintLen64

// NewPackedIndex returns an empty index with room for about n entries.
func NewPackedIndex(n int) *PackedIndex {
	return &PackedIndex{b: make([]byte, packedCountRoom, packedCountRoom+max(n, 0)*packedEntryGuess)}
}

// Add appends the entry of path, which must not be in p already.
func (p *PackedIndex) Add(path string, e IndexEntry) {
	if p.b == nil {
		p.b = make([]byte, packedCountRoom)
	}
	p.b = appendPackedEntry(p.b, path, e)
	p.n++
}

// Len returns the number of entries.
func (p *PackedIndex) Len() int { return p.n }

// wire returns the packed form: the count, then the entries, which are not
// copied.
func (p *PackedIndex) wire() []byte {
	if p.b == nil {
		p.b = make([]byte, packedCountRoom)
	}
	var count [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(count[:], uint64(p.n))
	start := packedCountRoom - k
	copy(p.b[start:], count[:k])
	return p.b[start:]
}

// Map returns the index as a map, for an engine that takes
// CaptureRequest.Parent. Its paths share p's bytes.
func (p *PackedIndex) Map() (map[string]IndexEntry, error) {
	m := make(map[string]IndexEntry, p.n)
	return m, decodePackedIndex(p.wire(), m)
}

// ParentFor returns what CaptureRequest.Parent and ParentPacked are set
// to for eng from the packed parent index packed: packed as it is for an
// engine in a plugin process (Plugin.Capture sends it as it is, or decodes
// it for an engine that does not decode packed indexes), decoded for one
// in the host's process.
func ParentFor(eng Engine, packed map[string]*PackedIndex) (ParentIndex, map[string]*PackedIndex, error) {
	if _, ok := eng.(*Plugin); ok || packed == nil {
		return nil, packed, nil
	}
	idx, err := unpackParent(packed)
	return idx, nil, err
}

// unpackParent decodes every stream of packed.
func unpackParent(packed map[string]*PackedIndex) (ParentIndex, error) {
	idx := make(ParentIndex, len(packed))
	for st, p := range packed {
		m, err := p.Map()
		if err != nil {
			return nil, fmt.Errorf("stream %q: %w", st, err)
		}
		idx[st] = m
	}
	return idx, nil
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
	return visitPackedIndex(b, func(path string, e IndexEntry) { m[path] = e })
}

// visitPackedIndex calls visit for each entry of packed index b, with a
// path that is a substring of b (see decodePackedIndex).
func visitPackedIndex(b []byte, visit func(path string, e IndexEntry)) error {
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
		visit(all[start:start+int(l)], e)
	}
	if off != len(b) {
		return fmt.Errorf("%w: trailing bytes", errPackedIndex)
	}
	return nil
}
