package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests in this package drive the built ptest-snap binary as a user
// would: TestMain builds ./cmd/ptest-snap and every engine
// (./plugins/*/cmd/ptest-snap-engine-*) into one temporary directory, so the
// CLI finds its engines next to itself, or uses $PTEST_SNAP_BIN when it
// already holds them (make test sets it).

var (
	binOnce    sync.Once
	binDir     string // directory holding ptest-snap and the engines
	binErr     error  // why the binaries could not be built
	binCleanup func()
	ptestBin   string // the ptest-snap binary
)

// TestMain removes the binaries built for the run. They are built on first
// need (requireBinaries), so the unit tests alone build nothing.
func TestMain(m *testing.M) {
	code := m.Run()
	if binCleanup != nil {
		binCleanup()
	}
	os.Exit(code)
}

// prepareBinaries returns the directory with the binaries.
func prepareBinaries() (string, func(), error) {
	if dir := os.Getenv("PTEST_SNAP_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "ptest-snap")); err == nil {
			return dir, nil, nil
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp("", "ptest-snap-cli-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	pkgs := []string{"./cmd/ptest-snap"}
	engines, _ := filepath.Glob(filepath.Join(root, "plugins", "*", "cmd", "ptest-snap-engine-*"))
	for _, e := range engines {
		rel, _ := filepath.Rel(root, e)
		pkgs = append(pkgs, "./"+filepath.ToSlash(rel))
	}
	cmd := exec.Command("go", append([]string{"build", "-o", tmp + "/"}, pkgs...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return tmp, cleanup, fmt.Errorf("go build %v: %v\n%s", pkgs, err, out)
	}
	return tmp, cleanup, nil
}

// requireBinaries builds the binaries (once per run) and fails the test
// when they could not be built.
func requireBinaries(t *testing.T) {
	t.Helper()
	binOnce.Do(func() {
		binDir, binCleanup, binErr = prepareBinaries()
		ptestBin = filepath.Join(binDir, "ptest-snap")
	})
	require.NoError(t, binErr, "building the binaries")
}

// requireEngine skips nothing: a missing engine binary fails the test.
func requireEngine(t *testing.T, name string) {
	t.Helper()
	requireBinaries(t)
	_, err := os.Stat(filepath.Join(binDir, "ptest-snap-engine-"+name))
	require.NoError(t, err, "engine %s was not built next to ptest-snap", name)
}

// result is what one run of the binary produced.
type result struct {
	stdout string
	stderr string
	code   int
}

// cli runs ptest-snap against one store, with a clean environment: a
// private XDG_DATA_HOME and HOME, no PTEST_SNAP_* variables from outside.
type cli struct {
	t     *testing.T
	store string
	home  string
	dir   string // working directory
	env   []string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	requireBinaries(t)
	home := t.TempDir()
	return &cli{t: t, store: filepath.Join(t.TempDir(), "store"), home: home, dir: t.TempDir()}
}

// environ is the environment of a run.
func (c *cli) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PTEST_SNAP_") || strings.HasPrefix(kv, "XDG_DATA_HOME=") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+c.home, "XDG_DATA_HOME="+filepath.Join(c.home, "data"))
	return append(env, c.env...)
}

// command returns the exec.Cmd for a run with --store.
func (c *cli) command(args ...string) *exec.Cmd {
	cmd := exec.Command(ptestBin, append([]string{"--store", c.store}, args...)...)
	cmd.Env = c.environ()
	cmd.Dir = c.dir
	return cmd
}

// run runs ptest-snap with args and returns what it printed and its exit
// code.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	return c.runCmd(c.command(args...))
}

func (c *cli) runCmd(cmd *exec.Cmd) result {
	c.t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ok runs ptest-snap and requires exit code 0.
func (c *cli) ok(args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	require.Equal(c.t, 0, r.code, "ptest-snap %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r
}

// fails runs ptest-snap and requires the given non-zero exit code, an error
// line on stderr, and no Go stack trace or raw transport message.
func (c *cli) fails(code int, args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	require.Equal(c.t, code, r.code, "ptest-snap %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	require.Contains(c.t, r.stderr, "ptest-snap: ")
	requireCleanStderr(c.t, r.stderr)
	return r
}

// requireCleanStderr checks that nothing meant for developers reached the
// user: stack traces, panics, raw gRPC status or Badger messages.
func requireCleanStderr(t *testing.T, stderr string) {
	t.Helper()
	for _, bad := range []string{"goroutine ", "panic:", "rpc error:", "code = ", "badger", "Badger"} {
		require.NotContains(t, stderr, bad, "stderr leaks internals:\n%s", stderr)
	}
}

// jsonOK runs ptest-snap with --json, requires exit 0, and decodes stdout
// (which must be exactly one JSON document) into v.
func (c *cli) jsonOK(v any, args ...string) {
	c.t.Helper()
	r := c.ok(append([]string{"--json"}, args...)...)
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	require.NoError(c.t, dec.Decode(v), "stdout of --json %v:\n%s", args, r.stdout)
	require.False(c.t, dec.More(), "more than one JSON document:\n%s", r.stdout)
}

// requireNoProgress checks that output to a pipe carries nothing
// decorative: no carriage returns, no ANSI escapes, no bar.
func requireNoProgress(t *testing.T, s string) {
	t.Helper()
	require.NotContains(t, s, "\r", "progress bar drawn into a pipe")
	require.NotContains(t, s, "\x1b[", "terminal escapes written into a pipe")
	require.NotContains(t, s, "█")
}

// writeFile writes a file, creating its directory.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// treeState maps every path under root to a description of it: the
// SHA-256 of files' content, the target of symlinks, "dir" for directories, with
// the permission bits.
func treeState(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		mode := info.Mode()
		switch {
		case mode&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink " + target
		case mode.IsDir():
			out[rel] = fmt.Sprintf("dir %o", mode.Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %o %x", mode.Perm(), sha256.Sum256(b))
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// childProcesses returns the PIDs whose parent is ppid and whose
// executable name starts with namePrefix.
func childProcesses(ppid int, namePrefix string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		open := strings.IndexByte(s, '(')
		comm := s[open+1 : i]
		var state string
		var parent int
		if _, err := fmt.Sscanf(s[i+2:], "%s %d", &state, &parent); err != nil {
			continue
		}
		if parent == ppid && state != "Z" && strings.HasPrefix(comm, namePrefix[:min(len(namePrefix), 15)]) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// safeBuffer is a bytes.Buffer a running child process writes to while the
// test reads it.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
