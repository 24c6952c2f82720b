package pluginapi

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestRingPopulatedInBackground: the host's ring and a second mapping of
// it (the plugin's, as openPluginRing makes it) share their bytes while
// their pages are still being populated, and a ring closed right after it
// was made waits for its populating goroutine before it unmaps.
func TestRingPopulatedInBackground(t *testing.T) {
	host, f, err := newHostRing()
	require.NoError(t, err)
	defer f.Close()

	// openPluginRing closes the descriptor it maps: give it a copy.
	dup, err := unix.Dup(int(f.Fd()))
	require.NoError(t, err)
	t.Setenv(ringFDEnv, fmt.Sprint(dup))
	plugin := openPluginRing()
	require.NotNil(t, plugin)

	copy(host.data[RingSize-5:], "hello")
	assert.Equal(t, "hello", string(plugin.data[RingSize-5:]))
	copy(plugin.data[:5], "world")
	assert.Equal(t, "world", string(host.data[:5]))

	host.close()
	plugin.close()
	for _, r := range []*bodyRing{host, plugin} {
		select {
		case <-r.populated:
		default:
			t.Fatal("ring unmapped before its pages were populated")
		}
		assert.Nil(t, r.mem)
	}
}
