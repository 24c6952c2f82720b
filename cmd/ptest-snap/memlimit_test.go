package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

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

// withCLIDefaultGC gives a test the CLI's collector settings (GOGC 100
// under softMemoryLimit) with neither GOGC nor GOMEMLIMIT set, and puts
// the process's settings and environment back after it.
func withCLIDefaultGC(t *testing.T) {
	t.Helper()
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
}

// TestTuneGCForCreate: a create runs with the collector off up to
// createQuietHeap (gctune says what the first collection switches to) and
// puts the previous settings back; GOGC or GOMEMLIMIT set by the user win.
func TestTuneGCForCreate(t *testing.T) {
	withCLIDefaultGC(t)

	restore := tuneGCForCreate()
	assert.EqualValues(t, createQuietHeap, debug.SetMemoryLimit(-1), "quiet until the first collection")
	assert.Equal(t, -1, debug.SetGCPercent(-1))
	restore()
	assert.EqualValues(t, softMemoryLimit, debug.SetMemoryLimit(-1), "limit restored")
	assert.Equal(t, 100, debug.SetGCPercent(100), "GOGC restored")

	userSettingsWin(t, tuneGCForCreate)
}

// TestTuneGCForRestore: a restore runs with the collector off up to
// restoreQuietHeap, its first collection puts the CLI's defaults (GOGC 100
// under softMemoryLimit), and restore puts the previous settings back;
// GOGC or GOMEMLIMIT set by the user win.
func TestTuneGCForRestore(t *testing.T) {
	withCLIDefaultGC(t)

	restore := tuneGCForRestore()
	assert.EqualValues(t, restoreQuietHeap, debug.SetMemoryLimit(-1), "quiet until the first collection")
	assert.Equal(t, -1, debug.SetGCPercent(-1))
	runtime.GC() // the first collection: the defaults from then on
	assert.Eventually(t, func() bool { return debug.SetMemoryLimit(-1) == softMemoryLimit }, 5*time.Second, time.Millisecond,
		"the soft limit after the first collection")
	assert.Equal(t, 100, debug.SetGCPercent(100), "GOGC 100 after the first collection")
	restore()
	assert.EqualValues(t, softMemoryLimit, debug.SetMemoryLimit(-1), "limit restored")
	assert.Equal(t, 100, debug.SetGCPercent(100), "GOGC restored")

	userSettingsWin(t, tuneGCForRestore)
}

// userSettingsWin checks that tune changes nothing when the user set GOGC
// or GOMEMLIMIT.
func userSettingsWin(t *testing.T, tune func() (restore func())) {
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "200")
			restore := tune()
			assert.EqualValues(t, softMemoryLimit, debug.SetMemoryLimit(-1), "the user's settings stand")
			assert.Equal(t, 100, debug.SetGCPercent(100))
			restore()
		})
	}
}
