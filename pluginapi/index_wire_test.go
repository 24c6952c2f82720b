package pluginapi

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

func wireTestIndex() ParentIndex {
	files := map[string]IndexEntry{
		"":                    {},
		"a":                   {Size: 1, MtimeNs: 2, CtimeNs: 3, Inode: 4},
		"lib/python3.11/x.py": {Size: 1 << 40, MtimeNs: math.MinInt64, CtimeNs: math.MaxInt64, Inode: math.MaxUint64},
		"ünï/çødé":            {Size: -1, MtimeNs: -2, CtimeNs: -3},
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
	// Entries and packed bytes in one stream make one index.
	ps := &enginepb.ParentStream{Name: "rootfs",
		Entries: []*enginepb.IndexEntry{{Path: "old", Size: 9}},
		Packed:  appendPackedIndex(nil, map[string]IndexEntry{"new": {Size: 8}})}
	got, err := indexFromProto([]*enginepb.ParentStream{ps})
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
