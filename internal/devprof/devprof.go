// Package devprof writes CPU profiles of ptest-snap's processes for the
// developers: with PTEST_SNAP_CPUPROFILE set to a directory, the CLI and
// every engine plugin each write cpu-<program>-<pid>.pprof there, so one
// create or restore can be profiled on both sides of the plugin boundary.
package devprof

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// EnvVar names the directory the profiles go to; unset, nothing is profiled.
const EnvVar = "PTEST_SNAP_CPUPROFILE"

// Start begins a CPU profile of this process when EnvVar is set and
// returns the function that ends it (a no-op otherwise). A profile that
// cannot be started is reported on stderr, never fatal: profiling must not
// change what the program does.
func Start(program string) (stop func()) {
	dir := os.Getenv(EnvVar)
	if dir == "" {
		return func() {}
	}
	path := filepath.Join(dir, fmt.Sprintf("cpu-%s-%d.pprof", program, os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", EnvVar, err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", EnvVar, err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
