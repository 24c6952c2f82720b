package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMeasureCountsChildren(t *testing.T) {
	// The CPU is spent by a grandchild (awk under sh): wait4 must count it.
	s, err := measure(context.Background(), shell(`awk 'BEGIN{for(i=0;i<3000000;i++) s+=i; print s}' >/dev/null`))
	require.NoError(t, err)
	assert.Positive(t, s.Wall)
	assert.Positive(t, s.CPU)
	assert.Positive(t, s.MaxRSS)

	_, err = measure(context.Background(), shell("echo boom >&2; exit 3"))
	assert.ErrorContains(t, err, "boom", "a failing step says why")
}

// binDir returns a directory with ptest-snap and its engines: the one
// `make test` built ($PTEST_SNAP_BIN), or a fresh build.
func binDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("PTEST_SNAP_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "ptest-snap-engine-docker")); err == nil {
			return dir
		}
	}
	dir := t.TempDir()
	c := exec.Command("go", "build", "-o", dir+"/", "../cmd/ptest-snap", "../plugins/dir/cmd/ptest-snap-engine-dir", "../plugins/docker/cmd/ptest-snap-engine-docker")
	out, err := c.CombinedOutput()
	require.NoError(t, err, "build binaries: %s", out)
	return dir
}

// TestSmokeRun runs `make bench`, the README's command, with flags for a tiny
// synthetic dataset and the directory engine: every scenario (the Docker ones
// when an engine answers) and the scaling run, then checks its outputs.
func TestSmokeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	bin, tmp := binDir(t), t.TempDir()
	out := filepath.Join(tmp, "out")
	docker := os.Getenv("PTEST_SNAP_REQUIRE_DOCKER") == "1" || dockerReachable(context.Background())
	flags := strings.Join([]string{
		"-dataset synthetic -synthetic-files 120 -synthetic-median 1500 -seed 3 -engine dir",
		"-runs 1 -warmup 0 -settle 0 -growth-steps 3 -scales 1,2 -no-peers",
		"-docker-image-mb 4 -docker-change-mb 1 -docker=" + strconv.FormatBool(docker),
		"-data " + filepath.Join(tmp, "data") + " -work " + filepath.Join(tmp, "work") + " -out " + out,
	}, " ")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "make", "-s", "-C", "..", "bench", "BIN="+bin, "BENCHFLAGS="+flags)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	require.NoError(t, c.Run(), "make bench:\n%s\n%s", stdout.String(), stderr.String())

	md := stdout.String()
	for _, s := range scenarios() {
		if s.needsDocker && !docker || s.needsVenv {
			continue // the venv scenarios: wheelhouse_test.go
		}
		assert.Contains(t, md, "| "+s.name+" | ptest-snap", "every scenario timed ptest-snap")
	}
	assert.Contains(t, md, "| in-place restore undoing small | ptest-snap full restore |")
	// The undo's floor, timed beside it: the removed package created alone.
	assert.Contains(t, md, "| in-place restore undoing small | ptest-snap restore of the removed package alone |")
	assert.Contains(t, md, "| in-place restore undoing small | cp -a of the removed package alone |")
	assert.Contains(t, md, "| second snapshot after small | per-file zstd -3 of the changed files (ratio of stored bytes) |")
	assert.Contains(t, md, "| 2× | 240 |")

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	var res Results
	require.NoError(t, json.Unmarshal(b, &res))
	assert.NotEmpty(t, res.Ratios)
	for _, f := range res.Figures {
		if f.Tool == toolPerFileZstd3 {
			// A bound: bytes only.
			assert.Zero(t, f.WallS.N, "%s / %s", f.Scenario, f.Tool)
			assert.Positive(t, f.MB.Median, "%s / %s", f.Scenario, f.Tool)
			continue
		}
		assert.Equal(t, 1, f.WallS.N, "%s / %s", f.Scenario, f.Tool)
		assert.Positive(t, f.WallS.Median, "%s / %s", f.Scenario, f.Tool)
		if f.Scenario == "initial snapshot" && f.Tool == toolSnap {
			assert.Positive(t, f.MB.Median, "the store's size is measured")
		}
	}
	assert.Len(t, res.Growth[toolSnap], 3)
	assert.FileExists(t, filepath.Join(out, "ratios.png"))
}
