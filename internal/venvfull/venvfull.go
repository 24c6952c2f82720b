// Package venvfull locates venv-full, the shared benchmark dataset
// (`python3 -m venv` plus the base interpreter's site-packages; see the
// foundation issue and bench/), for the benchmarks of every package.
package venvfull

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvVar names the dataset's path when it is not at Default.
const EnvVar = "PTEST_SNAP_VENV_FULL"

// Default is where the project's machines keep the dataset.
const Default = "/work/data/venv-full"

// Path returns $PTEST_SNAP_VENV_FULL, or Default.
func Path() string {
	if p := os.Getenv(EnvVar); p != "" {
		return filepath.Clean(p)
	}
	return Default
}

// Dir returns Path, and skips tb when no venv is there: benchmarks that need
// the dataset do not fail on a machine without it.
func Dir(tb testing.TB) string {
	tb.Helper()
	p := Path()
	if _, err := os.Stat(filepath.Join(p, "pyvenv.cfg")); err != nil {
		tb.Skipf("dataset venv-full absent at %s (set %s): %v", p, EnvVar, err)
	}
	return p
}
