package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pypj/ptest-snap/store"
)

// errVerifyProblems makes verify exit non-zero when it found problems; the
// problems themselves are already printed, so the message only counts them.
var errVerifyProblems = errors.New("verify found problems")

func (a *app) verifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verify [SNAPSHOT...]",
		Short: "Check that every byte of snapshots reads back intact",
		Long: `Re-read and re-hash every tree and chunk of the given snapshots (all when none
is given). Each missing or corrupt piece is printed on its own line with the
snapshot and path that need it:

  <snapshot-id> <stream>:<path> corrupt|missing chunk <hash>: <message>

The exit code is 0 when everything is intact, 4 (corrupt data) when anything
is missing or damaged.`,
		Example: examples(
			"ptest-snap verify",
			"ptest-snap verify clean after-tests",
			"ptest-snap verify --json | jq '.problems[]'",
		),
		ValidArgsFunction: a.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			prog := a.newProgress("verifying", -1, true)
			res, err := svc.Verify(cmd.Context(), args, prog)
			prog.done()
			if err != nil {
				return err
			}
			res.OK = len(res.Problems) == 0
			if res.Problems == nil {
				res.Problems = []problemJSON{}
			}
			if a.jsonOut {
				if err := writeJSON(a.stdout, res); err != nil {
					return err
				}
			} else {
				for _, p := range res.Problems {
					fmt.Fprintln(a.stdout, problemLine(p))
				}
				if !a.quiet {
					fmt.Fprintf(a.stdout, "checked %d snapshots: %s trees, %s chunks, %s; %d problems\n",
						res.Snapshots, humanCount(res.Trees), humanCount(res.Chunks), humanBytes(res.Bytes), len(res.Problems))
				}
			}
			if !res.OK {
				return corruptError{fmt.Errorf("%w: %d missing or corrupt pieces", errVerifyProblems, len(res.Problems))}
			}
			return nil
		},
	}
}

// problemLine formats one verify problem on one line.
func problemLine(p problemJSON) string {
	where := p.Path
	if p.Stream != "" {
		where = p.Stream + ":" + p.Path
	}
	if where == "" {
		where = "-"
	}
	s := fmt.Sprintf("%s %s %s", p.SnapshotID, where, p.Kind)
	if p.Chunk != "" {
		s += " chunk " + p.Chunk
	}
	if p.Message != "" {
		s += ": " + p.Message
	}
	return s
}

// corruptError marks an error as corrupt data (exit code 4) when it wraps no
// store sentinel of its own.
type corruptError struct{ err error }

func (e corruptError) Error() string   { return e.err.Error() }
func (e corruptError) Unwrap() []error { return []error{e.err, store.ErrCorrupt} }
