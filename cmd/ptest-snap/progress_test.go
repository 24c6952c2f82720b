package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// TestProgressOnTerminalOnly runs the same create on a terminal (a pty made
// by script(1)) and into a pipe: the terminal gets a progress bar with a
// rate, the pipe gets none.
func TestProgressOnTerminalOnly(t *testing.T) {
	requireEngine(t, "dir")
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) is not installed (util-linux); cannot make a pty")
	}
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "big")
	makeBigTree(t, src, 32, 2<<20) // 64 MiB

	// Piped: no bar.
	r := c.ok("create", "--engine", "dir", "--name", "piped", src)
	requireNoProgress(t, r.stdout+r.stderr)

	// On a terminal: a bar with a byte rate on stderr, then the result. The
	// tree is new to the store (other seeds), so the create stores 96 MiB
	// and lasts long enough for the bar to redraw with a rate; the same tree
	// again would be deduplicated and could end before the first redraw.
	src2 := filepath.Join(t.TempDir(), "bigger")
	makeBigTree(t, src2, 48, 2<<20)
	line := strings.Join([]string{shellQuote(ptestBin), "--store", shellQuote(c.store),
		"create", "--engine", "dir", "--name", "tty", shellQuote(src2)}, " ")
	cmd := exec.Command("script", "-qefc", line, "/dev/null")
	cmd.Env = c.environ()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := string(out)
	assert.Contains(t, s, "capturing", "the bar names its phase")
	assert.Contains(t, s, "/s", "the bar shows a rate")
	assert.Contains(t, s, "\r", "the bar redraws in place")
	assert.Contains(t, s, "created snapshot")
}

// TestGCProgressNamesPhases runs gc on a terminal and into a pipe: on the
// terminal a bar names each phase (all four, as something is deleted), the
// pipe gets none.
func TestGCProgressNamesPhases(t *testing.T) {
	requireEngine(t, "dir")
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) is not installed (util-linux); cannot make a pty")
	}
	c := newCLI(t)
	gone := filepath.Join(t.TempDir(), "gone")
	makeBigTree(t, gone, 8, 256<<10)
	stays := filepath.Join(t.TempDir(), "stays")
	makeBigTree(t, stays, 2, 64<<10)
	c.ok("create", "--engine", "dir", "--name", "gone", gone)
	c.ok("create", "--engine", "dir", "--name", "stays", stays)
	c.ok("delete", "gone")

	line := strings.Join([]string{shellQuote(ptestBin), "--store", shellQuote(c.store), "gc"}, " ")
	cmd := exec.Command("script", "-qefc", line, "/dev/null")
	cmd.Env = c.environ()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := string(out)
	for _, label := range []string{"marking snapshots", "deleting chunks", "checking packs", "compacting"} {
		assert.Contains(t, s, label, "the bar names the phase")
	}
	assert.Contains(t, s, "\r", "the bar redraws in place")
	assert.Contains(t, s, "deleted ")

	// Piped: no bar, same result line.
	c.ok("delete", "stays")
	r := c.ok("gc")
	requireNoProgress(t, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "deleted ")
}
