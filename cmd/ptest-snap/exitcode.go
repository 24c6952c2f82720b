package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// Exit codes. They are part of the CLI's contract (documented in the root
// command's help): scripts branch on them, so they never change meaning.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitCorrupt     = 4
	exitBusy        = 5
	exitQuota       = 6
	exitEngine      = 7
	exitInterrupted = 130
)

// errorClass is one row of the error → exit code table: the sentinels that
// select it and the hint printed after the error.
type errorClass struct {
	code      int
	sentinels []error
	hint      string
}

// errorClasses is checked in order; the first class with a sentinel the
// error wraps wins. Sentinels from core are added by classifyCore.
var errorClasses = []errorClass{
	{exitBusy, []error{store.ErrBusy}, "another ptest-snap is using this store; wait for it, raise --lock-timeout, or use another --store"},
	{exitCorrupt, []error{store.ErrCorrupt}, "run 'ptest-snap verify' to list every damaged snapshot; delete those and run 'ptest-snap gc'"},
	{exitNotFound, []error{pluginapi.ErrTargetNotFound}, "check that the TARGET path (or container) exists"},
	{exitNotFound, []error{pluginapi.ErrEngineNotFound}, "run 'ptest-snap engines' to see the engines found and where they were looked for"},
	{exitNotFound, []error{store.ErrNotFound}, "'ptest-snap list' shows the snapshots; use an ID, a unique prefix of one, or a name"},
	{exitEngine, []error{pluginapi.ErrInvalidTarget}, "TARGET is not what this engine captures; see 'ptest-snap create --help'"},
	{exitEngine, []error{pluginapi.ErrPermissionDenied}, "the engine was refused access to what it needs (the Docker daemon's socket, a file) as this user; the message says what to change"},
	{exitEngine, []error{pluginapi.ErrUnavailable}, "what the engine needs is not reachable (the Docker daemon, a base interpreter); run with --verbose for details"},
	{exitEngine, []error{pluginapi.ErrUnsupported}, "this engine cannot do that; 'ptest-snap engines' lists each engine's capabilities"},
	{exitEngine, []error{pluginapi.ErrChecksumMismatch}, "the engine program is not the one pinned: reinstall it, or update --pin-engine / $PTEST_SNAP_ENGINE_PINS"},
	{exitEngine, []error{pluginapi.ErrPluginExited, pluginapi.ErrProtocol}, "the engine program failed; run with --verbose to see its log"},
	{exitFailure, []error{pluginapi.ErrTargetExists}, "restore with --in-place to reset it, --replace to replace it, or --target to restore elsewhere"},
	{exitFailure, []error{pluginapi.ErrUnsafePath}, "the snapshot or archive holds a path outside its target; it was refused and nothing was written outside the target"},
	{exitFailure, []error{store.ErrNewerFormat}, "upgrade ptest-snap to read it"},
	{exitFailure, []error{store.ErrExists}, "choose another --name, or import with --rename"},
}

// classify returns the exit code and hint for err.
func classify(err error) (int, string) {
	var u usageError
	if errors.As(err, &u) {
		hint := "see 'ptest-snap --help'"
		if u.cmd != nil {
			hint = fmt.Sprintf("see '%s --help'", u.cmd.CommandPath())
		}
		return exitUsage, hint
	}
	var ie interruptedError
	if errors.As(err, &ie) || errors.Is(err, context.Canceled) {
		return exitInterrupted, "nothing partial was stored; run the command again to start over"
	}
	if errors.Is(err, errVerifyProblems) {
		return exitCorrupt, "delete the damaged snapshots (or import them again from an export) and run 'ptest-snap gc'"
	}
	// The core's archive errors first: a damaged archive may also carry a
	// store "not found" from a lookup, and it is the damage that matters.
	if code, hint, ok := classifyArchive(err); ok {
		return code, hint
	}
	// Then the specific sentinels of the store and the engine protocol, so
	// that "target not found" wins over the core's generic "engine failed".
	for _, c := range errorClasses {
		for _, s := range c.sentinels {
			if errors.Is(err, s) {
				return c.code, c.hint
			}
		}
	}
	if code, hint, ok := classifyCore(err); ok {
		return code, hint
	}
	return exitFailure, ""
}

// reportError prints err (cleaned for people) and its hint on stderr and
// returns the exit code. With --json the error also goes to stdout as
// {"error": {"message", "code", "hint"}} so a script reading stdout sees it.
func (a *app) reportError(err error) int {
	code, hint := classify(err)
	msg := cleanMessage(err.Error())
	if code == exitInterrupted {
		msg = "interrupted (" + msg + ")"
		switch a.command {
		case "restore":
			hint = "the store is unchanged and the new target was removed: run the restore again"
			if a.restoreInPlace {
				hint = "the store is unchanged; each file of the target is as it was or as the snapshot has it: run the restore again to finish"
			}
		case "import":
			hint = "nothing was imported; the store is as it was"
		case "export":
			hint = "the archive was not completed; no partial file was left behind"
		}
	}
	fmt.Fprintf(a.stderr, "ptest-snap: %s\n", msg)
	if hint != "" && !a.quiet {
		fmt.Fprintf(a.stderr, "hint: %s\n", hint)
	}
	// verify has already printed its document (with the problems).
	if a.jsonOut && code != exitUsage && !errors.Is(err, errVerifyProblems) {
		_ = writeJSON(a.stdout, errorJSON{Error: errorBody{Message: msg, Code: code, Hint: hint}})
	}
	return code
}

// errorJSON is the document printed on stdout with --json when a command
// fails.
type errorJSON struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Message string `json:"message"`
	Code    int    `json:"exit_code"`
	Hint    string `json:"hint,omitempty"`
}

var (
	// grpcStatus is the prefix gRPC puts on a status error's text.
	grpcStatus = regexp.MustCompile(`rpc error: code = \w+ desc = `)
	// goroutineDump guards against a panic text reaching the user.
	goroutineDump = regexp.MustCompile(`(?s)\n?goroutine \d+ \[.*`)
)

// cleanMessage removes transport noise (gRPC status prefixes, stack
// dumps) from an error's text; the message itself comes from the layer that
// knows what went wrong.
func cleanMessage(s string) string {
	s = grpcStatus.ReplaceAllString(s, "")
	s = goroutineDump.ReplaceAllString(s, "")
	s = strings.TrimSpace(s)
	if s == "" {
		s = "failed"
	}
	return s
}
