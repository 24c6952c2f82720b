package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readmeTour is the tour in README.md, word for word: every command a
// reader is shown is run here, in order, from a directory where ./bin holds
// the built binaries (as after `make build`), with the default store (the
// XDG data directory, private to the test).
const readmeTour = `python3 -m venv demo-venv
./bin/ptest-snap create --engine virtualenv --name clean demo-venv
rm -rf demo-venv/lib/python3*/site-packages/pip*    # break it
echo 'echo broken' >> demo-venv/bin/activate
./bin/ptest-snap create --engine virtualenv --name broken demo-venv
./bin/ptest-snap diff clean broken --packages
./bin/ptest-snap restore clean --in-place
demo-venv/bin/python -c 'import pip; print("pip", pip.__version__)'
./bin/ptest-snap list
./bin/ptest-snap export clean -o clean.ptsnap
./bin/ptest-snap --store other-store import clean.ptsnap
./bin/ptest-snap --store other-store verify
./bin/ptest-snap create --engine dir .`

// TestReadmeTour runs the README's tour with bash -e, so a failing command
// fails the test.
func TestReadmeTour(t *testing.T) {
	requireEngine(t, "virtualenv")
	requireEngine(t, "dir")
	work := t.TempDir()
	require.NoError(t, os.Symlink(binDir, filepath.Join(work, "bin")))
	c := newCLI(t)
	cmd := exec.Command("bash", "-euo", "pipefail", "-x", "-c", readmeTour)
	cmd.Dir = work
	cmd.Env = c.environ()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "README tour failed:\n%s", out)
	s := string(out)
	require.Contains(t, s, "created snapshot")
	require.Contains(t, s, "pip", "the package diff names pip")
	require.Contains(t, s, "restored snapshot")
	require.True(t, strings.Contains(s, "0 problems"), "verify of the other store is clean:\n%s", s)
}

// readmeQuickStart are README lines run elsewhere: the build and the test
// suite themselves (make), and the quick start's create, which the tour's
// last line runs.
var readmeQuickStart = []string{
	"make build && ./bin/ptest-snap create --engine dir .",
	"make test",
	"make bench",
}

// TestReadmeCommandsAreTested checks that every command line the README
// shows in a code block is one this file runs: the tour, or the quick
// start. A README command without a test fails here.
func TestReadmeCommandsAreTested(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if os.IsNotExist(err) {
		t.Skip("no README.md next to the module (not a source checkout)")
	}
	require.NoError(t, err)
	known := map[string]bool{}
	for _, l := range strings.Split(readmeTour, "\n") {
		known[normalizeCommand(l)] = true
	}
	for _, l := range readmeQuickStart {
		known[normalizeCommand(l)] = true
	}
	inBlock := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		cmd := normalizeCommand(line)
		if !inBlock || cmd == "" {
			continue
		}
		assert.True(t, known[cmd], "README.md line %d is not run by any test: %q (add it to readmeTour)", i+1, line)
	}
}

// normalizeCommand strips a shell prompt, a trailing comment and spacing.
func normalizeCommand(l string) string {
	l = strings.TrimSpace(l)
	l = strings.TrimPrefix(l, "$ ")
	if i := strings.Index(l, " #"); i >= 0 {
		l = l[:i]
	}
	if strings.HasPrefix(l, "#") {
		return ""
	}
	return strings.Join(strings.Fields(l), " ")
}
