package main

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/core"
	"github.com/pypj/ptest-snap/pluginapi"
)

// TestPrelaunchedEngineIsTheOneResolved: create starts its engine while the
// store opens; resolve hands out that process (not a second one), a failed
// prelaunch fails resolve as a launch there would, and close stops it all.
func TestPrelaunchedEngineIsTheOneResolved(t *testing.T) {
	requireBinaries(t)
	t.Setenv("PTEST_SNAP_PLUGIN_PATH", binDir)
	ctx := context.Background()
	h := newEngineHost(false, io.Discard, nil)
	h.prelaunch(ctx, "dir")
	h.prelaunch(ctx, "dir") // once per name
	h.prelaunch(ctx, "no-such-engine")

	e, err := h.resolve(ctx, "dir")
	require.NoError(t, err)
	p := e.(*pluginapi.Plugin)
	info, err := p.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, "dir", info.Name)
	again, err := h.resolve(ctx, "dir")
	require.NoError(t, err)
	assert.Same(t, p, again.(*pluginapi.Plugin), "one process per engine")

	_, err = h.resolve(ctx, "no-such-engine")
	require.ErrorIs(t, err, core.ErrEngineNotFound)

	// A prelaunch nobody resolves is stopped by close too.
	h.prelaunch(ctx, "virtualenv")
	h.close()
	assert.True(t, p.Exited())
	_, err = h.resolve(ctx, "virtualenv")
	require.ErrorIs(t, err, pluginapi.ErrHostClosed)
}
