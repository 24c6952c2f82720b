package pluginapi

import (
	"encoding/binary"
	"math"
	"unsafe"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

// Packed records: the records of a batch message encoded in one byte string
// (RestoreMessage.packed, CaptureResponse.packed) instead of a Record
// message each, between a host and an engine that both declare
// packed_records. Decoding a batch of Record messages cost an allocation
// per record, per entry and per shared frame, and protobuf's generic
// decoder for each of their fields: for the records of an in-place undo of
// change small on venv-full (6,551 files with their shared frames)
// 3.5-5.4 ms of the engine's CPU to unmarshal and read them, and ~5 ms of
// the host's to build and marshal them; packed, 0.8 and 1.1 ms
// (BenchmarkUndoRecords). The packed form is read straight into Entry
// values carved from slabs, with their strings.
//
// Each record is a kind byte and its fields, with no framing around them:
//
//	packedBegin  uvarint length, the stream's name
//	packedEntry  a flags byte (bits 0-2 the EntryType, 3 unchanged, 4
//	             delete, 5 xattrs_from_parent, 6 extras follow, 7 zero),
//	             uvarint path length, the path, then mode, uid and gid as
//	             uvarints, mtime_ns and ctime_ns as varints, inode as a
//	             uvarint and size as a varint; with extras: uvarint length
//	             and link_target, a uvarint xattr count and per xattr the
//	             uvarint lengths of name and value each followed by it, and
//	             subtree_files, subtree_dirs and subtree_bytes as varints
//	packedData   uvarint length, the frame's bytes
//	packedShared uvarint position, uvarint length
//
// Paths are not compressed against each other: a decoded record is never
// longer than its encoding (but for the Entry it fills), so a hostile peer
// cannot make a small message decode into much memory.
const (
	packedBegin  = 1
	packedEntry  = 2
	packedData   = 3
	packedShared = 4
)

// Flags of a packed entry.
const (
	packedTypeMask  = 0x07
	packedUnchanged = 1 << 3
	packedDelete    = 1 << 4
	packedXattrsPar = 1 << 5
	packedExtras    = 1 << 6
	packedReserved  = 1 << 7
)

func appendPackedString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendPackedBegin(b []byte, name string) []byte {
	return appendPackedString(append(b, packedBegin), name)
}

// appendPackedRecordEntry appends e, whose Type the sender has checked.
func appendPackedRecordEntry(b []byte, e *Entry) []byte {
	flags := byte(e.Type) & packedTypeMask
	if e.Unchanged {
		flags |= packedUnchanged
	}
	if e.Delete {
		flags |= packedDelete
	}
	if e.XattrsFromParent {
		flags |= packedXattrsPar
	}
	extras := e.LinkTarget != "" || len(e.Xattrs) > 0 || e.SubtreeFiles != 0 || e.SubtreeDirs != 0 || e.SubtreeBytes != 0
	if extras {
		flags |= packedExtras
	}
	b = append(b, packedEntry, flags)
	b = appendPackedString(b, e.Path)
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = binary.AppendUvarint(b, uint64(e.UID))
	b = binary.AppendUvarint(b, uint64(e.GID))
	b = binary.AppendVarint(b, e.MtimeNs)
	b = binary.AppendVarint(b, e.CtimeNs)
	b = binary.AppendUvarint(b, e.Inode)
	b = binary.AppendVarint(b, e.Size)
	if !extras {
		return b
	}
	b = appendPackedString(b, e.LinkTarget)
	b = binary.AppendUvarint(b, uint64(len(e.Xattrs)))
	for k, v := range e.Xattrs {
		b = appendPackedString(b, k)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	b = binary.AppendVarint(b, e.SubtreeFiles)
	b = binary.AppendVarint(b, e.SubtreeDirs)
	return binary.AppendVarint(b, e.SubtreeBytes)
}

func appendPackedData(b []byte, n int) []byte {
	return binary.AppendUvarint(append(b, packedData), uint64(n))
}

func appendPackedShared(b []byte, pos uint64, n int) []byte {
	b = binary.AppendUvarint(append(b, packedShared), pos)
	return binary.AppendUvarint(b, uint64(n))
}

// packedReader decodes one message's packed records, one at a time.
type packedReader struct {
	b []byte
	// entries is a slab the decoded entries are carved from, one
	// allocation per packedSlab entries; strs, likewise, holds the bytes of
	// their strings (never the bodies', so an entry kept does not keep a
	// message's bodies alive).
	entries []Entry
	strs    []byte
}

const (
	packedSlab    = 128
	packedStrSlab = 16 << 10
)

func (p *packedReader) more() bool { return len(p.b) > 0 }

func (p *packedReader) errTruncated() error {
	p.b = nil
	return protocolErrorf("packed records: truncated or malformed")
}

func (p *packedReader) uvarint() (uint64, bool) {
	v, n := binary.Uvarint(p.b)
	if n <= 0 {
		return 0, false
	}
	p.b = p.b[n:]
	return v, true
}

func (p *packedReader) varint() (int64, bool) {
	v, n := binary.Varint(p.b)
	if n <= 0 {
		return 0, false
	}
	p.b = p.b[n:]
	return v, true
}

func (p *packedReader) uint32() (uint32, bool) {
	v, ok := p.uvarint()
	if !ok || v > math.MaxUint32 {
		return 0, false
	}
	return uint32(v), true
}

// bytes returns the next length-prefixed bytes, still in the message.
func (p *packedReader) bytes() ([]byte, bool) {
	n, ok := p.uvarint()
	if !ok || n > uint64(len(p.b)) {
		return nil, false
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v, true
}

// string returns the next length-prefixed string, copied out.
func (p *packedReader) string() (string, bool) {
	v, ok := p.bytes()
	if !ok {
		return "", false
	}
	return p.intern(v), true
}

// intern copies v into the string slab (a long one into memory of its
// own) and returns it as a string; the slab's bytes never change once
// written.
func (p *packedReader) intern(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if len(v) > packedStrSlab/8 {
		return string(v)
	}
	if cap(p.strs)-len(p.strs) < len(v) {
		p.strs = make([]byte, 0, packedStrSlab)
	}
	start := len(p.strs)
	p.strs = append(p.strs, v...)
	return unsafeString(p.strs[start:len(p.strs):len(p.strs)])
}

func (p *packedReader) entry() *Entry {
	if len(p.entries) == 0 {
		p.entries = make([]Entry, packedSlab)
	}
	e := &p.entries[0]
	p.entries = p.entries[1:]
	return e
}

// next decodes the next record; p.more() must be true. A malformed record
// is a protocol error, after which p has nothing more.
func (p *packedReader) next() (record, error) {
	kind := p.b[0]
	p.b = p.b[1:]
	var ok bool
	switch kind {
	case packedBegin:
		var name string
		if name, ok = p.string(); ok {
			return record{kind: recBegin, name: name}, nil
		}
	case packedEntry:
		var e *Entry
		if e, ok = p.decodeEntry(); ok {
			return record{kind: recEntry, entry: e}, nil
		}
	case packedData:
		var data []byte
		if data, ok = p.bytes(); ok {
			return record{kind: recData, data: data}, nil
		}
	case packedShared:
		var pos uint64
		var n uint32
		if pos, ok = p.uvarint(); ok {
			if n, ok = p.uint32(); ok {
				return record{kind: recShared, pos: pos, length: n}, nil
			}
		}
	default:
		p.b = nil
		return record{}, protocolErrorf("packed records: unknown record kind %d", kind)
	}
	return record{}, p.errTruncated()
}

func (p *packedReader) decodeEntry() (*Entry, bool) {
	if len(p.b) == 0 {
		return nil, false
	}
	flags := p.b[0]
	p.b = p.b[1:]
	if flags&packedReserved != 0 {
		return nil, false
	}
	path, ok := p.bytes()
	if !ok {
		return nil, false
	}
	e := p.entry()
	e.Path = p.intern(path)
	e.Type = EntryType(flags & packedTypeMask)
	e.Unchanged = flags&packedUnchanged != 0
	e.Delete = flags&packedDelete != 0
	e.XattrsFromParent = flags&packedXattrsPar != 0
	if e.Mode, ok = p.uint32(); !ok {
		return nil, false
	}
	if e.UID, ok = p.uint32(); !ok {
		return nil, false
	}
	if e.GID, ok = p.uint32(); !ok {
		return nil, false
	}
	if e.MtimeNs, ok = p.varint(); !ok {
		return nil, false
	}
	if e.CtimeNs, ok = p.varint(); !ok {
		return nil, false
	}
	if e.Inode, ok = p.uvarint(); !ok {
		return nil, false
	}
	if e.Size, ok = p.varint(); !ok {
		return nil, false
	}
	if flags&packedExtras == 0 {
		return e, true
	}
	if e.LinkTarget, ok = p.string(); !ok {
		return nil, false
	}
	n, ok := p.uvarint()
	// Each xattr takes at least two bytes: n is bounded by what is left.
	if !ok || n > uint64(len(p.b))/2 {
		return nil, false
	}
	if n > 0 {
		e.Xattrs = make(map[string][]byte, n)
		for range n {
			k, ok := p.string()
			if !ok {
				return nil, false
			}
			v, ok := p.bytes()
			if !ok {
				return nil, false
			}
			if _, dup := e.Xattrs[k]; dup {
				return nil, false
			}
			e.Xattrs[k] = append([]byte{}, v...)
		}
	}
	if e.SubtreeFiles, ok = p.varint(); !ok {
		return nil, false
	}
	if e.SubtreeDirs, ok = p.varint(); !ok {
		return nil, false
	}
	if e.SubtreeBytes, ok = p.varint(); !ok {
		return nil, false
	}
	return e, true
}

// recordKind is what a record carries.
type recordKind uint8

const (
	recNone recordKind = iota
	recBegin
	recEntry
	recData
	recShared
)

// record is one record as the record layer reads it, from a Record
// message or packed.
type record struct {
	kind   recordKind
	name   string // recBegin
	entry  *Entry // recEntry
	data   []byte // recData
	pos    uint64 // recShared
	length uint32 // recShared
}

// recordFromProto converts a Record message.
func recordFromProto(r *enginepb.Record) record {
	switch k := r.GetKind().(type) {
	case *enginepb.Record_BeginStream:
		return record{kind: recBegin, name: k.BeginStream}
	case *enginepb.Record_Entry:
		return record{kind: recEntry, entry: entryFromProto(k.Entry)}
	case *enginepb.Record_Data:
		return record{kind: recData, data: k.Data}
	case *enginepb.Record_Shared:
		return record{kind: recShared, pos: k.Shared.GetPosition(), length: k.Shared.GetLength()}
	}
	return record{}
}

// wireBatch is what one batch message carries: its Record messages, then
// its packed records.
type wireBatch struct {
	recs   []*enginepb.Record
	packed []byte
}

// unsafeString returns b as a string without copying; b must never change.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
