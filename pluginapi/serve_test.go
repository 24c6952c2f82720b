package pluginapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCallCounter: wait returns at once with no call in progress, waits for
// the calls in progress (also one begun while it waits), and gives up
// after its bound while one is still running.
func TestCallCounter(t *testing.T) {
	var c callCounter
	require.True(t, c.wait(time.Hour))

	c.begin()
	release := make(chan struct{})
	waited := make(chan bool, 1)
	go func() { waited <- c.wait(time.Hour) }()
	go func() {
		c.begin() // a call begun while another goroutine waits
		<-release
		c.end()
		c.end()
	}()
	close(release)
	require.True(t, <-waited)
	require.True(t, c.wait(time.Hour))

	c.begin()
	require.False(t, c.wait(time.Millisecond))
	c.end()
	require.True(t, c.wait(time.Hour))
}
