// Package gctune runs a process with its garbage collector off until its
// heap reaches a limit, for ptest-snap's short-lived processes: a second
// create of venv-full allocates ~75 MB in the CLI and ~50 MB in the engine,
// and collecting along the way (ten collections in the CLI, eight in the
// engine) freed little and cost CPU both processes needed for the capture.
package gctune

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
)

// userSet reports whether the user set GOGC or GOMEMLIMIT, whose settings
// the runtime applied and a process must keep.
func userSet() bool {
	_, gogc := os.LookupEnv("GOGC")
	_, limit := os.LookupEnv("GOMEMLIMIT")
	return gogc || limit
}

// Quiet turns the collector off and sets the memory limit to heap, so that
// the first collection comes when the process's memory reaches heap; at
// that collection (from the finalizer goroutine, shortly after it) after
// is called to put the settings the process runs with from then on. The
// returned restore puts back the settings Quiet found; after is not called
// once restore ran. If the user set GOGC or GOMEMLIMIT, Quiet changes
// nothing and restore is a no-op: the user's settings win.
func Quiet(heap int64, after func()) (restore func()) {
	if userSet() {
		return func() {}
	}
	return quiet(heap, after, nil)
}

// quiet is Quiet calling done, if set, at the first collection whether
// after ran or not (for tests).
func quiet(heap int64, after, done func()) (restore func()) {
	var mu sync.Mutex
	active := true
	prevPercent := debug.SetGCPercent(-1)
	prevLimit := debug.SetMemoryLimit(heap)
	onFirstGC(func() {
		mu.Lock()
		if active {
			active = false
			after()
		}
		mu.Unlock()
		if done != nil {
			done()
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		active = false
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	}
}

// Defaults are the runtime's settings without GOGC or GOMEMLIMIT: what
// Quiet's after puts for a process that wants them back.
func Defaults() {
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
}

// sentinel is an object only onFirstGC points to; its pointer field keeps
// it out of the tiny allocator, whose blocks may never be finalized.
type sentinel struct {
	_ *byte
	_ [8]byte
}

// onFirstGC calls f on the finalizer goroutine after the next collection.
func onFirstGC(f func()) {
	runtime.SetFinalizer(new(sentinel), func(*sentinel) { f() })
}
