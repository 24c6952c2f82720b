package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSetMemoryLimit: the CLI's soft limit applies unless the user set
// GOMEMLIMIT, whose value the runtime has applied and must keep.
func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(1 << 30) // as the runtime did at start
	setMemoryLimit()
	assert.EqualValues(t, 1<<30, debug.SetMemoryLimit(-1), "GOMEMLIMIT wins")

	os.Unsetenv("GOMEMLIMIT")
	debug.SetMemoryLimit(math.MaxInt64)
	setMemoryLimit()
	assert.EqualValues(t, softMemoryLimit, debug.SetMemoryLimit(-1))
}

// TestTuneGCForCreate: a create runs with the collector off up to
// createQuietHeap, switches to its own settings at the first collection,
// and puts the previous ones back; GOGC or GOMEMLIMIT set by the user win.
func TestTuneGCForCreate(t *testing.T) {
	prevLimit := debug.SetMemoryLimit(-1)
	prevPercent := debug.SetGCPercent(100)
	t.Cleanup(func() {
		debug.SetMemoryLimit(prevLimit)
		debug.SetGCPercent(prevPercent)
	})
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Setenv(env, "") // restored after the test
		os.Unsetenv(env)
	}
	debug.SetMemoryLimit(softMemoryLimit)

	switched := make(chan struct{})
	restore := tuneGC(func() { close(switched) })
	assert.EqualValues(t, createQuietHeap, debug.SetMemoryLimit(-1), "quiet until the first collection")
	assert.Equal(t, -1, debug.SetGCPercent(-1))
	runtime.GC()
	<-switched // the finalizer goroutine runs after the collection
	assert.EqualValues(t, createMemoryLimit, debug.SetMemoryLimit(-1))
	assert.Equal(t, createGCPercent, debug.SetGCPercent(createGCPercent))
	restore()
	assert.EqualValues(t, softMemoryLimit, debug.SetMemoryLimit(-1), "limit restored")
	assert.Equal(t, 100, debug.SetGCPercent(100), "GOGC restored")

	// A first collection after the create leaves the settings alone.
	switched = make(chan struct{})
	restore = tuneGC(func() { close(switched) })
	restore()
	runtime.GC()
	<-switched
	assert.EqualValues(t, softMemoryLimit, debug.SetMemoryLimit(-1), "limit stays restored")
	assert.Equal(t, 100, debug.SetGCPercent(100), "GOGC stays restored")

	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "200")
			restore := tuneGCForCreate()
			assert.EqualValues(t, softMemoryLimit, debug.SetMemoryLimit(-1), "the user's settings stand")
			assert.Equal(t, 100, debug.SetGCPercent(100))
			restore()
		})
	}
}
