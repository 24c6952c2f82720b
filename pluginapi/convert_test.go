package pluginapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRestoreRequestProtoRoundTrip: every field of a RestoreRequest
// crosses the gRPC boundary, Excludes included (an engine that lost them
// would delete the excluded paths on an in-place restore).
func TestRestoreRequestProtoRoundTrip(t *testing.T) {
	req := &RestoreRequest{
		Target: "/t", OriginalTarget: "/o", InPlace: true, Replace: true,
		Options:  map[string]string{"k": "v"},
		Metadata: Metadata{Version: 2, JSON: []byte(`{"a":1}`)},
		Streams:  []string{"rootfs"},
		Excludes: []string{"__pycache__", "data/*"},
	}
	assert.Equal(t, req, restoreRequestFromProto(restoreRequestToProto(req)))
}

func TestCaptureRequestAndEntryProtoRoundTrip(t *testing.T) {
	req := &CaptureRequest{
		Target: "/t", Excludes: []string{"x"}, Env: map[string]string{"A": "1"}, Ports: []int{80},
		Options:      map[string]string{"k": "v"},
		Parent:       ParentIndex{"rootfs": {"a": {Size: 1, MtimeNs: 2, CtimeNs: 3, Inode: 4}}},
		ParentXattrs: true,
	}
	for _, packed := range []bool{false, true} {
		wire, err := captureRequestToProto(req, parentWire{packed: packed})
		require.NoError(t, err)
		got, err := captureRequestFromProto(wire)
		require.NoError(t, err)
		assert.Equal(t, req, got, "packed %v", packed)
	}
	// The same index built packed (ParentPacked) arrives as the same
	// Parent, to an engine that decodes packed indexes and to one that
	// does not (it gets the files' entries).
	pi := NewPackedIndex(1)
	pi.Add("a", IndexEntry{Size: 1, MtimeNs: 2, CtimeNs: 3, Inode: 4})
	pi.Add("d", IndexEntry{CtimeNs: 5, Inode: 6, Type: TypeDir})
	byPacked := *req
	byPacked.Parent, byPacked.ParentPacked = nil, map[string]*PackedIndex{"rootfs": pi}
	for _, packed := range []bool{false, true} {
		wire, err := captureRequestToProto(&byPacked, parentWire{packed: packed})
		require.NoError(t, err)
		got, err := captureRequestFromProto(wire)
		require.NoError(t, err)
		want := *req
		if packed {
			want.Parent = ParentIndex{"rootfs": {"a": req.Parent["rootfs"]["a"], "d": {CtimeNs: 5, Inode: 6, Type: TypeDir}}}
		}
		assert.Equal(t, &want, got, "packed %v", packed)
	}
	e := &Entry{Path: "a", Type: TypeFile, Mode: 0o644, UID: 1, GID: 2, MtimeNs: 3, CtimeNs: 4, Inode: 5, Size: 6,
		Unchanged: true, XattrsFromParent: true}
	assert.Equal(t, e, entryFromProto(entryToProto(e)))
}
