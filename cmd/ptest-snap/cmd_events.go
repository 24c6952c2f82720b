package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/pypj/ptest-snap/core"
)

func (a *app) eventsCommand() *cobra.Command {
	var (
		follow bool
		since  string
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the store's event log (creates, restores, deletes)",
		Long: `Show the store's append-only event log: snapshot_creating, snapshot_created,
snapshot_restoring, snapshot_restored, snapshot_deleting, snapshot_deleted and
the *_failed variants, each with its time, snapshot, environment, engine and
figures. --follow keeps printing new events as other ptest-snap processes
write them, until Ctrl-C; it does not lock the store.

With --json each event is one JSON line (the log's own records), so the output
can be piped into jq or a log shipper.`,
		Example: examples(
			"ptest-snap events --since 1h",
			"ptest-snap events --follow --json | jq -c 'select(.type == \"snapshot_created\")'",
		),
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var from time.Time
			if since != "" {
				t, err := parseWhen(since, time.Now())
				if err != nil {
					return usagef(cmd, "--since: %v", err)
				}
				from = t
			}
			dir, err := a.resolveStoreDir()
			if err != nil {
				return err
			}
			// Like every command, events creates the store's directory on
			// first use (so --follow can wait for the first event).
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("cannot create the store directory: %w", err)
			}
			var tbl *table
			if !a.jsonOut {
				tbl = newTable(a.stdout)
			}
			header := false
			n := 0
			opts := core.EventsOptions{Since: from, Follow: follow}
			err = core.ReadEvents(cmd.Context(), dir, opts, func(e core.Event) error {
				n++
				if a.jsonOut {
					return writeJSONLine(a.stdout, e)
				}
				if !header && !a.quiet {
					tbl.row("TIME", "EVENT", "SNAPSHOT", "ENGINE", "WHAT", "DETAILS")
					header = true
				}
				tbl.row(formatEvent(e)...)
				if follow {
					return tbl.flush()
				}
				return nil
			})
			if tbl != nil {
				_ = tbl.flush()
			}
			if follow && cmd.Context().Err() != nil {
				return nil // Ctrl-C is how --follow ends
			}
			if err != nil {
				return err
			}
			if n == 0 && !a.jsonOut && !a.quiet {
				fmt.Fprintln(a.stdout, "no events")
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	cmd.Flags().StringVar(&since, "since", "", "only events at or after `T` (a date, RFC 3339, or an age like 2h)")
	return cmd
}

// formatEvent renders one event as table cells.
func formatEvent(e core.Event) []string {
	id := e.SnapshotID
	if len(id) > minShortID+4 {
		id = id[:minShortID+4]
	}
	what := e.Target
	if e.Name != "" {
		what = e.Name + " " + what
	}
	figures := ""
	if e.Bytes > 0 {
		figures = humanBytes(e.Bytes)
	}
	if e.Duration > 0 {
		figures += " in " + humanDuration(e.Duration)
	}
	if e.Error != "" {
		figures = "error: " + cleanMessage(e.Error)
	}
	return []string{e.Time.Local().Format("2006-01-02 15:04:05"), string(e.Type), orDash(id), orDash(e.Engine), orDash(what), figures}
}
