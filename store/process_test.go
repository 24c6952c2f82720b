package store

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests below re-execute the test binary as a second process: with
// childEnv set, TestMain runs the child's part instead of the tests.
const childEnv = "PTEST_SNAP_STORE_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode, os.Getenv("PTEST_SNAP_STORE_DIR")))
	}
	os.Exit(m.Run())
}

func runChild(mode, dir string) int {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir, LockTimeout: 30 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	switch mode {
	case "hold":
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	case "write":
		fmt.Println("ready")
		for i := 0; ; i++ {
			files := testFiles(uint64(i%3), 60, 1800)
			for k, v := range testFiles(uint64(os.Getpid())<<8+uint64(i), 20, 2200) {
				files["u-"+k] = v
			}
			files["big.bin"] = randomBytes(uint64(os.Getpid())<<8+uint64(i), 700<<10)
			w, err := s.NewWriter(ctx)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			id := fmt.Sprintf("p%d-%03d", os.Getpid(), i)
			if _, err := writeSnapshotWith(ctx, w, id, files); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			fmt.Println("committed", id)
			// Now and then delete an older snapshot and collect it,
			// so kills also land inside GC (sweep, repack, reclaim).
			if i%3 == 2 {
				old := fmt.Sprintf("p%d-%03d", os.Getpid(), i-2)
				fmt.Println("deleting", old)
				if err := s.DeleteSnapshot(ctx, old); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 2
				}
				if _, err := s.GC(ctx); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 2
				}
			}
		}
	}
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "child close:", err)
		return 2
	}
	return 0
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startChild(t *testing.T, mode, dir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "PTEST_SNAP_STORE_DIR="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	select {
	case l := <-c.lines:
		require.Equal(t, "ready", l)
	case <-time.After(30 * time.Second):
		t.Fatal("child did not start")
	}
	return c
}

func TestLockAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := startChild(t, "hold", dir)
	pid := fmt.Sprint(c.cmd.Process.Pid)

	// No wait: fails at once, naming the holder, never Badger's error.
	_, err := Open(ctx, Options{Dir: dir, OnWait: func(string) { t.Error("OnWait without a timeout") }})
	require.ErrorIs(t, err, ErrBusy)
	assert.Contains(t, err.Error(), "pid "+pid)
	assert.NotContains(t, strings.ToLower(err.Error()), "badger")

	// A short wait: OnWait once with the holder, then ErrBusy.
	var waits []string
	_, err = Open(ctx, Options{Dir: dir, LockTimeout: 300 * time.Millisecond, OnWait: func(h string) { waits = append(waits, h) }})
	require.ErrorIs(t, err, ErrBusy)
	require.Len(t, waits, 1)
	assert.Contains(t, waits[0], "pid "+pid)
	assert.Contains(t, waits[0], "command")

	// A long wait succeeds once the holder closes.
	opened := make(chan error, 1)
	go func() {
		s, err := Open(ctx, Options{Dir: dir, LockTimeout: 30 * time.Second})
		if err == nil {
			err = s.Close()
		}
		opened <- err
	}()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, c.stdin.Close())
	require.NoError(t, <-opened)
	require.NoError(t, c.cmd.Wait())
}

// TestCrashAtAnyPoint SIGKILLs a process writing snapshots at random
// moments, again and again on the same store. After each kill the store
// opens, every snapshot the child reported committed is there, no partial
// snapshot is listed, everything verifies, and GC and new commits work.
func TestCrashAtAnyPoint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	committed := map[string]bool{}
	for round := 0; round < rounds; round++ {
		c := startChild(t, "write", dir)
		time.Sleep(time.Duration(20+r.IntN(1200)) * time.Millisecond)
		require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
		_ = c.cmd.Wait()
		for l := range c.lines {
			if id, ok := strings.CutPrefix(l, "committed "); ok {
				committed[id] = true
			}
			if id, ok := strings.CutPrefix(l, "deleting "); ok {
				delete(committed, id)
			}
		}

		s, err := Open(ctx, Options{Dir: dir})
		require.NoError(t, err, "round %d", round)
		snaps, err := s.Snapshots(ctx)
		require.NoError(t, err)
		listed := map[string]bool{}
		for _, snap := range snaps {
			listed[snap.ID] = true
		}
		for id := range committed {
			assert.True(t, listed[id], "round %d: committed snapshot %s lost", round, id)
		}
		rep, err := s.Verify(ctx, nil, nil)
		require.NoError(t, err)
		assert.Empty(t, rep.Problems, "round %d", round)
		if round%3 == 2 {
			_, err := s.GC(ctx)
			require.NoError(t, err)
		}
		require.NoError(t, s.Close())
	}
	t.Logf("%d snapshots committed and kept across %d kills", len(committed), rounds)

	s := openTest(t, dir)
	writeSnapshot(t, s, "after", testFiles(99, 20, 1000))
	_, err := s.GC(ctx)
	require.NoError(t, err)
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	// The files the kills left behind unreferenced are gone, and only
	// they: every file left is one a key locates.
	on, err := s.files.list()
	require.NoError(t, err)
	live := map[bulkID]bool{}
	for _, l := range bulkLocators(t, s) {
		live[l.id] = true
	}
	for id := range on {
		assert.True(t, live[id], "orphan bulk file %s left after GC", id)
	}
	assert.Len(t, on, len(live))
}
