package store

import "errors"

// Sentinel errors; every error the store returns wraps one of these where it
// applies, so callers can branch with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrCorrupt     = errors.New("corrupt data")
	ErrExists      = errors.New("already exists")
	ErrBusy        = errors.New("store is in use by another process")
	ErrNewerFormat = errors.New("written by a newer version of ptest-snap")
	ErrClosed      = errors.New("store is closed")
)
