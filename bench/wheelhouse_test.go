package main

import (
	"archive/zip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWheelPath(t *testing.T) {
	const info, data = "demo_pkg-1.0.dist-info", "demo_pkg-1.0.data"
	for _, tc := range []struct {
		rel, want string
		ok        bool
	}{
		{"demo_pkg/__init__.py", "demo_pkg/__init__.py", true},
		{"demo_pkg/__pycache__/__init__.cpython-311.pyc", "", false},
		{"__pycache__/top.cpython-311.pyc", "", false},
		{info + "/METADATA", info + "/METADATA", true},
		{info + "/RECORD", "", false},
		{info + "/INSTALLER", "", false},
		{info + "/REQUESTED", "", false},
		{info + "/direct_url.json", "", false},
		{"../../../bin/demo", data + "/scripts/demo", true},
		{"../../../share/man/demo.1", data + "/data/share/man/demo.1", true},
		{"../../../../etc/passwd", "", false},
		{"../other/x.py", "", false},
		{"/abs/x.py", "", false},
	} {
		got, ok := wheelPath(tc.rel, info, data)
		assert.Equal(t, tc.ok, ok, tc.rel)
		assert.Equal(t, tc.want, got, tc.rel)
	}
}

func TestCompressedTag(t *testing.T) {
	assert.Equal(t, "py3-none-any", compressedTag([]string{"py3-none-any"}))
	assert.Equal(t, "py2.py3-none-any", compressedTag([]string{"py2-none-any", "py3-none-any"}))
	assert.Equal(t, "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
		compressedTag([]string{"cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-manylinux2014_x86_64"}))
	assert.Empty(t, compressedTag(nil))
	assert.Empty(t, compressedTag([]string{"py3-none"}))
}

// TestRepackWheelsInstallsOffline repacks a distribution installed the way
// pip installs one and installs the wheel with a real pip, offline, into a
// real venv: its module imports, its console script runs, its data file
// lands, and the files pip does not take from a wheel stay out.
func TestRepackWheelsInstallsOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("makes a venv and runs pip")
	}
	python, err := exec.LookPath("python3")
	require.NoError(t, err, "python3 is needed for this test")
	tmp := t.TempDir()
	prefix := filepath.Join(tmp, "installed")
	sp := filepath.Join(prefix, "lib", "python3.11", "site-packages")
	info := "demo_pkg-1.0.dist-info"
	files := map[string]string{
		"demo_pkg/__init__.py":                          "def main():\n    print('demo ok')\n",
		"demo_pkg/__pycache__/__init__.cpython-311.pyc": "not really bytecode",
		info + "/METADATA":                              "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n\nA long description.\nName: not-a-header\n",
		info + "/WHEEL":                                 "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py2-none-any\nTag: py3-none-any\n",
		info + "/entry_points.txt":                      "[console_scripts]\ndemo = demo_pkg:main\n",
		info + "/INSTALLER":                             "pip\n",
		"../../../bin/demo":                             "#!/old/prefix/bin/python\nimport sys\n",
		"../../../share/demo/readme.txt":                "data file\n",
	}
	var record strings.Builder
	for rel, body := range files {
		p := filepath.Join(sp, filepath.FromSlash(rel))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		record.WriteString(rel + ",,\n")
	}
	record.WriteString("demo_pkg/removed_since.py,,\n" + info + "/RECORD,,\n")
	require.NoError(t, os.WriteFile(filepath.Join(sp, info, "RECORD"), []byte(record.String()), 0o644))
	// An egg-info distribution cannot be repacked: it is reported.
	require.NoError(t, os.MkdirAll(filepath.Join(sp, "old-0.1.dist-info"), 0o755))

	house := filepath.Join(tmp, "house")
	wheels, skipped, err := repackWheels(sp, house)
	require.NoError(t, err)
	assert.Equal(t, []string{"old-0.1.dist-info"}, skipped)
	require.Len(t, wheels, 1)
	assert.Equal(t, "demo-pkg", wheels[0].Name)
	assert.Equal(t, filepath.Join(house, "demo_pkg-1.0-py2.py3-none-any.whl"), wheels[0].Path)

	zr, err := zip.OpenReader(wheels[0].Path)
	require.NoError(t, err)
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	require.NoError(t, zr.Close())
	assert.ElementsMatch(t, []string{
		"demo_pkg/__init__.py", info + "/METADATA", info + "/WHEEL", info + "/entry_points.txt",
		"demo_pkg-1.0.data/scripts/demo", "demo_pkg-1.0.data/data/share/demo/readme.txt", info + "/RECORD",
	}, names)
	assert.Equal(t, len(names), wheels[0].Files)

	venv := filepath.Join(tmp, "venv")
	out, err := exec.Command("sh", "-c", recreateCmd(python, venv, house).argv[2]).CombinedOutput()
	require.NoError(t, err, "python -m venv + pip install --no-index: %s", out)
	out, err = exec.Command(filepath.Join(venv, "bin", "demo")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "demo ok\n", string(out), "pip generated the console script from the entry point")
	assert.FileExists(t, filepath.Join(venv, "share", "demo", "readme.txt"))
	assert.NoFileExists(t, filepath.Join(venv, "lib", "python3.11", "site-packages", "demo_pkg", "removed_since.py"))
}
