// Command ptest-snap snapshots isolated test environments (Python
// virtualenvs, Docker containers, directory trees, third-party engines) into
// an embedded content-addressed store and restores them exactly, offline.
//
// This package is the command line only: flags, output (tables for people,
// JSON for scripts), progress bars and exit codes. Everything that touches
// the store or an engine lives in core/ and pluginapi/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/pypj/ptest-snap/internal/devprof"
	"github.com/pypj/ptest-snap/internal/gctune"
)

func main() {
	setMemoryLimit()
	stopProfile := devprof.Start("ptest-snap")
	code := run(os.Args[1:])
	stopProfile()
	os.Exit(code)
}

// softMemoryLimit is the CLI's default Go soft memory limit. A create of a
// large environment keeps its live heap well below it (~110 MB for
// venv-full: bounded queues, pooled buffers) but allocates at a high rate;
// with GOGC alone the heap grows to twice the live size between
// collections, and that slack is not data. Measured on a create of
// venv-full (/usr/bin/time, 3 runs each): peak heap 218 -> 170 MB, peak RSS
// 248-255 -> 232-235 MB, user CPU unchanged (3.1-3.7 s vs 3.0-3.3 s). The
// limit is soft: a command that needs more memory gets it (at some GC
// cost).
//
// 160 MiB rather than 192 since restores keep chunks used again later and
// read trees ahead: a restore of venv-full right after its create peaked at
// 252-288 MB RSS with 192 MiB and 231-233 MB with 150 MiB, same CPU (2.0-2.1
// s user); a create at 160 MiB: 206 MB instead of 233-235 MB, user CPU
// 4.38-4.59 s either way (2 runs each, /usr/bin/time, GOMEMLIMIT set).
const softMemoryLimit = 160 << 20

// setMemoryLimit applies softMemoryLimit unless the user set GOMEMLIMIT,
// which the Go runtime has already applied.
func setMemoryLimit() {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(softMemoryLimit)
	}
}

// The collector's settings during a create. Under softMemoryLimit alone a
// create's heap sits at the limit from its second second on (venv-full:
// live heap 100-125 MB, goal 144 MB): the collector runs whenever the heap
// reaches the limit, and to stay below it the runtime hands freed pages
// back to the OS as it allocates (madvise in mheap.allocSpan), to fault
// them in again soon after. On a paravirtualised machine page faults and
// the TLB shootdowns of madvise cost far more than the marking: 0.25 s of
// the CLI's CPU was madvise, and it took 78-87 k page faults. With GOGC at
// createGCPercent the heap goal follows the live heap (1.25 x it), under a
// limit raised to createMemoryLimit that a create does not reach, so the
// runtime returns nothing while the create runs. Initial create of
// venv-full on a loaded 2-core machine, 5 runs each alternating with the
// previous build (/usr/bin/time, CLI and engine; perf stat): CPU 8.84 s
// [8.34-9.13] -> 8.22 s [7.73-8.50], sys 3.16 -> 2.78 s, page faults 95 k
// -> 82 k, peak RSS 207 MB [201-210] -> 224 MB [218-232], store size
// unchanged; a second create (parent, nothing changed) the same. The CLI
// process alone (getrusage): madvise all but gone, CPU down 0.25-0.55 s
// in four series. GOGC 20: the same faults and no clearer CPU gain; GOGC
// 30: 224-232 MB, GOGC 40: 235-241 MB, for no more gain; GOGC 50 under a
// 240 MiB limit: 257 MB and no gain (a larger heap touches more fresh
// pages).
//
// Those settings take effect at the create's first collection. Until then
// the collector is off and only a limit of createQuietHeap triggers it: a
// second create of venv-full allocates ~75 MB in all, ten collections
// under createGCPercent that freed almost nothing (the heap only grows:
// gctrace 21 -> 74 MB in 10 cycles) and cost ~30-40 ms of the CLI's user
// CPU, for a peak RSS 12 MB lower (/usr/bin/time, GOGC=off against the
// default, 2 runs each: user 0.09-0.12 s vs 0.14-0.15 s, 92 vs 80 MB). A
// create that allocates more (an initial one, ~110 MB live) collects once
// at createQuietHeap and goes on under createGCPercent from there, below
// the heap goal it reaches anyway.
const (
	createGCPercent   = 25
	createMemoryLimit = 200 << 20
	createQuietHeap   = 128 << 20
)

// tuneGCForCreate applies the create's collector settings (the collector
// off up to createQuietHeap, then createGCPercent under createMemoryLimit)
// unless the user set GOGC or GOMEMLIMIT, and returns the function that
// puts the previous settings back (gctune.Quiet).
func tuneGCForCreate() (restore func()) {
	return gctune.Quiet(createQuietHeap, func() {
		debug.SetGCPercent(createGCPercent)
		debug.SetMemoryLimit(createMemoryLimit)
	})
}

// The collector's settings during a restore: off until the heap reaches
// restoreQuietHeap, then the CLI's defaults (GOGC 100 under
// softMemoryLimit), which a restore ran with throughout before. An
// in-place restore that undoes change small on venv-full allocates
// ~90 MB in the CLI (trees, the own change index, pack buffers, the
// plan) and collected three times along the way (gctrace: 22, 43 and
// 74 MB goals) for little it could free, ~16 ms of the CLI's CPU
// (collections, assists, write barriers) while both cores were busy with
// the engine's listing and writing. A full restore allocates more and
// collects once at restoreQuietHeap, under the same settings as before
// from there.
const restoreQuietHeap = 128 << 20

// tuneGCForRestore applies the restore's collector settings unless the
// user set GOGC or GOMEMLIMIT, and returns the function that puts the
// previous settings back (gctune.Quiet).
func tuneGCForRestore() (restore func()) {
	return gctune.Quiet(restoreQuietHeap, func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(softMemoryLimit)
	})
}

// run executes one command line and returns the process exit code. Ctrl-C
// (SIGINT) or SIGTERM cancels the command's context: the core aborts what it
// was writing, the plugin host kills its engines, and the command returns.
// A second signal falls back to the default action (immediate exit).
func run(args []string) (code int) {
	// A bug must not greet the user with a Go stack trace: say what
	// happened and how to report it (the trace only with --verbose).
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "ptest-snap: internal error: %v\nhint: please report this with the command you ran; run it again with --verbose for details\n", r)
			if slices.Contains(args, "--verbose") || slices.Contains(args, "-v") {
				os.Stderr.Write(debug.Stack())
			}
			code = exitFailure
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	app := newApp(os.Stdin, os.Stdout, os.Stderr)
	return app.execute(ctx, args)
}
