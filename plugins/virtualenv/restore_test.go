package virtualenv

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// relocated reports whether a restore to another path may change the
// entry at p: pyvenv.cfg and the scripts in bin/.
func relocated(p string) bool {
	return p == "pyvenv.cfg" || strings.HasPrefix(p, "bin/")
}

// checkVenvWorks runs the restored venv: imports of every fixture package,
// the console script, and pip, which must report the venv's own path.
func checkVenvWorks(t *testing.T, f *fixture, venv string) {
	t.Helper()
	py := filepath.Join(venv, "bin", "python")
	code := "import sys, hello, editpkg; assert editpkg.VALUE == 'editable'; print(sys.prefix)"
	if f.hasExt {
		code = "import cext; assert cext.add(2, 3) == 5; " + code
	}
	assert.Equal(t, venv, strings.TrimSpace(run(t, "", py, "-c", code)))
	assert.Contains(t, run(t, "", filepath.Join(venv, "bin", "hello-cli")), "hello from "+venv)
	assert.Contains(t, run(t, "", filepath.Join(venv, "bin", "pip"), "--version"), filepath.Join(venv, "lib"))
}

func TestRestoreToNewPathWithSpace(t *testing.T) {
	f := venvFixture(t)
	snap := capture(t, f.golden, nil)
	m := snap.mustMeta(t)
	target := filepath.Join(t.TempDir(), "new venvs", "the venv")

	res, err := restore(t, snap, target, false, nil)
	require.NoError(t, err)
	assert.Equal(t, target, res.Target)
	checkVenvWorks(t, f, target)
	assert.Equal(t, m.InstalledPackages, pipList(t, target))

	// pip wrote "#!<golden>/bin/python3"; the new path has a space, so the
	// /bin/sh form pip itself would write there.
	pipScript, err := os.ReadFile(filepath.Join(target, "bin", "pip"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(pipScript), "#!/bin/sh\n'''exec' \""+target+"/bin/python3\" \"$0\" \"$@\"\n' '''\n"), string(pipScript))
	activate, err := os.ReadFile(filepath.Join(target, "bin", "activate"))
	require.NoError(t, err)
	assert.Contains(t, string(activate), `VIRTUAL_ENV="`+target+`"`)
	assert.NotContains(t, string(activate), m.VenvPath+`"`)
	cfg, err := readPyvenvCfg(target)
	require.NoError(t, err)
	assert.Equal(t, m.PyvenvCfg["home"], cfg.get("home"))
	if m.PyvenvCfg["command"] != "" {
		assert.True(t, strings.HasSuffix(cfg.get("command"), " "+target), cfg.get("command"))
	}
	link, err := os.Readlink(filepath.Join(target, "bin", "python3"))
	require.NoError(t, err)
	assert.Equal(t, snap.byPath()["bin/python3"].e.LinkTarget, link)

	// Everything else is byte for byte the snapshot, modes and mtimes too.
	again := treeSummary(capture(t, target, nil), true)
	want := treeSummary(snap, true)
	require.ElementsMatch(t, sortedKeys(want), sortedKeys(again))
	for p, s := range want {
		if !relocated(p) {
			assert.Equal(t, s, again[p], p)
		}
	}

	// A new-path restore does not overwrite.
	_, err = restore(t, snap, target, false, nil)
	require.ErrorIs(t, err, pluginapi.ErrTargetExists)

	// Moving on from the path with a space to a plain one gives pip's
	// plain form again: the same script as the original's, relocated.
	moved := filepath.Join(t.TempDir(), "plain")
	_, err = restore(t, capture(t, target, nil), moved, false, nil)
	require.NoError(t, err)
	golden, err := os.ReadFile(filepath.Join(f.golden, "bin", "pip"))
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(moved, "bin", "pip"))
	require.NoError(t, err)
	assert.Equal(t, strings.Replace(string(golden), m.VenvPath, moved, 1), string(got))
	checkVenvWorks(t, f, moved)
}

func TestRestoreInPlace(t *testing.T) {
	f := venvFixture(t)
	work := filepath.Join(t.TempDir(), "venv")
	_, err := restore(t, capture(t, f.golden, nil), work, false, nil)
	require.NoError(t, err)
	snap := capture(t, work, nil)
	m := snap.mustMeta(t)
	site := filepath.Join(work, m.SitePackages[0])

	// A test run changes the venv: installs and uninstalls packages, edits,
	// adds, removes and retypes files.
	_, err = pipInstall(work, filepath.Join(f.src, "extra"))
	require.NoError(t, err)
	run(t, "", filepath.Join(work, "bin", "pip"), "uninstall", "-y", "-q", "hello-world")
	assert.NotEqual(t, m.InstalledPackages, pipList(t, work))
	require.NoError(t, os.WriteFile(filepath.Join(site, "pip", "__init__.py"), []byte("broken = True\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(site, "stray.txt"), []byte("left over"), 0o600))
	require.NoError(t, os.Remove(filepath.Join(work, "bin", "activate.fish")))
	require.NoError(t, os.Chmod(filepath.Join(work, "bin", "activate"), 0o755))
	require.NoError(t, os.Remove(filepath.Join(work, "bin", "python3.11")))
	require.NoError(t, os.WriteFile(filepath.Join(work, "bin", "python3.11"), []byte("not a link"), 0o755))

	res, err := restore(t, snap, work, true, nil)
	require.NoError(t, err)
	assert.Equal(t, work, res.Target)

	// The tree equals the snapshot's: the same entries, types, modes,
	// sizes, contents and mtimes (so .pyc caches stay valid).
	after := capture(t, work, nil)
	assert.Equal(t, treeSummary(snap, true), treeSummary(after, true))
	assert.Equal(t, m.InstalledPackages, after.mustMeta(t).InstalledPackages)
	assert.Equal(t, m.InstalledPackages, pipList(t, work))
	checkVenvWorks(t, f, work)
	out, err := exec.Command(filepath.Join(work, "bin", "python"), "-c", "import extra").CombinedOutput()
	require.Error(t, err, "extra was installed after the snapshot and must be gone")
	assert.Contains(t, string(out), "No module named 'extra'")

	// Restoring an unchanged venv in place touches nothing.
	rp := &replay{c: snap, unchanged: map[string]bool{}}
	for _, me := range snap.entries {
		rp.unchanged[me.e.Path] = true
	}
	before := treeSummary(capture(t, work, nil), true)
	res, err = New().Restore(t.Context(), &pluginapi.RestoreRequest{Target: work, InPlace: true, Metadata: snap.md, Streams: snap.streams}, rp)
	require.NoError(t, err)
	assert.Equal(t, work, res.Target)
	assert.Equal(t, before, treeSummary(capture(t, work, nil), true))
}

func TestRestoreChecksTheBaseInterpreter(t *testing.T) {
	f := venvFixture(t)
	snap := capture(t, f.golden, nil)
	m := snap.mustMeta(t)

	withMeta := func(edit func(*VenvMetadata)) *memCapture {
		c := *snap
		mm := *m
		edit(&mm)
		md, err := mm.encode()
		require.NoError(t, err)
		c.md = md
		return &c
	}
	dir := t.TempDir()
	// An interpreter of another minor version where the captured one was.
	other, otherVersion := otherPython(t, majorMinor(m.PythonVersion))

	tests := []struct {
		name    string
		snap    *memCapture
		options map[string]string
		says    []string
	}{
		{
			name: "missing",
			snap: withMeta(func(m *VenvMetadata) {
				m.BaseInterpreter.Path = filepath.Join(dir, "gone", "python3")
				m.BaseInterpreter.Home = filepath.Join(dir, "gone")
			}),
			says: []string{filepath.Join(dir, "gone", "python3"), "is missing", "Python " + m.PythonVersion, "python=/path/to/python" + majorMinor(m.PythonVersion)},
		},
		{
			name: "other version",
			snap: withMeta(func(m *VenvMetadata) { m.BaseInterpreter.Path = other; m.BaseInterpreter.Home = filepath.Dir(other) }),
			says: []string{other, "is now Python " + otherVersion, "needs Python " + majorMinor(m.PythonVersion)},
		},
		{
			name:    "option names a missing interpreter",
			snap:    snap,
			options: map[string]string{"python": filepath.Join(dir, "nope", "python3")},
			says:    []string{"option python=", "not found"},
		},
		{
			name:    "option names another version",
			snap:    snap,
			options: map[string]string{"python": other},
			says:    []string{"is Python " + otherVersion, "needs Python " + majorMinor(m.PythonVersion)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "venv")
			_, err := restore(t, tc.snap, target, false, tc.options)
			require.ErrorIs(t, err, pluginapi.ErrUnavailable)
			for _, s := range tc.says {
				assert.Contains(t, err.Error(), s)
			}
			assert.NoDirExists(t, target, "nothing is written when the interpreter is not there")
		})
	}
}

func TestRestoreWithAnotherInterpreter(t *testing.T) {
	f := venvFixture(t)
	snap := capture(t, f.golden, nil)
	m := snap.mustMeta(t)
	var alt string
	for _, p := range []string{"/usr/bin/python" + majorMinor(m.PythonVersion), "/usr/local/bin/python" + majorMinor(m.PythonVersion)} {
		if real, err := filepath.EvalSymlinks(p); err == nil && real != m.BaseInterpreter.Realpath {
			alt = p
			break
		}
	}
	if alt == "" {
		t.Skipf("no second Python %s besides %s", majorMinor(m.PythonVersion), m.BaseInterpreter.Realpath)
	}
	check := func(venv string) {
		t.Helper()
		cfg, err := readPyvenvCfg(venv)
		require.NoError(t, err)
		assert.Equal(t, filepath.Dir(alt), cfg.get("home"))
		altVersion, _, err := probeInterpreter(t.Context(), alt)
		require.NoError(t, err)
		assert.Equal(t, altVersion, cfg.get("version"))
		if m.PyvenvCfg["executable"] != "" {
			assert.Equal(t, alt, cfg.get("executable"))
		}
		link, err := os.Readlink(filepath.Join(venv, "bin", "python3"))
		require.NoError(t, err)
		assert.Equal(t, alt, link)
		base := run(t, "", filepath.Join(venv, "bin", "python"), "-c", "import sys, os, hello; print(os.path.realpath(sys._base_executable))")
		realAlt, _ := filepath.EvalSymlinks(alt)
		assert.Equal(t, realAlt, strings.TrimSpace(base))
		checkVenvWorks(t, f, venv)
	}

	// To a new path.
	target := filepath.Join(t.TempDir(), "venv")
	res, err := restore(t, snap, target, false, map[string]string{"python": alt})
	require.NoError(t, err)
	require.Len(t, res.Messages, 1)
	assert.Contains(t, res.Messages[0], alt)
	check(target)

	// In place over a venv made with the original interpreter: pyvenv.cfg
	// and the interpreter link are unchanged entries, relocated on disk.
	inPlace := filepath.Join(t.TempDir(), "venv")
	_, err = restore(t, snap, inPlace, false, nil)
	require.NoError(t, err)
	snap2 := capture(t, inPlace, nil)
	_, err = restore(t, snap2, inPlace, true, map[string]string{"python": alt})
	require.NoError(t, err)
	check(inPlace)

	// The same with a sparse stream, which does not name them: the engine
	// finds them on disk.
	sparse := filepath.Join(t.TempDir(), "venv")
	_, err = restore(t, snap, sparse, false, nil)
	require.NoError(t, err)
	snap3 := capture(t, sparse, nil)
	_, err = restoreWith(t, snap3, sparse, true, true, map[string]string{"python": alt})
	require.NoError(t, err)
	check(sparse)
}

// otherPython returns a Python whose major.minor is not notMM, and its
// version: a real one from PATH when there is one, else a script that
// answers the version probe like a Python 3.1 would.
func otherPython(t *testing.T, notMM string) (string, string) {
	t.Helper()
	for _, name := range []string{"python3.10", "python3.12", "python3.9", "python3.13", "python3.8"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if v, _, err := probeInterpreter(t.Context(), p); err == nil && majorMinor(v) != notMM {
			return p, v
		}
	}
	t.Log("no second Python version in PATH: using a script that reports Python 3.1.5")
	p := filepath.Join(t.TempDir(), "python3")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\necho 3.1.5 CPython\n"), 0o755))
	return p, "3.1.5"
}

// TestCopiesVenvRelocates: a venv made with --copies has a copied
// interpreter binary in bin/ instead of links; it is restored byte for byte
// (never buffered for relocation) and runs at the new path.
func TestCopiesVenvRelocates(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not in PATH")
	}
	src := filepath.Join(t.TempDir(), "copies")
	_, err := runCmd("", "python3", "-m", "venv", "--copies", "--without-pip", src)
	require.NoError(t, err)
	fi, err := os.Lstat(filepath.Join(src, "bin", "python"))
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular(), "bin/python is a copy")

	snap := capture(t, src, nil)
	m := snap.mustMeta(t)
	assert.NotEmpty(t, m.BaseInterpreter.Realpath)
	assert.Empty(t, m.PipPath)
	target := filepath.Join(t.TempDir(), "moved copies")
	_, err = restore(t, snap, target, false, nil)
	require.NoError(t, err)
	out := run(t, "", filepath.Join(target, "bin", "python"), "-c", "import sys; print(sys.prefix)")
	assert.Equal(t, target, strings.TrimSpace(out))
	want, err := os.ReadFile(filepath.Join(src, "bin", "python"))
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(target, "bin", "python"))
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

// TestRestoreInPlaceFullScan: in place, directories whose mtime is the
// snapshot's are trusted to hold no extra entries; a file slipped in with
// the directory's mtime set back survives that, and full-scan=true finds
// and deletes it.
func TestRestoreInPlaceFullScan(t *testing.T) {
	f := venvFixture(t)
	work := filepath.Join(t.TempDir(), "venv")
	_, err := restore(t, capture(t, f.golden, nil), work, false, nil)
	require.NoError(t, err)
	snap := capture(t, work, nil)
	include := filepath.Join(work, "include")
	fi, err := os.Stat(include)
	require.NoError(t, err)
	sneaky := filepath.Join(include, "sneaky.h")
	require.NoError(t, os.WriteFile(sneaky, nil, 0o644))
	require.NoError(t, os.Chtimes(include, fi.ModTime(), fi.ModTime()))

	_, err = restore(t, snap, work, true, nil)
	require.NoError(t, err)
	assert.FileExists(t, sneaky, "a trusted directory is not listed")

	_, err = restore(t, snap, work, true, map[string]string{"full-scan": "true"})
	require.NoError(t, err)
	assert.NoFileExists(t, sneaky)
	assert.Equal(t, treeSummary(snap, true), treeSummary(capture(t, work, nil), true))
}

// failingReplay replays a capture and fails instead of yielding entry
// failAt, as the host's reader does on a damaged chunk; with cancel set it
// cancels the call there instead (the host cancelling the RPC on Ctrl-C).
type failingReplay struct {
	replay
	failAt int
	cancel context.CancelFunc
}

var errDamagedChunk = errors.New("chunk checksum mismatch (test)")

func (r *failingReplay) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if r.i == r.failAt {
		if r.cancel == nil {
			return "", nil, nil, errDamagedChunk
		}
		r.cancel()
	}
	return r.replay.Next(ctx)
}

// TestRestoreFailingMidwayLeavesNoVenv: a restore to a new path that fails
// or is cancelled halfway (relocating scripts on the way) removes the venv
// and the parent it created.
func TestRestoreFailingMidwayLeavesNoVenv(t *testing.T) {
	f := venvFixture(t)
	snap := capture(t, f.golden, nil)
	for _, cancelled := range []bool{false, true} {
		base := t.TempDir()
		target := filepath.Join(base, "new", "venv")
		ctx, cancel := context.WithCancel(context.Background())
		r := &failingReplay{replay: replay{c: snap}, failAt: len(snap.entries) / 2}
		if cancelled {
			r.cancel = cancel
		}
		req := &pluginapi.RestoreRequest{Target: target, OriginalTarget: snap.mustMeta(t).VenvPath, Metadata: snap.md, Streams: snap.streams}
		_, err := New().Restore(ctx, req, r)
		cancel()
		if cancelled {
			require.ErrorIs(t, err, context.Canceled)
		} else {
			require.ErrorIs(t, err, errDamagedChunk)
		}
		assert.NoDirExists(t, filepath.Join(base, "new"), "cancelled=%v", cancelled)
	}
}
