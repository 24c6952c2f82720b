package core

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// Sentinel errors. Callers branch with errors.Is. Where the store has the
// same meaning, the value is the store's own sentinel, so an error the store
// returns matches the core's name for it too.
var (
	// ErrNotFound: no snapshot (or chunk, or engine resource) by that
	// reference. Same value as store.ErrNotFound.
	ErrNotFound = store.ErrNotFound
	// ErrCorrupt: stored data does not match its hash. Same value as
	// store.ErrCorrupt.
	ErrCorrupt = store.ErrCorrupt
	// ErrBusy: another process holds the store. Same value as
	// store.ErrBusy.
	ErrBusy = store.ErrBusy
	// ErrNewerFormat: a record written by a newer ptest-snap. Same value as
	// store.ErrNewerFormat.
	ErrNewerFormat = store.ErrNewerFormat
	// ErrClosed: the Manager (or its store) is closed. Same value as
	// store.ErrClosed.
	ErrClosed = store.ErrClosed

	// ErrAmbiguous: a reference matches more than one snapshot. The error
	// is an *AmbiguousError listing the candidates.
	ErrAmbiguous = errors.New("ambiguous snapshot reference")
	// ErrNameTaken: another snapshot already has this name.
	ErrNameTaken = errors.New("snapshot name already taken")
	// ErrIDTaken: an explicit ID given to Create is already used.
	ErrIDTaken = errors.New("snapshot ID already taken")
	// ErrInvalidID: an explicit ID, name or label is not well-formed.
	ErrInvalidID = errors.New("invalid snapshot ID or name")
	// ErrTargetNotEmpty: a restore to a new target found it existing and
	// not empty, and neither in-place nor replace was asked for.
	ErrTargetNotEmpty = errors.New("restore target exists and is not empty")
	// ErrEngineNotFound: no engine by that name.
	ErrEngineNotFound = errors.New("engine not found")
	// ErrEngine: the engine failed (crashed, refused, sent bad data).
	ErrEngine = errors.New("engine failed")
	// ErrUnsupported: the engine cannot do what was asked (for example an
	// in-place restore). Same value as pluginapi.ErrUnsupported.
	ErrUnsupported = pluginapi.ErrUnsupported
	// ErrInvalidOptions: the options given to an operation are inconsistent.
	ErrInvalidOptions = errors.New("invalid options")
)

// AmbiguousError is returned when a reference matches several snapshots.
// It matches ErrAmbiguous with errors.Is.
type AmbiguousError struct {
	Ref        string
	Candidates []string // matching IDs, sorted
}

// Error lists the candidates so the user can pick one.
func (e *AmbiguousError) Error() string {
	const max = 10
	c := e.Candidates
	more := ""
	if len(c) > max {
		more = fmt.Sprintf(" and %d more", len(c)-max)
		c = c[:max]
	}
	return fmt.Sprintf("%v: %q matches %d snapshots: %s%s", ErrAmbiguous, e.Ref, len(e.Candidates), strings.Join(c, ", "), more)
}

// Is makes errors.Is(err, ErrAmbiguous) true.
func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }
