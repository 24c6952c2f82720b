package pluginapi_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

func writeExe(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"), mode))
	return p
}

func TestDiscoverOrderAndShadowing(t *testing.T) {
	base := t.TempDir()
	p1, p2 := filepath.Join(base, "p1"), filepath.Join(base, "p2")
	execDir, dataDir := filepath.Join(base, "bin"), filepath.Join(base, "data")

	first := writeExe(t, p1, "ptest-snap-engine-dir", 0o755)
	shadowed := writeExe(t, execDir, "ptest-snap-engine-dir", 0o755)
	venv := writeExe(t, p2, "ptest-snap-engine-virtualenv", 0o755)
	docker := writeExe(t, dataDir, "ptest-snap-engine-docker", 0o755)
	shadowedData := writeExe(t, dataDir, "ptest-snap-engine-virtualenv", 0o755)
	notExe := writeExe(t, execDir, "ptest-snap-engine-readme", 0o644)
	writeExe(t, execDir, "ptest-snap", 0o755)         // the CLI itself
	writeExe(t, execDir, "ptest-snap-engine-", 0o755) // no name
	require.NoError(t, os.Symlink(first, filepath.Join(p2, "ptest-snap-engine-alias")))

	pluginPath := p1 + string(os.PathListSeparator) + filepath.Join(base, "missing") + string(os.PathListSeparator) + p2
	found, warnings := pluginapi.Discover(pluginapi.DiscoverOptions{PluginPath: &pluginPath, ExecDir: &execDir, DataDir: &dataDir})

	got := map[string]pluginapi.Found{}
	var names []string
	for _, f := range found {
		got[f.Name] = f
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"alias", "dir", "docker", "virtualenv"}, names)
	assert.Equal(t, first, got["dir"].Path)
	assert.Equal(t, pluginapi.SourcePluginPath, got["dir"].Source)
	assert.Equal(t, venv, got["virtualenv"].Path)
	assert.Equal(t, docker, got["docker"].Path)
	assert.Equal(t, pluginapi.SourceDataDir, got["docker"].Source)

	all := strings.Join(warnings, "\n")
	assert.Contains(t, all, shadowed)
	assert.Contains(t, all, shadowedData)
	assert.Contains(t, all, notExe)
	assert.NotContains(t, all, "missing", "a missing directory is not worth a warning")

	_, _, err := pluginapi.Lookup(pluginapi.DiscoverOptions{PluginPath: &pluginPath, ExecDir: &execDir, DataDir: &dataDir}, "nope")
	require.ErrorIs(t, err, pluginapi.ErrEngineNotFound)
	assert.Contains(t, err.Error(), p1)
}

func TestDiscoverDefaults(t *testing.T) {
	base := t.TempDir()
	env := filepath.Join(base, "env")
	xdg := filepath.Join(base, "xdg")
	writeExe(t, env, "ptest-snap-engine-a", 0o755)
	writeExe(t, filepath.Join(xdg, "ptest-snap", "engines"), "ptest-snap-engine-b", 0o755)
	t.Setenv(pluginapi.PluginPathEnv, env)
	t.Setenv("XDG_DATA_HOME", xdg)

	dirs := pluginapi.SearchDirs(pluginapi.DiscoverOptions{})
	require.Len(t, dirs, 3)
	assert.Equal(t, env, dirs[0].Path)
	exe, err := os.Executable()
	require.NoError(t, err)
	exe, _ = filepath.EvalSymlinks(exe)
	assert.Equal(t, filepath.Dir(exe), dirs[1].Path)
	assert.Equal(t, filepath.Join(xdg, "ptest-snap", "engines"), dirs[2].Path)

	found, _ := pluginapi.Discover(pluginapi.DiscoverOptions{})
	var names []string
	for _, f := range found {
		names = append(names, f.Name)
	}
	assert.Subset(t, names, []string{"a", "b"})

	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", base)
	dirs = pluginapi.SearchDirs(pluginapi.DiscoverOptions{})
	assert.Equal(t, filepath.Join(base, ".local", "share", "ptest-snap", "engines"), dirs[len(dirs)-1].Path)
}
