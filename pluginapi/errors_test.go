package pluginapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestSentinelsCrossTheWire(t *testing.T) {
	for _, r := range errorReasons {
		t.Run(r.reason, func(t *testing.T) {
			engineErr := fmt.Errorf("capture /x: %w", r.err)
			wire := toStatus(engineErr)
			assert.Equal(t, r.code, status.Code(wire))
			got, fromEngine := fromStatus(wire)
			require.True(t, fromEngine)
			require.ErrorIs(t, got, r.err)
			assert.Equal(t, engineErr.Error(), got.Error())
			for _, other := range errorReasons {
				if other.err != r.err {
					assert.NotErrorIs(t, got, other.err)
				}
			}
		})
	}
}

func TestStatusCodesWithoutReason(t *testing.T) {
	// An engine in another language may set only the code.
	got, fromEngine := fromStatus(status.Error(codes.NotFound, "no such venv"))
	require.True(t, fromEngine)
	require.ErrorIs(t, got, ErrTargetNotFound)

	got, fromEngine = fromStatus(status.Error(codes.Unimplemented, "no restore-in-place"))
	require.True(t, fromEngine)
	require.ErrorIs(t, got, ErrUnsupported)

	// Unavailable without a reason is what a dead connection looks like.
	_, fromEngine = fromStatus(status.Error(codes.Unavailable, "connection reset"))
	require.False(t, fromEngine)

	plain, fromEngine := fromStatus(toStatus(errors.New("disk on fire")))
	require.True(t, fromEngine)
	assert.Equal(t, "disk on fire", plain.Error())
	assert.Equal(t, codes.Canceled, status.Code(toStatus(fmt.Errorf("walk: %w", context.Canceled))))
}
