package pluginapi

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/dchest/siphash"
)

// An engine uses its parent index only to ask "is this entry exactly as
// the parent saw it?". Packed, venv-full's index is 4 MB of paths and
// varints: receiving it (HTTP/2 frames, then protobuf's copy) and turning
// it into a map of 46,509 strings cost the plugin ~100 ms of CPU per
// second create on a paravirtualised machine, and each of the walk's
// lookups in that map missed the cache twice (bucket, then the key's
// bytes): ~45 ms more. So to an engine that declares
// CapParentFingerprints the host sends each entry as a 16-byte keyed
// fingerprint of its path, type and statistics instead (0.75 MB), and the
// engine fingerprints what it lstats and looks it up in an open-addressing
// table: one probe, no string.
//
// The fingerprint is SipHash-2-4 with 128-bit output (a PRF for short
// inputs) under a key the host draws at random for each request, so nobody
// who can change the tree but does not see the request can make a changed
// entry match an unchanged one; an accidental match of two 128-bit values
// is out of the question.

// FingerprintSize is the size of one entry's fingerprint.
const FingerprintSize = 16

// FingerprintKeySize is the size of the key fingerprints are made with.
const FingerprintKeySize = 16

// Fingerprint kinds: the first byte of a fingerprinted record.
const (
	fingerprintFile    = 'f'
	fingerprintDir     = 'd'
	fingerprintSymlink = 'l'
	fingerprintOther   = '?'
)

// fingerprintHeader is the fixed part of a fingerprinted record: kind,
// then size, mtime, ctime and inode as 8-byte little-endian integers; the
// path's bytes follow.
const fingerprintHeader = 1 + 4*8

// fingerprintPathRoom is how long a path can be before fingerprinting it
// needs a heap buffer.
const fingerprintPathRoom = 512

type fingerprint struct{ lo, hi uint64 }

// fingerprintOf returns the fingerprint of an entry: a regular file's
// (typ 0, as in a parent index, or TypeFile) covers its size, mtime, ctime and inode, a
// directory's or symlink's its ctime and inode only (IndexEntry.Type).
func fingerprintOf(k0, k1 uint64, typ EntryType, path string, size, mtimeNs, ctimeNs int64, inode uint64) fingerprint {
	var buf [fingerprintHeader + fingerprintPathRoom]byte
	b := buf[:fingerprintHeader]
	switch typ {
	case 0, TypeFile:
		b[0] = fingerprintFile
	case TypeDir, TypeSymlink:
		b[0] = fingerprintDir
		if typ == TypeSymlink {
			b[0] = fingerprintSymlink
		}
		size, mtimeNs = 0, 0
	default:
		// No parent index holds other types; were one given, it must
		// match nothing the engine looks up, as in a map (IndexEntry.Type).
		b[0] = fingerprintOther
	}
	binary.LittleEndian.PutUint64(b[1:], uint64(size))
	binary.LittleEndian.PutUint64(b[9:], uint64(mtimeNs))
	binary.LittleEndian.PutUint64(b[17:], uint64(ctimeNs))
	binary.LittleEndian.PutUint64(b[25:], inode)
	if len(path) > fingerprintPathRoom {
		b = append(append(make([]byte, 0, fingerprintHeader+len(path)), b...), path...)
	} else {
		b = append(b, path...)
	}
	lo, hi := siphash.Hash128(k0, k1, b)
	return fingerprint{lo, hi}
}

// ParentFingerprints is one stream's parent index as fingerprints
// (CaptureRequest.ParentFingerprints): it says whether an entry is as the
// parent saw it, and nothing else. Safe for concurrent lookups.
type ParentFingerprints struct {
	k0, k1 uint64
	// slots is an open-addressing table (linear probing) of a power of
	// two size; the zero fingerprint marks an empty slot, and hasZero
	// says whether the index holds the zero fingerprint itself.
	slots   []fingerprint
	hasZero bool
	n       int
}

// newParentFingerprints returns an empty table for about n fingerprints
// made with key.
func newParentFingerprints(key []byte, n int) *ParentFingerprints {
	size := 1 << bits.Len(uint(max(n, 8)*4/3))
	return &ParentFingerprints{
		k0:    binary.LittleEndian.Uint64(key[0:8]),
		k1:    binary.LittleEndian.Uint64(key[8:16]),
		slots: make([]fingerprint, size),
	}
}

func (p *ParentFingerprints) add(f fingerprint) {
	if f == (fingerprint{}) {
		if !p.hasZero {
			p.hasZero = true
			p.n++
		}
		return
	}
	mask := uint64(len(p.slots) - 1)
	for i := f.lo & mask; ; i = (i + 1) & mask {
		switch p.slots[i] {
		case f:
			return
		case fingerprint{}:
			p.slots[i] = f
			p.n++
			return
		}
	}
}

func (p *ParentFingerprints) has(f fingerprint) bool {
	if f == (fingerprint{}) {
		return p.hasZero
	}
	mask := uint64(len(p.slots) - 1)
	for i := f.lo & mask; ; i = (i + 1) & mask {
		switch p.slots[i] {
		case f:
			return true
		case fingerprint{}:
			return false
		}
	}
}

// Len returns the number of fingerprints; 0 for a nil p.
func (p *ParentFingerprints) Len() int {
	if p == nil {
		return 0
	}
	return p.n
}

// File reports whether the parent has a regular file at path with this
// size, mtime, ctime and inode. False for a nil p.
func (p *ParentFingerprints) File(path string, size, mtimeNs, ctimeNs int64, inode uint64) bool {
	return p != nil && p.has(fingerprintOf(p.k0, p.k1, TypeFile, path, size, mtimeNs, ctimeNs, inode))
}

// Meta reports whether the parent has an entry of type typ (TypeDir or
// TypeSymlink) at path with this ctime and inode (see IndexEntry.Type).
// False for a nil p.
func (p *ParentFingerprints) Meta(typ EntryType, path string, ctimeNs int64, inode uint64) bool {
	return p != nil && p.has(fingerprintOf(p.k0, p.k1, typ, path, 0, 0, ctimeNs, inode))
}

// errFingerprints is the error of a malformed fingerprint index.
var errFingerprints = errors.New("malformed parent fingerprints")

// decodeFingerprints returns the table of one stream's fingerprints b
// (FingerprintSize bytes each) made with key.
func decodeFingerprints(key, b []byte) (*ParentFingerprints, error) {
	if len(key) != FingerprintKeySize {
		return nil, fmt.Errorf("%w: key of %d bytes", errFingerprints, len(key))
	}
	if len(b)%FingerprintSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes", errFingerprints, len(b))
	}
	p := newParentFingerprints(key, len(b)/FingerprintSize)
	for ; len(b) > 0; b = b[FingerprintSize:] {
		p.add(fingerprint{binary.LittleEndian.Uint64(b[0:8]), binary.LittleEndian.Uint64(b[8:16])})
	}
	return p, nil
}

// newFingerprintKey draws a key for one request's fingerprints.
func newFingerprintKey() ([]byte, error) {
	key := make([]byte, FingerprintKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	return key, nil
}

// fingerprintWriter appends the wire form of fingerprints made with one
// key.
type fingerprintWriter struct {
	k0, k1 uint64
	b      []byte
}

func newFingerprintWriter(key []byte, n int) *fingerprintWriter {
	return &fingerprintWriter{
		k0: binary.LittleEndian.Uint64(key[0:8]),
		k1: binary.LittleEndian.Uint64(key[8:16]),
		b:  make([]byte, 0, n*FingerprintSize),
	}
}

func (w *fingerprintWriter) add(path string, e IndexEntry) {
	f := fingerprintOf(w.k0, w.k1, e.Type, path, e.Size, e.MtimeNs, e.CtimeNs, e.Inode)
	w.b = binary.LittleEndian.AppendUint64(w.b, f.lo)
	w.b = binary.LittleEndian.AppendUint64(w.b, f.hi)
}

// fingerprintsOfMap returns the wire form of a stream's index entries.
func fingerprintsOfMap(key []byte, entries map[string]IndexEntry) []byte {
	w := newFingerprintWriter(key, len(entries))
	for path, e := range entries {
		w.add(path, e)
	}
	return w.b
}

// fingerprintsOfPacked returns the wire form of a packed index's entries,
// read without building a map.
func fingerprintsOfPacked(key []byte, p *PackedIndex) ([]byte, error) {
	w := newFingerprintWriter(key, p.Len())
	err := visitPackedIndex(p.wire(), w.add)
	return w.b, err
}

// NewParentFingerprints returns the fingerprints of one stream's index
// entries under a fresh key: what an engine that declares
// CapParentFingerprints gets from the host for them.
func NewParentFingerprints(entries map[string]IndexEntry) (*ParentFingerprints, error) {
	key, err := newFingerprintKey()
	if err != nil {
		return nil, err
	}
	return decodeFingerprints(key, fingerprintsOfMap(key, entries))
}

// PrintedParent is a parent index fingerprinted by the host as it reads the
// index from its store (CaptureRequest.ParentPrinted), for an engine that
// takes fingerprints: no path is kept, and the 4 MB packed form of
// venv-full's index, whose first touch alone was ~1,000 page faults on the
// way to the engine's walk, is never made.
type PrintedParent struct {
	key     []byte
	hint    int
	streams map[string]*fingerprintWriter
	// cur is the stream of the last Add: entries come stream by stream.
	cur     *fingerprintWriter
	curName string
	n       int
}

// NewPrintedParent returns an empty index, under a fresh key, with room for
// about n entries in its first stream.
func NewPrintedParent(n int) (*PrintedParent, error) {
	key, err := newFingerprintKey()
	if err != nil {
		return nil, err
	}
	return &PrintedParent{key: key, hint: max(n, 0), streams: map[string]*fingerprintWriter{}}, nil
}

// Add fingerprints the entry of path in stream, which must not be in p
// already.
func (p *PrintedParent) Add(stream, path string, e IndexEntry) {
	if p.cur == nil || stream != p.curName {
		if p.cur = p.streams[stream]; p.cur == nil {
			p.cur = newFingerprintWriter(p.key, p.hint)
			p.streams[stream] = p.cur
			p.hint = 0 // further streams grow as they need
		}
		p.curName = stream
	}
	p.cur.add(path, e)
	p.n++
}

// Len returns the number of entries of every stream.
func (p *PrintedParent) Len() int {
	if p == nil {
		return 0
	}
	return p.n
}

// TakesParentFingerprints reports whether eng is a Plugin whose Info (asked
// before) declared CapParentFingerprints: the host then gives it its
// parent index as a PrintedParent (CaptureRequest.ParentPrinted). An
// engine in the host's process takes CaptureRequest.Parent.
func TakesParentFingerprints(eng Engine) bool {
	p, ok := eng.(*Plugin)
	return ok && p.fingerprints.Load()
}
