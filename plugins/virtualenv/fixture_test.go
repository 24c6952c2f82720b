package virtualenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fixture: one real venv built once per test binary with
// `python3 -m venv` and local packages installed offline by pip through the
// stdlib-only build backend in testdata/tinybackend.py:
//
//   - hello-world 1.2.3: a package with the console script hello-cli;
//   - cext 0.1: a C extension compiled with gcc (when gcc and Python.h are
//     here);
//   - editpkg 2.0.dev1: an editable install (PEP 660);
//
// and the source of extra 0.9, installed by tests after a snapshot.
type fixture struct {
	dir    string // temp root of everything below
	src    string // package sources
	golden string // the venv; tests must not change it
	hasExt bool   // cext was built
	err    error
}

var (
	fixtureOnce sync.Once
	theFixture  fixture
	fixtureRoot string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureRoot != "" {
		os.RemoveAll(fixtureRoot)
	}
	os.Exit(code)
}

// venvFixture returns the shared fixture, building it on first use. Tests
// skip when there is no python3 at all; any other failure fails them.
func venvFixture(t *testing.T) *fixture {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not in PATH")
	}
	fixtureOnce.Do(func() { theFixture = buildFixture() })
	require.NoError(t, theFixture.err, "build the venv fixture")
	return &theFixture
}

func buildFixture() fixture {
	var f fixture
	dir, err := os.MkdirTemp("", "ptest-snap-venv-")
	if err != nil {
		f.err = err
		return f
	}
	fixtureRoot = dir
	f.dir, f.src, f.golden = dir, filepath.Join(dir, "src"), filepath.Join(dir, "golden")
	if f.err = copyPackages(f.src); f.err != nil {
		return f
	}
	if _, f.err = runCmd("", "python3", "-m", "venv", f.golden); f.err != nil {
		return f
	}
	pkgs := []string{filepath.Join(f.src, "hello")}
	if canBuildExt() {
		pkgs = append(pkgs, filepath.Join(f.src, "cext"))
		f.hasExt = true
	}
	if _, f.err = pipInstall(f.golden, pkgs...); f.err != nil {
		return f
	}
	_, f.err = pipInstall(f.golden, "-e", filepath.Join(f.src, "editpkg"))
	return f
}

// canBuildExt reports whether gcc and the base interpreter's Python.h exist.
func canBuildExt() bool {
	if _, err := exec.LookPath("gcc"); err != nil {
		return false
	}
	out, err := runCmd("", "python3", "-c", "import sysconfig,os;print(os.path.exists(os.path.join(sysconfig.get_paths()['include'],'Python.h')))")
	return err == nil && strings.TrimSpace(out) == "True"
}

// copyPackages copies testdata/pkgs/* to dst, each with the build backend.
func copyPackages(dst string) error {
	backend, err := os.ReadFile(filepath.Join("testdata", "tinybackend.py"))
	if err != nil {
		return err
	}
	if _, err := runCmd("", "cp", "-r", filepath.Join("testdata", "pkgs"), dst); err != nil {
		return err
	}
	ents, err := os.ReadDir(dst)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.WriteFile(filepath.Join(dst, e.Name(), "tinybackend.py"), backend, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pipInstall installs into venv offline, without build isolation.
func pipInstall(venv string, args ...string) (string, error) {
	return runCmd("", filepath.Join(venv, "bin", "pip"),
		append([]string{"install", "-q", "--no-index", "--no-build-isolation", "--disable-pip-version-check"}, args...)...)
}

func runCmd(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PIP_NO_INDEX=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
