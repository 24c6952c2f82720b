package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// makeBigTree writes files of random (incompressible, undeduplicable)
// bytes: enough that a capture takes a while on any machine.
func makeBigTree(t *testing.T, root string, files, size int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(files), uint64(size)))
	buf := make([]byte, size)
	for i := 0; i < files; i++ {
		for j := 0; j+8 <= len(buf); j += 8 {
			v := rng.Uint64()
			buf[j], buf[j+1], buf[j+2], buf[j+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
			buf[j+4], buf[j+5], buf[j+6], buf[j+7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		}
		p := filepath.Join(root, "d"+string(rune('a'+i%16)), "f"+strconv.Itoa(i))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, buf, 0o644))
	}
}

// startCreate starts a create of src in the background and waits until its
// engine process runs (so the store is open and the capture under way).
func startCreate(t *testing.T, c *cli, src string, extra ...string) (*exec.Cmd, *safeBuffer, *safeBuffer) {
	t.Helper()
	return startWithEngine(t, c, append([]string{"create", "--engine", "dir"}, append(extra, src)...)...)
}

// startWithEngine starts ptest-snap with args in the background and waits
// until its dir engine process runs.
func startWithEngine(t *testing.T, c *cli, args ...string) (*exec.Cmd, *safeBuffer, *safeBuffer) {
	t.Helper()
	cmd := c.command(args...)
	var out, errb safeBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	started := waitFor(20*time.Second, func() bool {
		return len(childProcesses(cmd.Process.Pid, "ptest-snap-engine-dir")) > 0
	})
	require.True(t, started, "%v never launched its engine; stderr:\n%s", args, errb.String())
	return cmd, &out, &errb
}

// TestInterruptDuringCreate sends SIGINT to a create in progress: it must
// exit non-zero (130), keep no snapshot, and leave no engine process.
func TestInterruptDuringCreate(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "big")
	makeBigTree(t, src, 32, 2<<20) // 64 MiB of random bytes

	cmd, out, errb := startCreate(t, c, src, "--name", "interrupted")
	engines := childProcesses(cmd.Process.Pid, "ptest-snap-engine-dir")
	// Stopped the moment its engine runs, the create cannot have finished
	// reading 64 MiB; the interrupt is delivered when it continues.
	require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP))
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	require.NoError(t, cmd.Process.Signal(syscall.SIGCONT))
	err := cmd.Wait()
	require.Error(t, err, "create finished before the interrupt; stdout:\n%s", out.String())
	assert.Equal(t, exitInterrupted, cmd.ProcessState.ExitCode(), "stderr:\n%s", errb.String())
	assert.Contains(t, errb.String(), "interrupted")
	requireCleanStderr(t, errb.String())

	// No engine process is left behind.
	for _, pid := range engines {
		alive := syscall.Kill(pid, 0) == nil && processState(pid) != "Z"
		assert.False(t, alive, "engine process %d still running", pid)
	}
	// Nothing partial is visible, and the store is sound.
	var l listJSON
	c.jsonOK(&l, "list")
	assert.Empty(t, l.Snapshots)
	c.fails(exitNotFound, "show", "interrupted")
	c.ok("verify")
	c.ok("gc")
}

// TestInterruptDuringRestore interrupts a restore to a new path midway:
// exit 130, no engine process left, the target removed, and the store
// untouched and sound.
func TestInterruptDuringRestore(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "big")
	makeBigTree(t, src, 32, 2<<20) // 64 MiB
	c.ok("create", "--engine", "dir", "--name", "big", src)

	dst := filepath.Join(t.TempDir(), "restored")
	cmd, out, errb := startWithEngine(t, c, "restore", "big", "--target", dst)
	engines := childProcesses(cmd.Process.Pid, "ptest-snap-engine-dir")
	// Interrupt once the engine has written files into the new target:
	// stopping the CLI (not its engine) holds the restore there, as the
	// engine waits for the bodies the CLI sends.
	written := waitFor(20*time.Second, func() bool { return countFiles(dst) > 0 })
	require.True(t, written, "the restore wrote nothing; stderr:\n%s", errb.String())
	require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP))
	t.Logf("%d files written when interrupted", countFiles(dst))
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	require.NoError(t, cmd.Process.Signal(syscall.SIGCONT))
	require.Error(t, cmd.Wait(), "restore finished before the interrupt; stdout:\n%s", out.String())
	assert.Equal(t, exitInterrupted, cmd.ProcessState.ExitCode(), "stderr:\n%s", errb.String())
	assert.Contains(t, errb.String(), "interrupted")
	requireCleanStderr(t, errb.String())
	for _, pid := range engines {
		alive := syscall.Kill(pid, 0) == nil && processState(pid) != "Z"
		assert.False(t, alive, "engine process %d still running", pid)
	}
	// The new target is removed, not left half written (issue #7).
	assert.NoDirExists(t, dst, "%d files left in the interrupted target", countFiles(dst))
	var l listJSON
	c.jsonOK(&l, "list")
	assert.Len(t, l.Snapshots, 1)
	c.ok("verify")
	// Restoring again (to a fresh path) completes.
	dst2 := filepath.Join(t.TempDir(), "restored")
	c.ok("restore", "big", "--target", dst2)
	assert.Equal(t, treeState(t, src), treeState(t, dst2))
}

// countFiles counts the regular files beneath root (0 if it is absent).
func countFiles(root string) int {
	n := 0
	_ = filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// processState returns the state letter of a process ("" if gone).
func processState(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// TestSecondProcessOnBusyStore runs two CLI processes on one store: the
// second fails at once with the store-busy code naming the holder when it
// may not wait, and waits (saying so) and succeeds when it may.
func TestSecondProcessOnBusyStore(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "big")
	makeBigTree(t, src, 16, 2<<20) // 32 MiB

	holder, _, holderErr := startCreate(t, c, src, "--name", "held")
	// Stopped, the holder keeps the store's lock as long as the test needs.
	require.NoError(t, holder.Process.Signal(syscall.SIGSTOP))
	resumed := false
	defer func() {
		if !resumed {
			_ = holder.Process.Signal(syscall.SIGCONT)
		}
	}()

	r := c.fails(exitBusy, "--lock-timeout", "0", "list")
	assert.Contains(t, r.stderr, strconv.Itoa(holder.Process.Pid), "the message names the holder's pid")
	assert.Contains(t, r.stderr, "hint:")

	// A short timeout: it says it waits, then gives up with the same code.
	r = c.fails(exitBusy, "--lock-timeout", "300ms", "list")
	assert.Contains(t, r.stderr, "waiting")
	assert.Contains(t, r.stderr, strconv.Itoa(holder.Process.Pid))

	// A long one: it waits for the first process and then runs.
	waiter := c.command("--lock-timeout", "5m", "--json", "list")
	var wout, werr safeBuffer
	waiter.Stdout, waiter.Stderr = &wout, &werr
	require.NoError(t, waiter.Start())
	require.True(t, waitFor(30*time.Second, func() bool { return strings.Contains(werr.String(), "waiting") }),
		"the second process says it waits; stderr:\n%s", werr.String())
	require.NoError(t, holder.Process.Signal(syscall.SIGCONT))
	resumed = true
	require.NoError(t, holder.Wait(), "holder stderr:\n%s", holderErr.String())
	require.NoError(t, waiter.Wait(), "waiter stderr:\n%s", werr.String())
	var seen listJSON
	require.NoError(t, json.Unmarshal([]byte(wout.String()), &seen))
	assert.Len(t, seen.Snapshots, 1, "the waiter ran after the holder committed")
	var l listJSON
	c.jsonOK(&l, "list")
	require.Len(t, l.Snapshots, 1)
}

// TestEventsFollow follows the event log from another process while a
// create runs, then stops with Ctrl-C (exit 0: that is how --follow ends).
func TestEventsFollow(t *testing.T) {
	requireEngine(t, "dir")
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "fixture")
	makeFixture(t, src)

	follow := c.command("--json", "events", "--follow")
	stdout, err := follow.StdoutPipe()
	require.NoError(t, err)
	var errb safeBuffer
	follow.Stderr = &errb
	require.NoError(t, follow.Start())
	t.Cleanup(func() {
		if follow.ProcessState == nil {
			_ = follow.Process.Kill()
			_ = follow.Wait()
		}
	})
	lines := make(chan map[string]any, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				lines <- e
			}
		}
	}()

	id := strings.TrimSpace(c.ok("create", "-q", "--engine", "dir", src).stdout)
	var seen []string
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case e, ok := <-lines:
			require.True(t, ok, "follower ended early; stderr:\n%s", errb.String())
			seen = append(seen, e["type"].(string))
			if e["type"] == "snapshot_created" {
				assert.Equal(t, id, e["snapshot_id"])
				done = true
			}
		case <-deadline:
			t.Fatalf("no snapshot_created event followed; saw %v", seen)
		}
	}
	assert.Equal(t, "snapshot_creating", seen[0])
	require.NoError(t, follow.Process.Signal(os.Interrupt))
	require.NoError(t, follow.Wait(), "stderr:\n%s", errb.String())
}
