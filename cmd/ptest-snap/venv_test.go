package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// makeVenv creates a real virtualenv with python3 -m venv (offline: it
// brings pip from the interpreter's ensurepip).
func makeVenv(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command("python3", "-m", "venv", dir).CombinedOutput()
	require.NoError(t, err, "python3 -m venv: %s", out)
}

// sitePackages returns the venv's site-packages directory.
func sitePackages(t *testing.T, venv string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(venv, "lib", "python3*", "site-packages"))
	require.NoError(t, err)
	require.Len(t, m, 1)
	return m[0]
}

// TestVirtualenvBreakAndRestoreInPlace snapshots a real venv, breaks it
// without pip (deletes the pip package, edits a file), restores it in place
// and checks that pip imports again and the tree is the snapshot's.
func TestVirtualenvBreakAndRestoreInPlace(t *testing.T) {
	requireEngine(t, "virtualenv")
	c := newCLI(t)
	venv := filepath.Join(t.TempDir(), "venv")
	makeVenv(t, venv)
	before := treeState(t, venv)

	var s snapshotJSON
	c.jsonOK(&s, "create", "--engine", "virtualenv", "--name", "clean", "--env", "APP_ENV=test", "--port", "8080", venv)
	assert.Equal(t, "virtualenv", s.Engine)
	assert.Equal(t, map[string]string{"APP_ENV": "test"}, s.Env)
	assert.Equal(t, []int{8080}, s.Ports)
	assert.NotEmpty(t, s.Metadata)
	r := c.ok("show", "clean")
	assert.Contains(t, r.stdout, "pip", "show lists the venv's packages")

	// Break it: no pip, an edited script, a stray module.
	site := sitePackages(t, venv)
	pipDirs, err := filepath.Glob(filepath.Join(site, "pip*")) // the package and its dist-info
	require.NoError(t, err)
	require.Len(t, pipDirs, 2)
	for _, d := range pipDirs {
		require.NoError(t, os.RemoveAll(d))
	}
	activate := filepath.Join(venv, "bin", "activate")
	f, err := os.OpenFile(activate, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("echo broken\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	writeFile(t, filepath.Join(site, "stray.py"), "x = 1\n")
	require.Error(t, exec.Command(filepath.Join(venv, "bin", "python"), "-c", "import pip").Run(), "pip is gone")

	// The broken state's diff names the lost package.
	c.ok("create", "--engine", "virtualenv", "--name", "broken", venv)
	var d diffJSON
	c.jsonOK(&d, "diff", "clean", "broken", "--packages")
	require.NotNil(t, d.Packages)
	assert.Contains(t, d.Packages.Removed, "pip")

	c.ok("restore", "clean", "--in-place")
	out, err := exec.Command(filepath.Join(venv, "bin", "python"), "-c", "import pip; print(pip.__file__)").CombinedOutput()
	require.NoError(t, err, "import pip after restore: %s", out)
	assert.Contains(t, string(out), site)
	after := treeState(t, venv)
	assert.Equal(t, before, after, "the venv is exactly the snapshot's")

	// Restore to a new path: relocated, and its python runs pip.
	moved := filepath.Join(t.TempDir(), "moved venv")
	c.ok("restore", "clean", "--target", moved)
	out, err = exec.Command(filepath.Join(moved, "bin", "python"), "-m", "pip", "--version").CombinedOutput()
	require.NoError(t, err, "pip in the relocated venv: %s", out)
	assert.Contains(t, string(out), moved)

	// Something that is not a venv: a clear engine error.
	notVenv := t.TempDir()
	r = c.fails(exitEngine, "create", "--engine", "virtualenv", notVenv)
	assert.Contains(t, r.stderr, "pyvenv.cfg")
}

// TestVirtualenvSecondCreateReusesUnchangedDirectories: through the real
// plugin process and store, a second create after a change (a package
// added, a file edited, a package removed) takes the unchanged directories
// whole from its parent and makes the snapshot a create without a parent
// makes — same trees, same counts — and a third create, whose parent was
// made so, too. The store verifies.
func TestVirtualenvSecondCreateReusesUnchangedDirectories(t *testing.T) {
	requireEngine(t, "virtualenv")
	c := newCLI(t)
	venv := filepath.Join(t.TempDir(), "venv")
	makeVenv(t, venv)
	c.ok("create", "--engine", "virtualenv", "--name", "first", venv)

	site := sitePackages(t, venv)
	writeFile(t, filepath.Join(site, "newpkg", "__init__.py"), "x = 1\n")
	writeFile(t, filepath.Join(site, "newpkg-1.0.dist-info", "METADATA"), "Metadata-Version: 2.1\nName: newpkg\nVersion: 1.0\n")
	f, err := os.OpenFile(filepath.Join(venv, "bin", "activate"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("# edited\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	setuptools, err := filepath.Glob(filepath.Join(site, "_distutils_hack"))
	require.NoError(t, err)
	for _, d := range setuptools {
		require.NoError(t, os.RemoveAll(d))
	}

	for _, name := range []string{"second", "third"} {
		var inc, full snapshotJSON
		c.jsonOK(&inc, "create", "--engine", "virtualenv", "--name", name, venv)
		require.NotEmpty(t, inc.Parent)
		c.jsonOK(&full, "create", "--engine", "virtualenv", "--parent", "none", "--name", name+"-full", venv)
		assert.Equal(t, full.Streams, inc.Streams, name)
		assert.Equal(t, []int64{full.Stats.Files, full.Stats.Dirs, full.Stats.LogicalBytes},
			[]int64{inc.Stats.Files, inc.Stats.Dirs, inc.Stats.LogicalBytes}, name)
		c.ok("delete", name+"-full")
	}
	r := c.ok("verify")
	assert.Contains(t, r.stdout, "0 problems")
}
