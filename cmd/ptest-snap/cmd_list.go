package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) listCommand() *cobra.Command {
	var (
		f            listFilter
		labels       []string
		since, until string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List snapshots, newest first",
		Long: `List the store's snapshots, newest first, with their size figures:
SIZE is the files' logical size, ONLY the bytes no other snapshot shares (what
deleting it and running gc would free, before compression).

Filters combine (all must match). --since and --until take a date
(2026-11-28), a date and time ("2026-11-28 09:00"), RFC 3339, or an age (2h, 7d).
With --quiet only the full IDs are printed, one a line.`,
		Example: examples(
			"ptest-snap list",
			"ptest-snap list --engine virtualenv --since 7d",
			"ptest-snap list --label suite=api --json",
			"ptest-snap list -q | xargs ptest-snap verify",
		),
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if f.Labels, err = parseKV(cmd, "label", labels); err != nil {
				return err
			}
			now := time.Now()
			if since != "" {
				if f.Since, err = parseWhen(since, now); err != nil {
					return usagef(cmd, "--since: %v", err)
				}
			}
			if until != "" {
				if f.Until, err = parseWhen(until, now); err != nil {
					return usagef(cmd, "--until: %v", err)
				}
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			f.Sizes = !a.quiet
			snaps, err := svc.List(cmd.Context(), f)
			if err != nil {
				return err
			}
			return a.printList(cmd.Context(), svc, snaps)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Env, "env", "", "only snapshots of this environment (its env ID or target)")
	fl.StringVar(&f.Engine, "engine", "", "only snapshots made by this engine")
	fl.StringVar(&f.Name, "name", "", "only the snapshot with this name")
	fl.StringArrayVarP(&labels, "label", "l", nil, "only snapshots with label `k=v` (repeatable: all must match)")
	fl.StringVar(&since, "since", "", "only snapshots created at or after `T`")
	fl.StringVar(&until, "until", "", "only snapshots created before `T`")
	return cmd
}

func (a *app) printList(ctx context.Context, svc service, snaps []snapshotJSON) error {
	if a.jsonOut {
		if snaps == nil {
			snaps = []snapshotJSON{}
		}
		return writeJSON(a.stdout, listJSON{Snapshots: snaps})
	}
	if a.quiet {
		for _, s := range snaps {
			if _, err := a.stdout.Write([]byte(s.ID + "\n")); err != nil {
				return err
			}
		}
		return nil
	}
	if len(snaps) == 0 {
		_, err := a.stdout.Write([]byte("no snapshots\n"))
		return err
	}
	short := a.shortener(ctx, svc)
	now := time.Now()
	t := newTable(a.stdout, "ID", "NAME", "ENGINE", "TARGET", "CREATED", "FILES", "SIZE", "ONLY", "LABELS")
	for _, s := range snaps {
		only := "-"
		size := humanBytes(s.Stats.LogicalBytes)
		if s.Size != nil {
			if s.Size.ExclusiveBytes >= 0 {
				only = humanBytes(s.Size.ExclusiveBytes)
			}
			size = humanBytes(s.Size.LogicalBytes)
		}
		t.row(short.short(s.ID), orDash(s.Name), s.Engine, s.Target, humanAge(now, s.CreatedAt),
			humanCount(s.Stats.Files), size, only, orDash(formatLabels(s.Labels)))
	}
	return t.flush()
}

// shortener returns the short forms of every ID in the store; if the IDs
// cannot be read it falls back to cutting IDs to the minimum length.
func (a *app) shortener(ctx context.Context, svc service) shortener {
	ids, err := svc.AllIDs(ctx)
	if err != nil {
		return shortener{}
	}
	return shortIDs(ids)
}
