package pluginapi

import (
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/dchest/siphash"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

func fingerprintTestIndex() ParentIndex {
	idx := wireTestIndex()
	idx["rootfs"]["lib"] = IndexEntry{Type: TypeDir, MtimeNs: 11, CtimeNs: 5, Inode: 6}
	idx["rootfs"]["lib64"] = IndexEntry{Type: TypeSymlink, CtimeNs: 7, Inode: 8}
	return idx
}

// fingerprintRoundTrip sends req to an engine that takes fingerprints, through the
// wire, and returns what the engine gets.
func fingerprintRoundTrip(t *testing.T, req *CaptureRequest) (*CaptureRequest, *enginepb.CaptureRequest) {
	t.Helper()
	wreq, err := captureRequestToProto(req, parentWire{packed: true, fingerprints: true})
	require.NoError(t, err)
	b, err := proto.Marshal(wreq)
	require.NoError(t, err)
	var got enginepb.CaptureRequest
	require.NoError(t, proto.Unmarshal(b, &got))
	r, err := captureRequestFromProto(&got)
	require.NoError(t, err)
	return r, &got
}

// TestFingerprintsRoundTrip: an engine that takes fingerprints gets every
// stream of the parent index, sent as a map or packed, as 16 bytes per
// entry and no path; it finds every entry as it was, and none whose type
// or any statistic differs (a directory's or symlink's size and mtime do
// not count, as in IndexEntry.Type).
func TestFingerprintsRoundTrip(t *testing.T) {
	idx := fingerprintTestIndex()
	packed := map[string]*PackedIndex{}
	for stream, entries := range idx {
		p := NewPackedIndex(len(entries))
		for path, e := range entries {
			p.Add(path, e)
		}
		packed[stream] = p
	}
	printed, err := NewPrintedParent(0)
	require.NoError(t, err)
	for stream, entries := range idx {
		for path, e := range entries {
			printed.Add(stream, path, e)
		}
	}
	// Fingerprinted by the host for one stream, packed for the others.
	part, err := NewPrintedParent(len(idx["rootfs"]))
	require.NoError(t, err)
	for path, e := range idx["rootfs"] {
		part.Add("rootfs", path, e)
	}
	rest := map[string]*PackedIndex{}
	for stream, p := range packed {
		if stream != "rootfs" {
			rest[stream] = p
		}
	}
	for name, req := range map[string]*CaptureRequest{
		"map":     {Target: "/t", Parent: idx},
		"packed":  {Target: "/t", ParentPacked: packed},
		"printed": {Target: "/t", ParentPrinted: printed},
		"mixed":   {Target: "/t", ParentPrinted: part, ParentPacked: rest},
	} {
		t.Run(name, func(t *testing.T) {
			got, wire := fingerprintRoundTrip(t, req)
			for stream, m := range got.Parent {
				assert.Empty(t, m, "no path sent: %s", stream)
			}
			require.Len(t, wire.GetFingerprintKey(), FingerprintKeySize)
			for _, ps := range wire.GetParent() {
				assert.Empty(t, ps.GetEntries())
				assert.Empty(t, ps.GetPacked())
				assert.Len(t, ps.GetFingerprints(), FingerprintSize*len(idx[ps.GetName()]), ps.GetName())
			}
			require.Len(t, got.ParentFingerprints, len(idx)-1, "the empty stream sends nothing")
			for stream, entries := range idx {
				p := got.ParentFingerprints[stream]
				assert.Equal(t, len(entries), p.Len(), stream)
				for path, e := range entries {
					switch e.Type {
					case TypeDir, TypeSymlink:
						assert.True(t, p.Meta(e.Type, path, e.CtimeNs, e.Inode), path)
						other := map[EntryType]EntryType{TypeDir: TypeSymlink, TypeSymlink: TypeDir}[e.Type]
						assert.False(t, p.Meta(other, path, e.CtimeNs, e.Inode), path)
						assert.False(t, p.Meta(e.Type, path, e.CtimeNs+1, e.Inode), path)
						assert.False(t, p.Meta(e.Type, path, e.CtimeNs, e.Inode+1), path)
						assert.False(t, p.File(path, 0, 0, e.CtimeNs, e.Inode), path)
					default:
						assert.True(t, p.File(path, e.Size, e.MtimeNs, e.CtimeNs, e.Inode), path)
						assert.False(t, p.File(path, e.Size+1, e.MtimeNs, e.CtimeNs, e.Inode), path)
						assert.False(t, p.File(path, e.Size, e.MtimeNs+1, e.CtimeNs, e.Inode), path)
						assert.False(t, p.File(path, e.Size, e.MtimeNs, e.CtimeNs+1, e.Inode), path)
						assert.False(t, p.File(path, e.Size, e.MtimeNs, e.CtimeNs, e.Inode+1), path)
						assert.False(t, p.File(path+"x", e.Size, e.MtimeNs, e.CtimeNs, e.Inode), path)
						assert.False(t, p.Meta(TypeDir, path, e.CtimeNs, e.Inode), path)
					}
				}
			}
			var nilPrints *ParentFingerprints
			assert.False(t, nilPrints.File("a", 1, 2, 3, 4))
			assert.Zero(t, nilPrints.Len())
		})
	}
	n := 0
	for _, entries := range idx {
		n += len(entries)
	}
	assert.Equal(t, n, printed.Len())
	var nilPrinted *PrintedParent
	assert.Zero(t, nilPrinted.Len())
	// Fingerprints cannot be undone for an engine that takes paths.
	for _, how := range []parentWire{{}, {packed: true}} {
		_, err := captureRequestToProto(&CaptureRequest{ParentPrinted: printed}, how)
		assert.Error(t, err)
	}
	// Each request draws its own key.
	_, a := fingerprintRoundTrip(t, &CaptureRequest{Parent: idx})
	_, b := fingerprintRoundTrip(t, &CaptureRequest{Parent: idx})
	assert.NotEqual(t, a.GetFingerprintKey(), b.GetFingerprintKey())
	// No parent, no key.
	_, none := fingerprintRoundTrip(t, &CaptureRequest{Target: "/t"})
	assert.Empty(t, none.GetFingerprintKey())
	assert.Empty(t, none.GetParent())
}

// TestFingerprintDefinition pins what README.md tells engines in other
// languages: SipHash-2-4 with 128-bit output (checked against the
// reference implementation's first test vector) of the kind byte, size,
// mtime, ctime and inode as 8-byte little-endian integers, and the path;
// the fingerprint is the first half, then the second, little-endian.
func TestFingerprintDefinition(t *testing.T) {
	key := make([]byte, 16)
	for i := range key {
		key[i] = byte(i)
	}
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	lo, hi := siphash.Hash128(k0, k1, nil)
	w := newFingerprintWriter(key, 0)
	w.b = w.b[:0]
	assert.Equal(t, "a3817f04ba25a8e66df67214c7550293", hex.EncodeToString(append(le64(lo), le64(hi)...)), "reference vector")

	w.add("lib/a.py", IndexEntry{Size: 1, MtimeNs: 2, CtimeNs: 3, Inode: 4})
	w.add("lib", IndexEntry{Type: TypeDir, Size: 9, MtimeNs: 9, CtimeNs: 3, Inode: 4})
	w.add("lib64", IndexEntry{Type: TypeSymlink, CtimeNs: 3, Inode: 4})
	record := func(kind byte, size, mtime, ctime, ino uint64, path string) []byte {
		b := []byte{kind}
		for _, v := range []uint64{size, mtime, ctime, ino} {
			b = append(b, le64(v)...)
		}
		return append(b, path...)
	}
	var want []byte
	for _, r := range [][]byte{
		record('f', 1, 2, 3, 4, "lib/a.py"),
		record('d', 0, 0, 3, 4, "lib"),
		record('l', 0, 0, 3, 4, "lib64"),
	} {
		lo, hi := siphash.Hash128(k0, k1, r)
		want = append(append(want, le64(lo)...), le64(hi)...)
	}
	assert.Equal(t, hex.EncodeToString(want), hex.EncodeToString(w.b))
	// A path longer than the stack buffer hashes the same way.
	long := string(make([]byte, 3*fingerprintPathRoom))
	w = newFingerprintWriter(key, 1)
	w.add(long, IndexEntry{Size: 1})
	lo, hi = siphash.Hash128(k0, k1, record('f', 1, 0, 0, 0, long))
	assert.Equal(t, append(le64(lo), le64(hi)...), w.b)
}

func le64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

// TestParentFingerprintsTable: the table holds the zero fingerprint,
// counts a duplicate once, and finds entries whose probe chains run into
// each other and wrap around its end.
func TestParentFingerprintsTable(t *testing.T) {
	p := newParentFingerprints(make([]byte, 16), 3)
	size := uint64(len(p.slots))
	var added []fingerprint
	for i := range uint64(5) {
		// All in the table's last slot: they wrap around.
		f := fingerprint{lo: size - 1 + size*i, hi: i}
		p.add(f)
		added = append(added, f)
	}
	p.add(added[2])
	p.add(fingerprint{})
	for _, f := range added {
		assert.True(t, p.has(f), fmt.Sprint(f))
	}
	assert.True(t, p.has(fingerprint{}))
	assert.False(t, p.has(fingerprint{lo: size - 1, hi: 99}))
	assert.Equal(t, 6, p.Len())
	assert.False(t, newParentFingerprints(make([]byte, 16), 0).has(fingerprint{}))
}

// TestFingerprintsMalformed: a key of another size or fingerprints cut
// short are refused, never read past their end.
func TestFingerprintsMalformed(t *testing.T) {
	for name, req := range map[string]*enginepb.CaptureRequest{
		"no key":    {Parent: []*enginepb.ParentStream{{Name: "rootfs", Fingerprints: make([]byte, 32)}}},
		"short key": {FingerprintKey: make([]byte, 8), Parent: []*enginepb.ParentStream{{Name: "rootfs", Fingerprints: make([]byte, 32)}}},
		"cut short": {FingerprintKey: make([]byte, 16), Parent: []*enginepb.ParentStream{{Name: "rootfs", Fingerprints: make([]byte, 31)}}},
	} {
		_, err := captureRequestFromProto(req)
		assert.ErrorIs(t, err, errFingerprints, name)
	}
}

// TestFingerprintsOnlyToEnginesThatTakeThem: an engine that does not
// declare CapParentFingerprints gets the index packed or as entries, as
// before, and no key.
func TestFingerprintsOnlyToEnginesThatTakeThem(t *testing.T) {
	idx := wireTestIndex()
	for _, packed := range []bool{false, true} {
		wreq, err := captureRequestToProto(&CaptureRequest{Parent: idx}, parentWire{packed: packed})
		require.NoError(t, err)
		assert.Empty(t, wreq.GetFingerprintKey())
		got, err := captureRequestFromProto(wreq)
		require.NoError(t, err)
		assert.Nil(t, got.ParentFingerprints)
		assert.Equal(t, idx, got.Parent)
	}
}

// TestFingerprintOtherTypes: a record of a type no parent index holds (a
// hard link, say) matches no file, as a map's record of it would not.
func TestFingerprintOtherTypes(t *testing.T) {
	p, err := NewParentFingerprints(map[string]IndexEntry{"h": {Type: TypeHardlink, Size: 1, MtimeNs: 2, CtimeNs: 3, Inode: 4}})
	require.NoError(t, err)
	assert.Equal(t, 1, p.Len())
	assert.False(t, p.File("h", 1, 2, 3, 4))
	assert.False(t, p.Meta(TypeDir, "h", 3, 4))
	assert.False(t, p.Meta(TypeSymlink, "h", 3, 4))
}
