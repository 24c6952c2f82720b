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
)

func main() {
	os.Exit(run(os.Args[1:]))
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
