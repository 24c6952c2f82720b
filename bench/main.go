package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Config is the harness's settings, one flag each.
type Config struct {
	Runs        int
	Warmup      int
	Dataset     string // venv-full | synthetic | a directory
	DataDir     string // where datasets are generated and kept
	WorkDir     string // scratch; a fresh subdirectory per run of the harness
	OutDir      string
	BinDir      string
	Engine      string
	Scenarios   []string
	Settle      time.Duration
	GrowthSteps int
	Scales      []int
	Synthetic   SyntheticSpec
	Python      string
	NoPeers     bool // time ptest-snap and the always-present peers only
	Keep        bool // keep the scratch directory
	Docker      bool // run the Docker scenarios (when an engine answers)
	// ModuleDir is the ptest-snap source tree (to build the container helper).
	ModuleDir string
	// DockerImageMB and DockerChangeMB size the Docker scenarios' image and
	// the container's change over it.
	DockerImageMB, DockerChangeMB int
}

func defaultConfig() Config {
	bin := os.Getenv("PTEST_SNAP_BIN")
	if bin == "" {
		bin = "bin"
	}
	return Config{
		Runs: 5, Warmup: 1, Dataset: "venv-full",
		DataDir: filepath.Join(os.TempDir(), "ptest-snap-bench", "data"),
		WorkDir: filepath.Join(os.TempDir(), "ptest-snap-bench", "work"),
		OutDir:  filepath.Join("bench", "out"), BinDir: bin, Engine: "virtualenv",
		Settle: 30 * time.Second, GrowthSteps: growthSteps, Scales: []int{1, 2, 4},
		Synthetic: SyntheticSpec{Files: 4000, MedianSize: 2000, Sigma: 1.6, RandomFraction: 0.1, FilesPerDir: 40, Seed: 1},
		Python:    "python3", Docker: true, ModuleDir: ".",
		DockerImageMB: 100, DockerChangeMB: 10,
	}
}

func parseFlags(args []string) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&cfg.Runs, "runs", cfg.Runs, "measured runs per scenario (the figure is their median)")
	fs.IntVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured runs before them")
	fs.StringVar(&cfg.Dataset, "dataset", cfg.Dataset, "venv-full, synthetic, or the path of a directory to use as it is")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "where generated datasets are kept between runs")
	fs.StringVar(&cfg.WorkDir, "work", cfg.WorkDir, "scratch directory")
	fs.StringVar(&cfg.OutDir, "out", cfg.OutDir, "where results.json and ratios.png go")
	fs.StringVar(&cfg.BinDir, "bin", cfg.BinDir, "directory holding ptest-snap and its engines (default $PTEST_SNAP_BIN or ./bin)")
	fs.StringVar(&cfg.Engine, "engine", cfg.Engine, "engine for the dataset (virtualenv for venv-full, dir for any tree)")
	scen := fs.String("scenarios", "all", "comma-separated scenario names, 'all', or 'none'")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "pause after mass deletions before timing file creation")
	fs.IntVar(&cfg.GrowthSteps, "growth-steps", cfg.GrowthSteps, "snapshots in the growth scenario")
	scales := fs.String("scales", "1,2,4", "synthetic scaling run multipliers ('' to skip)")
	fs.IntVar(&cfg.Synthetic.Files, "synthetic-files", cfg.Synthetic.Files, "files in the synthetic dataset (1×)")
	fs.IntVar(&cfg.Synthetic.MedianSize, "synthetic-median", cfg.Synthetic.MedianSize, "median file size of the synthetic dataset")
	seed := fs.Uint64("seed", cfg.Synthetic.Seed, "seed of the synthetic dataset")
	fs.StringVar(&cfg.Python, "python", cfg.Python, "interpreter that builds venv-full")
	fs.BoolVar(&cfg.NoPeers, "no-peers", false, "skip restic and kopia even when installed")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the scratch directory")
	fs.BoolVar(&cfg.Docker, "docker", cfg.Docker, "run the Docker scenarios when a Docker engine answers")
	fs.IntVar(&cfg.DockerImageMB, "docker-image-mb", cfg.DockerImageMB, "size of the Docker scenarios' image data")
	fs.IntVar(&cfg.DockerChangeMB, "docker-change-mb", cfg.DockerChangeMB, "what the container changes over its image")
	fs.StringVar(&cfg.ModuleDir, "module", cfg.ModuleDir, "the ptest-snap source tree (builds the container helper)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.Synthetic.Seed = *seed
	all := scenarios()
	switch *scen {
	case "all":
		for _, s := range all {
			cfg.Scenarios = append(cfg.Scenarios, s.name)
		}
	case "none", "":
	default:
		for _, name := range strings.Split(*scen, ",") {
			name = strings.TrimSpace(name)
			if !slices.ContainsFunc(all, func(s scenario) bool { return s.name == name }) {
				return cfg, fmt.Errorf("unknown scenario %q", name)
			}
			cfg.Scenarios = append(cfg.Scenarios, name)
		}
	}
	cfg.Scales = nil
	for _, f := range strings.Split(*scales, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		var k int
		if _, err := fmt.Sscan(f, &k); err != nil || k < 1 {
			return cfg, fmt.Errorf("bad -scales element %q", f)
		}
		cfg.Scales = append(cfg.Scales, k)
	}
	if cfg.Runs < 1 || cfg.Warmup < 0 {
		return cfg, errors.New("-runs must be ≥ 1 and -warmup ≥ 0")
	}
	return cfg, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runHarness(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// dataset returns the dataset's root, generating it on first use.
func dataset(ctx context.Context, cfg Config) (string, error) {
	switch cfg.Dataset {
	case "venv-full":
		dir := filepath.Join(cfg.DataDir, "venv-full")
		if _, err := os.Stat(filepath.Join(dir, "pyvenv.cfg")); err == nil {
			return dir, nil
		}
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return "", err
		}
		tmp := dir + ".partial"
		_ = os.RemoveAll(tmp)
		if err := makeVenvFull(ctx, cfg.Python, tmp); err != nil {
			return "", err
		}
		return dir, os.Rename(tmp, dir)
	case "synthetic":
		dir := filepath.Join(cfg.DataDir, fmt.Sprintf("synthetic-%d-%d-%d", cfg.Synthetic.Files, cfg.Synthetic.MedianSize, cfg.Synthetic.Seed))
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
		tmp := dir + ".partial"
		_ = os.RemoveAll(tmp)
		if _, err := makeSynthetic(tmp, cfg.Synthetic); err != nil {
			return "", err
		}
		return dir, os.Rename(tmp, dir)
	default:
		abs, err := filepath.Abs(cfg.Dataset)
		if err != nil {
			return "", err
		}
		return abs, nil
	}
}

// Results is everything one harness run measured; results.json holds it.
type Results struct {
	When    time.Time           `json:"when"`
	Dataset string              `json:"dataset"`
	Engine  string              `json:"engine"`
	Runs    int                 `json:"runs"`
	Figures []Figure            `json:"figures"`
	Ratios  []Ratio             `json:"ratios"`
	Growth  map[string][]Sample `json:"growth,omitempty"`
	Scaling []scalePoint        `json:"scaling,omitempty"`
	Skipped []string            `json:"skipped,omitempty"`
	Machine map[string]string   `json:"machine"`
	Seconds float64             `json:"seconds"`
}

func runHarness(ctx context.Context, cfg Config, stdout, log io.Writer) error {
	start := time.Now()
	data, err := dataset(ctx, cfg)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(cfg.WorkDir, "run-")
	if err != nil {
		return err
	}
	if !cfg.Keep {
		defer os.RemoveAll(work)
	}
	e, err := newBenchEnv(cfg, data, work)
	if err != nil {
		return err
	}
	res := &Results{When: start.UTC(), Dataset: data, Engine: cfg.Engine, Runs: cfg.Runs, Machine: machineInfo()}
	if !e.restic {
		res.Skipped = append(res.Skipped, "restic: not on PATH (or -no-peers)")
	}
	if !e.kopia {
		res.Skipped = append(res.Skipped, "kopia: not on PATH (or -no-peers)")
	}
	e.docker = cfg.Docker && dockerReachable(ctx)
	if !e.docker {
		res.Skipped = append(res.Skipped, "docker scenarios: no Docker engine answers (or -docker=false)")
	}
	_, err = os.Stat(filepath.Join(data, "pyvenv.cfg"))
	e.venv = err == nil && cfg.Engine == "virtualenv"
	if !e.venv {
		res.Skipped = append(res.Skipped, "venv scenarios: the dataset is not a virtualenv captured by the virtualenv engine")
	}
	defer func() {
		for i := len(e.cleanups) - 1; i >= 0; i-- {
			_ = run(context.WithoutCancel(ctx), e.cleanups[i])
		}
	}()
	for _, sc := range scenarios() {
		if !slices.Contains(cfg.Scenarios, sc.name) || sc.needsDocker && !e.docker || sc.needsVenv && !e.venv {
			continue
		}
		fmt.Fprintf(log, "bench: %s …\n", sc.name)
		samples := map[string][]Sample{}
		runs, warm := cfg.Runs, cfg.Warmup
		if sc.once {
			runs, warm = 1, 0
		}
		for i := -warm; i < runs; i++ {
			got, err := sc.runOnce(ctx, e, i+warm)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			if i < 0 {
				continue
			}
			for tool, s := range got {
				samples[tool] = append(samples[tool], s)
			}
		}
		tools := make([]string, 0, len(samples))
		for tool := range samples {
			tools = append(tools, tool)
		}
		slices.Sort(tools)
		slices.SortStableFunc(tools, func(a, b string) int { return toolOrder(a) - toolOrder(b) })
		for _, tool := range tools {
			res.Figures = append(res.Figures, newFigure(sc.name, tool, samples[tool]))
		}
		for _, tool := range tools {
			if tool == toolSnap || samples[toolSnap] == nil {
				continue
			}
			res.Ratios = append(res.Ratios, newRatio(sc.name, toolSnap, tool, samples[toolSnap], samples[tool], targetFor(sc.name, toolSnap, tool)))
		}
	}
	res.Growth = e.growthSeries
	if len(cfg.Scales) > 0 {
		fmt.Fprintln(log, "bench: scaling …")
		pts, err := scaling(ctx, e, cfg.Synthetic, cfg.Scales)
		if err != nil {
			return fmt.Errorf("scaling: %w", err)
		}
		res.Scaling = pts
	}
	res.Seconds = time.Since(start).Seconds()
	res.Machine["harness_rss_hwm_mb"] = harnessHWM()
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(cfg.OutDir, "results.json"), res); err != nil {
		return err
	}
	if err := writeChart(filepath.Join(cfg.OutDir, "ratios.png"), res.Ratios); err != nil {
		return err
	}
	return writeMarkdown(stdout, res)
}

// toolOrder puts ptest-snap first in tables, then peers in a stable order.
func toolOrder(tool string) int {
	if strings.HasPrefix(tool, toolSnap) {
		return 0
	}
	return 1
}

// targetFor returns the target of a comparison; without one, a wall-time
// ratio with no target, or a stored-bytes ratio against a bound.
func targetFor(scenario, subject, peer string) target {
	for _, t := range targets {
		if t.scenario == scenario && t.subject == subject && t.peer == peer {
			return t
		}
	}
	return target{scenario: scenario, subject: subject, peer: peer, stored: peer == toolPerFileZstd3}
}

// harnessHWM is the harness's own peak RSS: a floor under every tool's peak
// RSS figure, since children inherit it at exec (see writeGenerated).
func harnessHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return fmt.Sprintf("%.0f", float64(kb)/1e3)
		}
	}
	return "?"
}

func machineInfo() map[string]string {
	m := map[string]string{}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	m["cores"] = fmt.Sprint(runtime.NumCPU())
	return m
}
