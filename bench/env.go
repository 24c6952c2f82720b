package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Peer tool names, as they appear in the tables.
const (
	toolSnap        = "ptest-snap"
	toolSnapInitial = "ptest-snap initial"
	toolSnapFull    = "ptest-snap full restore"
	toolTarZstd1    = "tar | zstd -1 -T0"
	toolTarZstd3    = "tar | zstd -3 -T0"
	toolCp          = "cp -a"
	toolRmCp        = "rm -rf + cp -a"
	// toolSnapRemoved and toolCpRemoved create, in a new directory, only
	// the package change small removes: what undoing it must at least do.
	toolSnapRemoved = "ptest-snap restore of the removed package alone"
	toolCpRemoved   = "cp -a of the removed package alone"
	toolUntar       = "zstd -d | tar -x"
	toolRestic      = "restic"
	toolKopia       = "kopia"
	toolSnapSecond  = "ptest-snap second (+1 MB)"
	toolDockerSave  = "docker commit + save | zstd -1"
	toolDockerLoad  = "docker load + run"
	toolRecreate    = "python3 -m venv + pip install --no-index"
	// toolPerFileZstd3 is a bound, not a tool run: the changed and added
	// files each compressed alone by zstd -3 (stored bytes only).
	toolPerFileZstd3 = "per-file zstd -3 of the changed files"
)

// benchEnv is what every scenario shares: the configuration, the dataset,
// the binaries and a scratch directory where every path is fresh.
type benchEnv struct {
	cfg    Config
	data   string // the dataset's root
	bin    string // the ptest-snap binary
	work   string
	seq    int
	restic bool
	kopia  bool
	// cache holds what a scenario prepared once for all its runs.
	cache map[string]string
	// growthSeries is the growth scenario's per-step samples by tool.
	growthSeries map[string][]Sample
	// cleanups run when the harness ends (containers, images).
	cleanups []command
	docker   bool
	// venv: the dataset is a virtualenv and the engine is virtualenv.
	venv bool
	// lastDeletion is when a step last deleted many files (deleted), zero
	// once afterDeletions has waited for it.
	lastDeletion time.Time
}

func newBenchEnv(cfg Config, data, work string) (*benchEnv, error) {
	bin := filepath.Join(cfg.BinDir, "ptest-snap")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("ptest-snap binary: %w (run `make build`, or set -bin)", err)
	}
	e := &benchEnv{cfg: cfg, data: data, bin: bin, work: work, cache: map[string]string{}}
	_, err := exec.LookPath("restic")
	e.restic = err == nil && !cfg.NoPeers
	_, err = exec.LookPath("kopia")
	e.kopia = err == nil && !cfg.NoPeers
	return e, nil
}

// fresh returns a path under the scratch directory that does not exist yet.
// Nothing is deleted between runs: creating files soon after deleting many is
// slow on some file systems, and that would be charged to the next tool.
func (e *benchEnv) fresh(name string) string {
	e.seq++
	return filepath.Join(e.work, fmt.Sprintf("%04d-%s", e.seq, name))
}

// snap is a ptest-snap command on the given store. The engine's binaries are
// found next to ptest-snap.
func (e *benchEnv) snap(store string, args ...string) command {
	argv := append([]string{e.bin, "--store", store, "--quiet"}, args...)
	return command{argv: argv}.withEnv("PTEST_SNAP_PLUGIN_PATH=" + e.cfg.BinDir)
}

func (e *benchEnv) create(store, name, target string) command {
	return e.snap(store, "create", "--engine", e.cfg.Engine, "--name", name, target)
}

func (e *benchEnv) resticCmd(repo string, args ...string) command {
	return command{argv: append([]string{"restic", "-r", repo, "--quiet"}, args...)}.withEnv("RESTIC_PASSWORD=bench", "RESTIC_CACHE_DIR="+filepath.Join(e.work, "restic-cache"))
}

func (e *benchEnv) kopiaCmd(cfgFile string, args ...string) command {
	return command{argv: append([]string{"kopia", "--config-file", cfgFile}, args...)}.withEnv("KOPIA_PASSWORD=bench-password", "KOPIA_CHECK_FOR_UPDATES=false")
}

// tarZstd archives dir with tar and zstd at the given level into out.
func tarZstd(dir, out string, level int) command {
	return shell(fmt.Sprintf("tar -cf - -C %q %q | zstd -%d -T0 -q -o %q", filepath.Dir(dir), filepath.Base(dir), level, out))
}

// timed measures c after a sync; with bytesOf set, the sample's Bytes is the
// disk usage of that path afterwards minus before.
func (e *benchEnv) timed(ctx context.Context, c command, bytesOf string) (Sample, error) {
	var before int64
	if bytesOf != "" {
		if _, err := os.Stat(bytesOf); err == nil {
			if before, err = diskUsage(bytesOf); err != nil {
				return Sample{}, err
			}
		}
	}
	syncDisks()
	s, err := measure(ctx, c)
	if err != nil {
		return s, err
	}
	if bytesOf != "" {
		after, err := diskUsage(bytesOf)
		if err != nil {
			return s, err
		}
		s.Bytes = after - before
	}
	return s, nil
}

// settle waits after mass deletions before timing file creation (see fresh),
// then reads warm back into the page cache: the figures are warm-cache ones
// (the convention), and these machines' kernel reclaims page cache
// left unused for about a minute (DAMON), so that after the pause the next
// step would read directory blocks and files from the disk, a cold start
// its warm comparisons never had.
func (e *benchEnv) settle(ctx context.Context, warm ...string) error {
	e.lastDeletion = time.Time{}
	return e.pause(ctx, e.cfg.Settle, warm...)
}

// deleted records that a step just deleted many files, so that the next
// timed step creating many waits for the pause first (afterDeletions).
func (e *benchEnv) deleted() { e.lastDeletion = time.Now() }

// afterDeletions is settle for a timed step that creates many files and
// comes after some deletion (deleted) in an earlier run or scenario: it
// waits only what is left of the pause since then, and not at all when
// nothing was deleted. Without it, the in-place scenario's full restore,
// which follows the previous run's rm -rf, took 1.82-1.94 s against
// 1.19-1.32 s for the same restore in the restore-to-empty scenario (one
// harness run), and the restore-to-empty scenario's first runs followed
// the second-snapshot scenario's deletions.
func (e *benchEnv) afterDeletions(ctx context.Context, warm ...string) error {
	if e.lastDeletion.IsZero() {
		return nil
	}
	left := e.cfg.Settle - time.Since(e.lastDeletion)
	e.lastDeletion = time.Time{}
	if left <= 0 {
		return nil
	}
	return e.pause(ctx, left, warm...)
}

// pause syncs, waits d, then reads warm into the page cache (settle).
func (e *benchEnv) pause(ctx context.Context, d time.Duration, warm ...string) error {
	if d <= 0 {
		return nil
	}
	syncDisks()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	for _, p := range warm {
		if err := warmCache(ctx, p); err != nil {
			return fmt.Errorf("warm %s: %w", p, err)
		}
	}
	return nil
}
