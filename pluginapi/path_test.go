package pluginapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidatePath(t *testing.T) {
	for _, p := range []string{"a", "a/b", "a/b/c.py", ".a", "a/..b", "a/b..", "...", "a/.../b"} {
		assert.NoError(t, ValidatePath(p), p)
	}
	for _, p := range []string{"", "/", "/a", "a/", "a//b", "/a/b", ".", "..", "./a", "a/.", "a/..", "../a", "a/./b", "a/../b", "a\x00b", "a/b/"} {
		err := ValidatePath(p)
		require.Error(t, err, "%q", p)
		assert.ErrorIs(t, err, ErrUnsafePath, "%q", p)
	}
}

func TestValidatePathDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		_ = ValidatePath("lib/python3.12/site-packages/pip/_internal/cli/main.py")
	})
	assert.Zero(t, allocs)
}

func BenchmarkValidatePath(b *testing.B) {
	for b.Loop() {
		_ = ValidatePath("lib/python3.12/site-packages/pip/_internal/cli/main.py")
	}
}
