package core

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// crashChildEnv makes the test binary a child that creates snapshots until
// it is killed (see TestCreateSurvivesSIGKILL).
const crashChildEnv = "PTEST_SNAP_CORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dirs := os.Getenv(crashChildEnv); dirs != "" {
		os.Exit(crashChild(dirs))
	}
	code := m.Run()
	if pluginBuild.dir != "" {
		os.RemoveAll(pluginBuild.dir)
	}
	os.Exit(code)
}

func crashChild(dirs string) int {
	var storeDir, src string
	if _, err := fmt.Sscanf(dirs, "%s %s", &storeDir, &src); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	m, err := Open(ctx, Options{StoreDir: storeDir, LockTimeout: 10 * time.Second,
		Engines: func(context.Context, string) (pluginapi.Engine, error) { return newDirEngine(), nil }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("open")
	for i := 0; ; i++ {
		// Alternate full and incremental captures.
		parent := ParentAuto
		if i%2 == 0 {
			parent = ParentNone
		}
		if _, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Parent: parent}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Fresh content each round, so every create writes new chunks.
		if err := os.WriteFile(filepath.Join(src, "data", fmt.Sprintf("round-%d", i)), randBytes(1<<20), 0o644); err != nil {
			return 1
		}
	}
}

func TestCreateSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	storeDir := t.TempDir()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	ctx := context.Background()
	eng := map[string]pluginapi.Engine{"dir": newDirEngine()}

	const rounds = 6
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+storeDir+" "+src)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		buf := make([]byte, 5)
		_, err = out.Read(buf) // "open": the store is held
		require.NoError(t, err)
		// Anywhere from during the first capture to a few creates in.
		time.Sleep(time.Duration(rand.IntN(1000)) * time.Millisecond)
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()

		m, err := Open(ctx, Options{StoreDir: storeDir, LockTimeout: 5 * time.Second,
			Engines: func(context.Context, string) (pluginapi.Engine, error) { return eng["dir"], nil }})
		require.NoError(t, err, "round %d: the store opens after SIGKILL", round)
		rep, err := m.Store().Verify(ctx, nil, nil)
		require.NoError(t, err)
		require.Empty(t, rep.Problems, "round %d: every listed snapshot is whole", round)
		snaps, err := m.Store().Snapshots(ctx)
		require.NoError(t, err)
		for _, s := range snaps {
			_, err := m.Store().ChangeIndex(ctx, s.ID)
			assert.NoError(t, err, "snapshot %s has its change index", s.ID)
		}
		t.Logf("round %d: %d snapshots survive", round, len(snaps))
		require.NoError(t, m.Close())
	}

	m := openManagerAt(t, storeDir, eng)
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err, "a new create works")
	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst})
	require.NoError(t, err)
	requireSameTree(t, src, dst)
	_, err = m.Store().GC(ctx)
	require.NoError(t, err)
	rep, err := m.Store().Verify(ctx, nil, nil)
	require.NoError(t, err)
	require.Empty(t, rep.Problems)
}
