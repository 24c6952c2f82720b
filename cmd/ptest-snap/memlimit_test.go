package main

import (
	"math"
	"os"
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
