package pluginapi

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"google.golang.org/protobuf/proto"

	"github.com/pypj/ptest-snap/internal/venvfull"
	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

func wireTestIndex() ParentIndex {
	files := map[string]IndexEntry{
		"":                    {},
		"a":                   {Size: 1, MtimeNs: 2, CtimeNs: 3, Inode: 4},
		"lib/python3.11/x.py": {Size: 1 << 40, MtimeNs: math.MinInt64, CtimeNs: math.MaxInt64, Inode: math.MaxUint64},
		"ünï/çødé":            {Size: -7, MtimeNs: -2, CtimeNs: -3},
	}
	for i := range 1000 {
		files[fmt.Sprintf("site-packages/pkg%03d/mod.py", i)] = IndexEntry{Size: int64(i), MtimeNs: 1_700_000_000_000_000_000 + int64(i), CtimeNs: int64(i) * 7, Inode: uint64(i) * 13}
	}
	return ParentIndex{"rootfs": files, "volume:data": {"x": {Size: 5}}, "empty": {}}
}

// TestPackedIndexRoundTrip: a parent index sent packed arrives as the same
// index as one sent as entries, every stream and value range included.
func TestPackedIndexRoundTrip(t *testing.T) {
	idx := wireTestIndex()
	for _, packed := range []bool{false, true} {
		got, err := indexFromProto(parentToProto(idx, packed))
		require.NoError(t, err)
		assert.Equal(t, idx, got, "packed %v", packed)
	}
	// Directories and symlinks travel packed only, as files' records
	// of a negative size an engine that does not know them never matches.
	withDirs := wireTestIndex()
	withDirs["rootfs"]["lib"] = IndexEntry{Type: TypeDir, CtimeNs: 5, Inode: 6}
	withDirs["rootfs"]["lib64"] = IndexEntry{Type: TypeSymlink, CtimeNs: 7, Inode: 8}
	got, err := indexFromProto(parentToProto(withDirs, true))
	require.NoError(t, err)
	assert.Equal(t, withDirs, got)
	got, err = indexFromProto(parentToProto(withDirs, false))
	require.NoError(t, err)
	assert.Equal(t, idx, got, "not packed: files only")
	packed := appendPackedIndex(nil, map[string]IndexEntry{"d": {Type: TypeDir, CtimeNs: 1, Inode: 2}})
	old := map[string]IndexEntry{}
	require.NoError(t, decodePackedIndexV1(packed, old))
	assert.Equal(t, map[string]IndexEntry{"d": {Size: packedSizeDir, CtimeNs: 1, Inode: 2}}, old,
		"what an engine of before reads: a file of size -1, never unchanged")

	// Entries and packed bytes in one stream make one index.
	ps := &enginepb.ParentStream{Name: "rootfs",
		Entries: []*enginepb.IndexEntry{{Path: "old", Size: 9}},
		Packed:  appendPackedIndex(nil, map[string]IndexEntry{"new": {Size: 8}})}
	got, err = indexFromProto([]*enginepb.ParentStream{ps})
	require.NoError(t, err)
	assert.Equal(t, ParentIndex{"rootfs": {"old": {Size: 9}, "new": {Size: 8}}}, got)
}

// TestPackedIndexMalformed: a truncated or padded packed index is refused
// with errPackedIndex, never read past its end.
func TestPackedIndexMalformed(t *testing.T) {
	b := appendPackedIndex(nil, wireTestIndex()["rootfs"])
	for _, cut := range []int{0, 1, 2, 3, len(b) / 2, len(b) - 1} {
		err := decodePackedIndex(b[:cut], map[string]IndexEntry{})
		assert.ErrorIs(t, err, errPackedIndex, "cut at %d", cut)
	}
	err := decodePackedIndex(append(b[:len(b):len(b)], 0), map[string]IndexEntry{})
	assert.ErrorIs(t, err, errPackedIndex, "trailing byte")
	// A count no input could hold.
	err = decodePackedIndex([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 0}, map[string]IndexEntry{})
	assert.ErrorIs(t, err, errPackedIndex)
	_, err = captureRequestFromProto(&enginepb.CaptureRequest{Parent: []*enginepb.ParentStream{{Name: "rootfs", Packed: b[:len(b)-1]}}})
	assert.ErrorIs(t, err, errPackedIndex)
}

// FuzzDecodePackedIndex: hostile packed indexes never panic; one that
// decodes encodes back to the same entries.
func FuzzDecodePackedIndex(f *testing.F) {
	f.Add(appendPackedIndex(nil, map[string]IndexEntry{"a/b": {Size: 1, MtimeNs: -2, CtimeNs: 3, Inode: 4}}))
	f.Add(appendPackedIndex(nil, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := map[string]IndexEntry{}
		if err := decodePackedIndex(data, m); err != nil {
			require.ErrorIs(t, err, errPackedIndex)
			return
		}
		again := map[string]IndexEntry{}
		require.NoError(t, decodePackedIndex(appendPackedIndex(nil, m), again))
		require.Equal(t, m, again)
	})
}

// BenchmarkParentIndexWire measures sending venv-full's change index
// (every file's path, size, times and inode) in a capture request: the
// host's marshalling and the plugin's unmarshalling and decoding into the
// index it looks files up in, as entries and packed.
func BenchmarkParentIndexWire(b *testing.B) {
	files := map[string]IndexEntry{}
	root := venvfull.Dir(b)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		files[rel] = IndexEntry{Size: st.Size, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}
		return nil
	})
	require.NoError(b, err)
	req := &CaptureRequest{Target: root, Parent: ParentIndex{"rootfs": files}}
	for _, packed := range []bool{false, true} {
		name := map[bool]string{false: "entries", true: "packed"}[packed]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				wreq, err := captureRequestToProto(req, parentWire{packed: packed})
				require.NoError(b, err)
				wire, err := proto.Marshal(wreq)
				require.NoError(b, err)
				var got enginepb.CaptureRequest
				require.NoError(b, proto.Unmarshal(wire, &got))
				r, err := captureRequestFromProto(&got)
				require.NoError(b, err)
				require.Len(b, r.Parent["rootfs"], len(files))
				b.ReportMetric(float64(len(wire)), "wire-bytes")
			}
		})
	}
}

// TestPackedIndexReserve: appendPackedIndex packs an index of short paths
// into the room it reserves up front, and a long path still fits (append
// grows the buffer).
func TestPackedIndexReserve(t *testing.T) {
	idx := wireTestIndex()["rootfs"]
	b := appendPackedIndex(nil, idx)
	assert.Equal(t, binary.MaxVarintLen64+len(idx)*packedEntryGuess, cap(b), "one allocation")
	long := map[string]IndexEntry{strings.Repeat("d/", 300) + "f": {Size: math.MaxInt64, MtimeNs: math.MinInt64, Inode: math.MaxUint64}}
	got := map[string]IndexEntry{}
	require.NoError(t, decodePackedIndex(appendPackedIndex(nil, long), got))
	assert.Equal(t, long, got)
	assert.Equal(t, len(idx), packedCount(b))
}

// decodePackedIndexV1 decodes a packed index as engines built before
// directory records did: every record a file's, sizes as they are.
func decodePackedIndexV1(b []byte, m map[string]IndexEntry) error {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return errPackedIndex
	}
	off := k
	for range n {
		l, k := binary.Uvarint(b[off:])
		if k <= 0 {
			return errPackedIndex
		}
		path := string(b[off+k : off+k+int(l)])
		off += k + int(l)
		var e IndexEntry
		for _, v := range []*int64{&e.Size, &e.MtimeNs, &e.CtimeNs} {
			x, k := binary.Varint(b[off:])
			if k <= 0 {
				return errPackedIndex
			}
			*v, off = x, off+k
		}
		ino, k := binary.Uvarint(b[off:])
		if k <= 0 {
			return errPackedIndex
		}
		e.Inode, off = ino, off+k
		m[path] = e
	}
	return nil
}

// TestPackedIndexBuilt: an index built entry by entry (PackedIndex, as the
// host reads it from its store) is what appendPackedIndex packs from the
// map, and decodes back to the map; ParentFor hands it packed to a plugin
// and decoded to an engine in the host's process.
func TestPackedIndexBuilt(t *testing.T) {
	idx := wireTestIndex()["rootfs"]
	p := NewPackedIndex(2) // too small: Add grows it
	for path, e := range idx {
		p.Add(path, e)
	}
	assert.Equal(t, len(idx), p.Len())
	m, err := p.Map()
	require.NoError(t, err)
	assert.Equal(t, idx, m)
	assert.Equal(t, len(idx), packedCount(p.wire()))
	assert.Len(t, p.wire(), len(appendPackedIndex(nil, idx)))

	var empty PackedIndex
	m, err = empty.Map()
	require.NoError(t, err)
	assert.Empty(t, m)

	packed := map[string]*PackedIndex{"rootfs": p}
	parent, asPacked, err := ParentFor(&Plugin{}, packed)
	require.NoError(t, err)
	assert.Nil(t, parent)
	assert.Equal(t, packed, asPacked)
	parent, asPacked, err = ParentFor(inProcessEngine{}, packed)
	require.NoError(t, err)
	assert.Nil(t, asPacked)
	assert.Equal(t, ParentIndex{"rootfs": idx}, parent)
	parent, asPacked, err = ParentFor(inProcessEngine{}, nil)
	require.NoError(t, err)
	assert.Nil(t, parent)
	assert.Nil(t, asPacked)
}

// inProcessEngine is an Engine that is not a Plugin (ParentFor only asks
// which it is).
type inProcessEngine struct{ Engine }
