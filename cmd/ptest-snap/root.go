package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

// defaultLockTimeout is how long a command waits for another ptest-snap
// process holding the store before it gives up with exit code 5.
const defaultLockTimeout = 30 * time.Second

// app is one invocation of the CLI: its streams, its global flags, and the
// service it opened (lazily, only for commands that need the store).
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// prelaunch is the engine the command will need, started while the
	// store opens (set by create, which knows it before the store).
	prelaunch string

	storeDir    string
	jsonOut     bool
	quiet       bool
	verbose     bool
	lockTimeout time.Duration

	maxSnapshotsPerEnv int
	maxStoreSize       string
	enginePins         []string

	// started is set once cobra has parsed flags and arguments and a
	// command's run function is about to execute; an error before that is
	// a usage error (exit code 2).
	started bool
	// command is the name of the command that ran ("create", ...).
	command string
	// restoreInPlace: the restore that ran was in place (or replaced its
	// target), so a failure left the target partly reset, not removed.
	restoreInPlace bool

	svc service
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr}
}

// execute runs the command line and maps the outcome to an exit code.
func (a *app) execute(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if a.svc != nil {
		if cerr := a.svc.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if err == nil {
		return exitOK
	}
	if !a.started && !isUsage(err) {
		err = usageError{err: err}
	}
	if ctx.Err() != nil && !isUsage(err) {
		err = interruptedError{err: err}
	}
	return a.reportError(err)
}

const rootLong = `ptest-snap snapshots isolated test environments — Python virtualenvs, Docker
containers, directory trees, and engines third parties add — into an embedded,
content-addressed store, and restores them exactly: in place, to a new path, or
as a new container, offline.

A snapshot is named by its ID (sortable by time), any unique prefix of it, or
the name given with --name.

Store: --store DIR, else $PTEST_SNAP_STORE, else $XDG_DATA_HOME/ptest-snap/store
(~/.local/share/ptest-snap/store); created on first use.

Engines are programs named ptest-snap-engine-<name>, found in the directories of
$PTEST_SNAP_PLUGIN_PATH, next to the ptest-snap binary, then in
$XDG_DATA_HOME/ptest-snap/engines. See 'ptest-snap engines'.

Engine pinning: --pin-engine NAME=SHA256 runs that engine only if its program
has that checksum (see 'ptest-snap engines'); another program is refused before
it runs, with exit code 7.

Quotas: --max-snapshots-per-env and --max-store-size (or the environment
variables named in their help) make a create that would exceed them fail before
it writes anything, with exit code 6.

Output: tables for people; with --json one JSON document on stdout (JSON lines
for 'events --follow'), its shapes documented in 'ptest-snap help json'.
Progress bars are drawn on stderr only when it is a terminal.

Exit codes:
  0    success
  1    failure (anything not listed below)
  2    usage: unknown command or flag, wrong arguments, ambiguous snapshot prefix
  3    not found: no such snapshot, target, or engine
  4    corrupt data: a checksum mismatch or missing chunk in the store or an archive
  5    store busy: another ptest-snap process holds the store (see --lock-timeout)
  6    quota exceeded: a snapshot count or store size limit
  7    engine error: the engine failed, crashed, or cannot do what was asked
  130  interrupted (Ctrl-C): nothing partial was kept`

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "ptest-snap",
		Short:         "Snapshot and restore test environments exactly, offline",
		Long:          rootLong,
		Example:       exampleRoot,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
		// A bare "ptest-snap" prints help; that is not an error.
		Args: cobra.NoArgs,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			a.started = true
			a.command = cmd.Name()
			return nil
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetIn(a.stdin)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{err: err, cmd: cmd}
	})
	root.SetVersionTemplate("ptest-snap {{.Version}}\n")

	pf := root.PersistentFlags()
	pf.StringVar(&a.storeDir, "store", "", "store directory (default $PTEST_SNAP_STORE, else the XDG data directory)")
	pf.BoolVar(&a.jsonOut, "json", false, "print one JSON document on stdout instead of a table (see 'ptest-snap help json')")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "print only what a script needs (IDs, problems); no progress bars")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "log what ptest-snap and its engines do, on stderr")
	pf.DurationVar(&a.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process holding the store (0: do not wait)")
	pf.StringArrayVar(&a.enginePins, "pin-engine", splitList(os.Getenv("PTEST_SNAP_ENGINE_PINS")),
		"run engine NAME only if its program's SHA-256 is HEX (`NAME=HEX`, repeatable; default $PTEST_SNAP_ENGINE_PINS, comma-separated)")
	pf.IntVar(&a.maxSnapshotsPerEnv, "max-snapshots-per-env", envInt("PTEST_SNAP_MAX_SNAPSHOTS_PER_ENV"),
		"quota: refuse a create that would keep more than `N` snapshots of one environment (0: no limit; default $PTEST_SNAP_MAX_SNAPSHOTS_PER_ENV)")
	pf.StringVar(&a.maxStoreSize, "max-store-size", os.Getenv("PTEST_SNAP_MAX_STORE_SIZE"),
		"quota: refuse a create when the store already holds `SIZE` (e.g. 20GiB; default $PTEST_SNAP_MAX_STORE_SIZE)")

	root.AddCommand(
		a.createCommand(),
		a.restoreCommand(),
		a.listCommand(),
		a.showCommand(),
		a.diffCommand(),
		a.statsCommand(),
		a.deleteCommand(),
		a.cleanupCommand(),
		a.gcCommand(),
		a.verifyCommand(),
		a.exportCommand(),
		a.importCommand(),
		a.eventsCommand(),
		a.enginesCommand(),
		a.versionCommand(),
		a.completionCommand(root),
		jsonHelpTopic(),
	)
	root.RunE = func(cmd *cobra.Command, args []string) error {
		return cmd.Help()
	}
	return root
}

// resolveStoreDir returns the store directory: --store, $PTEST_SNAP_STORE,
// $XDG_DATA_HOME/ptest-snap/store, or ~/.local/share/ptest-snap/store.
func (a *app) resolveStoreDir() (string, error) {
	if a.storeDir != "" {
		return filepath.Abs(a.storeDir)
	}
	if d := os.Getenv("PTEST_SNAP_STORE"); d != "" {
		return filepath.Abs(d)
	}
	data, err := dataHome()
	if err != nil {
		return "", err
	}
	return filepath.Join(data, "ptest-snap", "store"), nil
}

// dataHome is $XDG_DATA_HOME or ~/.local/share.
func dataHome() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a store directory: %w; give one with --store DIR or $PTEST_SNAP_STORE", err)
	}
	return filepath.Join(home, ".local", "share"), nil
}

// service opens the store (once) and returns the service over it. While it
// waits for another process's lock it says so on stderr, unless --quiet.
func (a *app) service(ctx context.Context) (service, error) {
	if a.svc != nil {
		return a.svc, nil
	}
	dir, err := a.resolveStoreDir()
	if err != nil {
		return nil, err
	}
	var maxBytes int64
	if a.maxStoreSize != "" {
		n, err := humanize.ParseBytes(a.maxStoreSize)
		if err != nil || n > math.MaxInt64 {
			return nil, usageError{err: fmt.Errorf("--max-store-size %q: expected a size like 500MiB or 20GB", a.maxStoreSize)}
		}
		maxBytes = int64(n)
	}
	pins, err := parsePins(a.enginePins)
	if err != nil {
		return nil, err
	}
	if a.maxSnapshotsPerEnv < 0 {
		return nil, usageError{err: fmt.Errorf("--max-snapshots-per-env must be 0 (no limit) or more")}
	}
	svc, err := openService(ctx, serviceOptions{
		StoreDir:           dir,
		MaxSnapshotsPerEnv: a.maxSnapshotsPerEnv,
		MaxStoreBytes:      maxBytes,
		EnginePins:         pins,
		LockTimeout:        a.lockTimeout,
		OnWait: func(holder string) {
			if !a.quiet {
				fmt.Fprintf(a.stderr, "ptest-snap: waiting up to %s for the store %s, held by %s\n",
					humanDuration(a.lockTimeout), dir, holder)
			}
		},
		Verbose:   a.verbose,
		Stderr:    a.stderr,
		Prelaunch: a.prelaunch,
	})
	if err != nil {
		return nil, err
	}
	a.svc = svc
	return svc, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parsePins parses NAME=HEX engine checksum pins.
func parsePins(pins []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, p := range pins {
		name, sum, ok := strings.Cut(p, "=")
		b, err := hex.DecodeString(sum)
		if !ok || name == "" || err != nil || len(b) != sha256.Size {
			return nil, usageError{err: fmt.Errorf("--pin-engine %q: expected NAME=<64 hex digits> (see 'ptest-snap engines' for the SHA-256)", p)}
		}
		out[name] = b
	}
	return out, nil
}

// envInt reads a non-negative integer default from the environment (0 when
// unset or malformed).
func envInt(name string) int {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// usageError is a mistake in the command line; it exits with code 2 and
// points at the command's help.
type usageError struct {
	err error
	cmd *cobra.Command
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// usagef returns a usage error for cmd.
func usagef(cmd *cobra.Command, format string, args ...any) error {
	return usageError{err: fmt.Errorf(format, args...), cmd: cmd}
}

// interruptedError is a command stopped by Ctrl-C.
type interruptedError struct{ err error }

func (e interruptedError) Error() string { return e.err.Error() }
func (e interruptedError) Unwrap() error { return e.err }

// argsBetween is cobra.RangeArgs returning a usage error that says what the
// command expects.
func argsBetween(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return usagef(cmd, "%s expects %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

// examples indents example command lines for cobra's help.
func examples(lines ...string) string {
	return "  " + strings.Join(lines, "\n  ")
}

const exampleRoot = `  # snapshot a virtualenv, break it, and put it back
  ptest-snap create --engine virtualenv --name clean ./venv
  ./venv/bin/pip uninstall -y requests
  ptest-snap restore clean --in-place

  # what is in the store
  ptest-snap list
  ptest-snap stats`
