package fstree

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestRealDir(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	require.NoError(t, os.Mkdir(real, 0o755))
	require.NoError(t, os.Symlink(real, filepath.Join(dir, "link")))
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))

	for _, target := range []string{real, filepath.Join(dir, "link"), filepath.Join(dir, "link", ".")} {
		got, err := RealDir(target, "directory")
		require.NoError(t, err, target)
		assert.Equal(t, real, got, "a symlinked path is the same environment")
	}
	tests := []struct {
		target string
		want   error
		msg    string
	}{
		{filepath.Join(dir, "missing"), pluginapi.ErrTargetNotFound, "no such directory"},
		{file, pluginapi.ErrInvalidTarget, "not a directory"},
		{"", pluginapi.ErrInvalidTarget, "no directory given"},
	}
	for _, tt := range tests {
		_, err := RealDir(tt.target, "directory")
		require.ErrorIs(t, err, tt.want, tt.target)
		assert.Contains(t, err.Error(), tt.msg)
	}
}
