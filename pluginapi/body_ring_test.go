package pluginapi

import (
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A plugin maps a ring of any sane size the host passes, and takes its
// size from the descriptor; one of another size is left alone (bodies
// then go inline).
func TestOpenPluginRingSizes(t *testing.T) {
	for _, tc := range []struct {
		size int64
		ok   bool
	}{
		{RingSize, true},
		{16 << 20, true},
		{minRingSize, true},
		{minRingSize - ringHeader, false},
		{RingSize + 1, false},
		{0, false},
	} {
		fd, err := unix.MemfdCreate("ring-test", 0)
		require.NoError(t, err)
		require.NoError(t, unix.Ftruncate(fd, ringHeader+tc.size))
		t.Setenv(ringFDEnv, strconv.Itoa(fd))
		r := openPluginRing() // closes fd once mapped
		if !tc.ok {
			assert.Nil(t, r, "size %d", tc.size)
			_ = unix.Close(fd)
			continue
		}
		require.NotNil(t, r, "size %d", tc.size)
		assert.Len(t, r.data, int(tc.size))
		r.close()
	}
	// A descriptor that is not there at all.
	t.Setenv(ringFDEnv, "999")
	assert.Nil(t, openPluginRing())
	os.Unsetenv(ringFDEnv)
}
