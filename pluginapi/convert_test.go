package pluginapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
