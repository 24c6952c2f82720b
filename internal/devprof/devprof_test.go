package devprof

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStartWritesProfileAndTrace: with both variables set, Start writes a
// non-empty CPU profile and execution trace named after the program and
// the pid, and Enabled says so.
func TestStartWritesProfileAndTrace(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvVar, dir)
	t.Setenv(TraceEnvVar, dir)
	require.True(t, Enabled())

	stop := Start("prog")
	sum := 0
	for i := range 1 << 16 {
		sum += i % 7
	}
	stop()
	assert.NotZero(t, sum)

	for _, name := range []string{
		fmt.Sprintf("cpu-prog-%d.pprof", os.Getpid()),
		fmt.Sprintf("trace-prog-%d.out", os.Getpid()),
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err, name)
		assert.NotZero(t, fi.Size(), name)
	}
}

// TestStartUnset: without the variables Start records nothing and its stop
// is a no-op; a directory that cannot be written to is reported, not fatal.
func TestStartUnset(t *testing.T) {
	t.Setenv(EnvVar, "")
	t.Setenv(TraceEnvVar, "")
	assert.False(t, Enabled())
	Start("prog")()

	t.Setenv(TraceEnvVar, filepath.Join(t.TempDir(), "missing"))
	assert.True(t, Enabled())
	Start("prog")()
}
