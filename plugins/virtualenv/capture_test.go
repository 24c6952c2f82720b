package virtualenv

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestInfo(t *testing.T) {
	info, err := New().Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "virtualenv", info.Name)
	assert.Equal(t, pluginapi.ProtocolVersion, info.ProtocolVersion)
	for _, c := range []pluginapi.Capability{pluginapi.CapRestoreInPlace, pluginapi.CapRestoreNewTarget, pluginapi.CapParentIndex, pluginapi.CapIndexOnly} {
		assert.True(t, info.Has(c), c)
	}
}

func TestIdentifyRejectsWhatIsNotAVenv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	noCfg := filepath.Join(dir, "nocfg")
	require.NoError(t, os.MkdirAll(filepath.Join(noCfg, "bin"), 0o755))
	noPython := filepath.Join(dir, "nopython")
	require.NoError(t, os.MkdirAll(filepath.Join(noPython, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(noPython, "pyvenv.cfg"), []byte("home = /usr/bin\n"), 0o644))

	tests := []struct {
		target string
		is     error
		says   string
	}{
		{filepath.Join(dir, "missing"), pluginapi.ErrTargetNotFound, "no such directory"},
		{file, pluginapi.ErrInvalidTarget, "not a directory"},
		{noCfg, pluginapi.ErrInvalidTarget, "pyvenv.cfg is missing"},
		{noPython, pluginapi.ErrInvalidTarget, "bin/python is missing"},
		{"", pluginapi.ErrInvalidTarget, "no virtualenv path"},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.target), func(t *testing.T) {
			_, err := New().Identify(context.Background(), tc.target, nil)
			require.ErrorIs(t, err, tc.is)
			assert.Contains(t, err.Error(), tc.says)
			err = New().Capture(context.Background(), &pluginapi.CaptureRequest{Target: tc.target}, &memCapture{})
			require.ErrorIs(t, err, tc.is)
			assert.Contains(t, err.Error(), tc.says)
		})
	}
}

func TestIdentifyNamesTheRealPath(t *testing.T) {
	f := venvFixture(t)
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(f.golden, link))
	id, err := New().Identify(context.Background(), link, nil)
	require.NoError(t, err)
	real, err := filepath.EvalSymlinks(f.golden)
	require.NoError(t, err)
	assert.Equal(t, real, id.EnvID)
	assert.Equal(t, real, id.Target)
}

func TestCaptureMetadata(t *testing.T) {
	f := venvFixture(t)
	snap := capture(t, f.golden, func(r *pluginapi.CaptureRequest) {
		r.Env = map[string]string{"VIRTUAL_ENV": f.golden, "DB_URL": "sqlite://"}
		r.Ports = []int{8080, 8081}
	})
	require.Equal(t, MetadataVersion, snap.md.Version)
	m := snap.mustMeta(t)
	real, _ := filepath.EvalSymlinks(f.golden)
	assert.Equal(t, real, m.VenvPath)
	assert.Equal(t, filepath.Join(real, "bin", "python"), m.PythonPath)
	assert.Equal(t, filepath.Join(real, "bin", "pip"), m.PipPath)
	assert.True(t, m.Active)
	assert.Equal(t, []int{8080, 8081}, m.AllocatedPorts)
	assert.Equal(t, "sqlite://", m.Env["DB_URL"])
	assert.Equal(t, "CPython", m.PythonImplementation)

	// The same facts, asked of the interpreter itself.
	out := run(t, "", filepath.Join(f.golden, "bin", "python"), "-c",
		"import sys,os;print('%d.%d.%d' % sys.version_info[:3]);print(os.path.realpath(sys._base_executable))")
	var version, baseReal string
	_, err := fmtSscan(out, &version, &baseReal)
	require.NoError(t, err)
	assert.Equal(t, version, m.PythonVersion)
	assert.Equal(t, version, m.BaseInterpreter.Version)
	assert.Equal(t, baseReal, m.BaseInterpreter.Realpath)
	for _, key := range []string{"home", "include-system-site-packages", "version"} {
		assert.NotEmpty(t, m.PyvenvCfg[key], key)
	}
	assert.Equal(t, m.PyvenvCfg["home"], m.BaseInterpreter.Home)

	// The package list equals pip's.
	assert.Equal(t, pipList(t, f.golden), m.InstalledPackages)
	assert.Equal(t, "1.2.3", m.InstalledPackages["hello-world"])
	assert.Equal(t, "2.0.dev1", m.InstalledPackages["editpkg"])
	assert.Equal(t, map[string]string{"editpkg": filepath.Join(f.src, "editpkg")}, m.Editable)
	if f.hasExt {
		assert.Equal(t, "0.1", m.InstalledPackages["cext"])
	}

	// The JSON carries the original report's field names.
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(snap.md.JSON, &raw))
	for _, key := range []string{"venv_path", "python_path", "pip_path", "active", "installed_packages", "editable",
		"python_version", "python_implementation", "base_interpreter", "pyvenv_cfg", "env", "allocated_ports"} {
		assert.Contains(t, raw, key)
	}

	// Without VIRTUAL_ENV naming it, the venv is not active.
	t.Setenv("VIRTUAL_ENV", "")
	assert.False(t, capture(t, f.golden, nil).mustMeta(t).Active)
}

func TestCaptureEntries(t *testing.T) {
	f := venvFixture(t)
	snap := capture(t, f.golden, nil)
	require.Equal(t, []string{StreamName}, snap.streams)
	byPath := snap.byPath()

	// Symlinks verbatim, never followed.
	lib64, ok := byPath["lib64"]
	require.True(t, ok, "lib64")
	assert.Equal(t, pluginapi.TypeSymlink, lib64.e.Type)
	assert.Equal(t, "lib", lib64.e.LinkTarget)
	py3 := byPath["bin/python3"]
	require.Equal(t, pluginapi.TypeSymlink, py3.e.Type)
	want, err := os.Readlink(filepath.Join(f.golden, "bin", "python3"))
	require.NoError(t, err)
	assert.Equal(t, want, py3.e.LinkTarget)
	assert.True(t, filepath.IsAbs(py3.e.LinkTarget))

	// Every file of the venv is there, with its body.
	n := 0
	require.NoError(t, filepath.Walk(f.golden, func(p string, fi os.FileInfo, err error) error {
		require.NoError(t, err)
		if p == f.golden {
			return nil
		}
		rel, _ := filepath.Rel(f.golden, p)
		me, ok := byPath[filepath.ToSlash(rel)]
		require.True(t, ok, rel)
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.Equal(t, data, me.body, rel)
		}
		n++
		return nil
	}))
	assert.Equal(t, n, len(snap.entries))
	assert.Contains(t, byPath, "bin/hello-cli")
	assert.Equal(t, "pyvenv.cfg", snap.entries[len(snap.entries)-1].e.Path)
}

func TestCaptureParentIndexExcludesAndIndexOnly(t *testing.T) {
	f := venvFixture(t)
	first := capture(t, f.golden, nil)

	// With the parent's index, no file body is read again.
	second := capture(t, f.golden, func(r *pluginapi.CaptureRequest) { r.Parent = first.parentIndex() })
	require.Equal(t, len(first.entries), len(second.entries))
	for _, me := range second.entries {
		if me.e.Type == pluginapi.TypeFile {
			assert.True(t, me.e.Unchanged, me.e.Path)
			assert.Nil(t, me.body, me.e.Path)
		}
	}

	// Index only: every entry, no body, nothing Unchanged.
	idx := capture(t, f.golden, func(r *pluginapi.CaptureRequest) { r.IndexOnly = true; r.Parent = first.parentIndex() })
	require.Equal(t, len(first.entries), len(idx.entries))
	for _, me := range idx.entries {
		assert.False(t, me.e.Unchanged, me.e.Path)
		assert.Nil(t, me.body, me.e.Path)
	}
	// Its metadata is only the version: the host reads none of it.
	assert.Equal(t, indexOnlyMetadata, idx.md)
	assert.NotEqual(t, first.md.JSON, idx.md.JSON)

	// Excludes drop matching entries, directories with their contents.
	ex := capture(t, f.golden, func(r *pluginapi.CaptureRequest) { r.Excludes = []string{"__pycache__", "bin/activate*"} })
	for _, me := range ex.entries {
		assert.NotContains(t, me.e.Path, "__pycache__")
		assert.NotEqual(t, "bin/activate", me.e.Path)
	}
	assert.Contains(t, ex.byPath(), "bin/python")
	assert.Less(t, len(ex.entries), len(first.entries))
}
