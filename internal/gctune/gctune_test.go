package gctune

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

// settings returns the collector's percent and memory limit.
func settings() (int, int64) {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p, debug.SetMemoryLimit(-1)
}

// TestQuiet: the collector is off under the limit until the first
// collection, which applies after; restore puts back what Quiet found, and
// after a restore the first collection changes nothing.
func TestQuiet(t *testing.T) {
	prevPercent, prevLimit := settings()
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)

	done := make(chan struct{})
	restore := quiet(64<<20, func() {
		debug.SetGCPercent(30)
		debug.SetMemoryLimit(200 << 20)
	}, func() { close(done) })
	p, l := settings()
	assert.Equal(t, -1, p)
	assert.EqualValues(t, 64<<20, l)
	runtime.GC()
	<-done // the finalizer goroutine runs after the collection
	p, l = settings()
	assert.Equal(t, 30, p, "switched at the first collection")
	assert.EqualValues(t, 200<<20, l)
	restore()
	p, l = settings()
	assert.Equal(t, 100, p, "restored")
	assert.EqualValues(t, int64(math.MaxInt64), l)

	done = make(chan struct{})
	restore = quiet(64<<20, func() { debug.SetGCPercent(30) }, func() { close(done) })
	restore()
	runtime.GC()
	<-done
	p, l = settings()
	assert.Equal(t, 100, p, "a collection after restore leaves the settings alone")
	assert.EqualValues(t, int64(math.MaxInt64), l)
}

// TestQuietLeavesUserSettings: with GOGC or GOMEMLIMIT set by the user,
// Quiet changes nothing and its restore is a no-op.
func TestQuietLeavesUserSettings(t *testing.T) {
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			prevPercent, prevLimit := settings()
			t.Cleanup(func() {
				debug.SetGCPercent(prevPercent)
				debug.SetMemoryLimit(prevLimit)
			})
			t.Setenv(env, "50") // read by Quiet, not applied: the runtime read it at start
			debug.SetGCPercent(70)
			debug.SetMemoryLimit(300 << 20)
			restore := Quiet(64<<20, func() { debug.SetGCPercent(30) })
			p, l := settings()
			assert.Equal(t, 70, p)
			assert.EqualValues(t, 300<<20, l)
			restore()
			p, l = settings()
			assert.Equal(t, 70, p)
			assert.EqualValues(t, 300<<20, l)
		})
	}
}
