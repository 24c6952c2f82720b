// Package fstree turns a directory tree into a stream of pluginapi entries
// (Capture) and a stream of entries back into a directory tree (Applier),
// safely and fast. Every file-based engine (directory, virtualenv, Docker
// volumes) is built on it, so an engine only decides what to capture and
// where to restore.
//
// Capture walks one tree depth-first in pre-order, siblings sorted by byte
// order, never following symlinks; small files are read ahead by a bounded
// pool of goroutines while the CaptureWriter is still called from one
// goroutine, in order.
//
// Applier writes one stream into a target directory, either a new one or in
// place over an existing tree. Every path is checked with
// pluginapi.ValidatePath and every directory is opened beneath the target
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so neither a hostile
// stream nor a symlink planted in the target can make it write outside the
// target. File bodies are written by a bounded worker pool.
package fstree
