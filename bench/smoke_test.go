package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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

// binDir returns a directory with ptest-snap and the dir engine: the one
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

// TestSmokeRun runs the whole harness, every scenario and the scaling run, on
// a tiny synthetic dataset with the directory engine, and checks its outputs.
func TestSmokeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	cfg := defaultConfig()
	tmp := t.TempDir()
	cfg.BinDir, cfg.DataDir, cfg.WorkDir, cfg.OutDir = binDir(t), filepath.Join(tmp, "data"), filepath.Join(tmp, "work"), filepath.Join(tmp, "out")
	cfg.Dataset, cfg.Engine = "synthetic", "dir"
	cfg.Synthetic = SyntheticSpec{Files: 120, MedianSize: 1500, Sigma: 1.5, RandomFraction: 0.1, FilesPerDir: 12, Seed: 3}
	cfg.Runs, cfg.Warmup, cfg.Settle, cfg.GrowthSteps, cfg.Scales = 1, 0, 0, 3, []int{1, 2}
	cfg.NoPeers = true
	cfg.ModuleDir, cfg.DockerImageMB, cfg.DockerChangeMB = "..", 4, 1
	cfg.Docker = os.Getenv("PTEST_SNAP_REQUIRE_DOCKER") == "1" || dockerReachable(context.Background())
	for _, s := range scenarios() {
		cfg.Scenarios = append(cfg.Scenarios, s.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var out, log bytes.Buffer
	require.NoError(t, runHarness(ctx, cfg, &out, &log), "log:\n%s", log.String())

	md := out.String()
	for _, s := range scenarios() {
		if s.needsDocker && !cfg.Docker {
			continue
		}
		assert.Contains(t, md, "| "+s.name+" | ptest-snap", "every scenario timed ptest-snap")
	}
	assert.Contains(t, md, "| in-place restore undoing small | ptest-snap full restore |")
	assert.Contains(t, md, "| 2× | 240 |")

	b, err := os.ReadFile(filepath.Join(cfg.OutDir, "results.json"))
	require.NoError(t, err)
	var res Results
	require.NoError(t, json.Unmarshal(b, &res))
	assert.NotEmpty(t, res.Ratios)
	for _, f := range res.Figures {
		assert.Equal(t, 1, f.WallS.N, "%s / %s", f.Scenario, f.Tool)
		assert.Positive(t, f.WallS.Median, "%s / %s", f.Scenario, f.Tool)
	}
	for _, f := range res.Figures {
		if f.Scenario == "initial snapshot" && f.Tool == toolSnap {
			assert.Positive(t, f.MB.Median, "the store's size is measured")
		}
	}
	assert.Len(t, res.Growth[toolSnap], 3)
	assert.FileExists(t, filepath.Join(cfg.OutDir, "ratios.png"))
}
