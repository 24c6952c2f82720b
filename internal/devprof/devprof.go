// Package devprof writes CPU profiles of ptest-snap's processes for the
// developers: with PTEST_SNAP_CPUPROFILE set to a directory, the CLI and
// every engine plugin each write cpu-<program>-<pid>.pprof there, so one
// create or restore can be profiled on both sides of the plugin boundary.
// With PTEST_SNAP_TRACE set to a directory they each write an execution
// trace, trace-<program>-<pid>.out (go tool trace): a profile says where
// the CPU went, a trace says when — whether both cores are busy all the
// way, and what runs alone at the start and the end of a command.
package devprof

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
)

// EnvVar names the directory the profiles go to; unset, nothing is profiled.
const EnvVar = "PTEST_SNAP_CPUPROFILE"

// TraceEnvVar names the directory the execution traces go to; unset,
// nothing is traced.
const TraceEnvVar = "PTEST_SNAP_TRACE"

// Start begins a CPU profile and an execution trace of this process when
// EnvVar and TraceEnvVar are set and returns the function that ends them (a
// no-op otherwise). A profile that cannot be started is reported on
// stderr, never fatal: profiling must not change what the program does.
func Start(program string) (stop func()) {
	stopProfile := record(EnvVar, "cpu-%s-%d.pprof", program, pprof.StartCPUProfile, pprof.StopCPUProfile)
	stopTrace := record(TraceEnvVar, "trace-%s-%d.out", program, trace.Start, trace.Stop)
	return func() {
		stopTrace()
		stopProfile()
	}
}

// Enabled reports whether this process profiles or traces itself: a
// profiled plugin must be let finish its files rather than be killed.
func Enabled() bool {
	return os.Getenv(EnvVar) != "" || os.Getenv(TraceEnvVar) != ""
}

// record starts a recording (begin, ended by end) into the file named by
// format (with the program's name and pid) in the directory that the
// environment variable env names, if set.
func record(env, format, program string, begin func(io.Writer) error, end func()) (stop func()) {
	dir := os.Getenv(env)
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf(format, program, os.Getpid())))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", env, err)
		return func() {}
	}
	if err := begin(f); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", env, err)
		f.Close()
		return func() {}
	}
	return func() {
		end()
		f.Close()
	}
}
