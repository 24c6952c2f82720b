package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) cleanupCommand() *cobra.Command {
	var (
		p                 cleanupParams
		olderThan, within string
		keepLabels        []string
	)
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Delete old snapshots by age and retention rules",
		Long: `Delete snapshots by age and by retention rules applied per environment, like
restic's forget:

  --older-than D    candidates are snapshots older than D (30d, 2w, 12h)
  --keep-last N     keep the N newest snapshots of each environment
  --keep-hourly N   keep the newest snapshot of each of the last N hours that have one
  --keep-daily N    ... days;  --keep-weekly N ... weeks;  --keep-monthly N ... months;
                    --keep-yearly N ... years  (N = -1: every such period)
  --keep-within D   keep every snapshot within D of the environment's newest one
  --keep-label k=v  keep every snapshot with this label (or "k": with that key)

A snapshot is deleted when no rule keeps it; --older-than D keeps the snapshots
younger than D. With no rule at all, cleanup deletes snapshots older
than 30 days, as the original ptest did. The report says, for each snapshot,
whether it was kept or removed and why. Freed data goes at the next gc (or at
once with --gc).`,
		Example: examples(
			"ptest-snap cleanup --older-than 30d --dry-run",
			"ptest-snap cleanup --keep-last 3 --keep-daily 7 --keep-weekly 4",
			"ptest-snap cleanup --older-than 7d --keep-label pin=yes --gc",
		),
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if olderThan != "" {
				if p.OlderThan, err = parseAge(olderThan); err != nil {
					return usagef(cmd, "--older-than: %v", err)
				}
			}
			if within != "" {
				if p.KeepWithin, err = parseAge(within); err != nil {
					return usagef(cmd, "--keep-within: %v", err)
				}
			}
			for _, l := range keepLabels {
				if k, _, _ := strings.Cut(l, "="); k == "" {
					return usagef(cmd, "--keep-label %q: expected key=value or key", l)
				}
			}
			p.KeepLabels = keepLabels
			for name, n := range map[string]int{"keep-last": p.KeepLast, "keep-hourly": p.KeepHourly,
				"keep-daily": p.KeepDaily, "keep-weekly": p.KeepWeekly, "keep-monthly": p.KeepMonthly,
				"keep-yearly": p.KeepYearly} {
				if n < -1 {
					return usagef(cmd, "--%s must be 0 or more (or -1 for unlimited)", name)
				}
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			// Only --gc reports progress (deleting is quick).
			prog := &progress{}
			if p.GC && !p.DryRun {
				prog = a.newPhaseProgress("cleanup")
			}
			res, err := svc.Cleanup(cmd.Context(), p, prog)
			prog.done()
			if err != nil {
				return err
			}
			return a.printCleanup(a.shortener(cmd.Context(), svc), res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&olderThan, "older-than", "", "delete only snapshots older than `D` (default 30d when no rule is given)")
	f.IntVar(&p.KeepLast, "keep-last", 0, "keep the `N` newest snapshots per environment")
	f.IntVar(&p.KeepHourly, "keep-hourly", 0, "keep the newest snapshot of each of the last `N` hours")
	f.IntVar(&p.KeepDaily, "keep-daily", 0, "keep the newest snapshot of each of the last `N` days")
	f.IntVar(&p.KeepWeekly, "keep-weekly", 0, "keep the newest snapshot of each of the last `N` weeks")
	f.IntVar(&p.KeepMonthly, "keep-monthly", 0, "keep the newest snapshot of each of the last `N` months")
	f.IntVar(&p.KeepYearly, "keep-yearly", 0, "keep the newest snapshot of each of the last `N` years")
	f.StringVar(&within, "keep-within", "", "keep every snapshot within `D` of its environment's newest")
	f.StringArrayVar(&keepLabels, "keep-label", nil, "keep every snapshot with label `k=v`, or with key k at all (repeatable)")
	f.StringVar(&p.Env, "env", "", "apply only to this environment")
	f.StringVar(&p.Engine, "engine", "", "apply only to snapshots of this engine")
	f.BoolVarP(&p.DryRun, "dry-run", "n", false, "show what would be deleted, delete nothing")
	f.BoolVar(&p.GC, "gc", false, "run gc afterwards, so the space comes back at once")
	return cmd
}

func (a *app) printCleanup(short shortener, r *cleanupJSON) error {
	if a.jsonOut {
		if r.Kept == nil {
			r.Kept = []cleanupDecision{}
		}
		if r.Removed == nil {
			r.Removed = []cleanupDecision{}
		}
		return writeJSON(a.stdout, r)
	}
	if a.quiet {
		for _, d := range r.Removed {
			fmt.Fprintln(a.stdout, d.ID)
		}
		return nil
	}
	now := time.Now()
	verb := "remove"
	if r.DryRun {
		verb = "would remove"
	}
	t := newTable(a.stdout, "ACTION", "ID", "NAME", "ENV", "CREATED", "WHY")
	for _, d := range r.Kept {
		t.row("keep", short.short(d.ID), orDash(d.Name), d.EnvID, humanAge(now, d.CreatedAt), strings.Join(d.Reasons, "; "))
	}
	for _, d := range r.Removed {
		t.row(verb, short.short(d.ID), orDash(d.Name), d.EnvID, humanAge(now, d.CreatedAt), strings.Join(d.Reasons, "; "))
	}
	if err := t.flush(); err != nil {
		return err
	}
	summary := "removed"
	if r.DryRun {
		summary = "would remove"
	}
	fmt.Fprintf(a.stdout, "%d kept, %s %d\n", len(r.Kept), summary, len(r.Removed))
	if r.GC != nil {
		fmt.Fprintf(a.stdout, "gc: deleted %s chunks (%s); disk %s -> %s\n", humanCount(r.GC.ChunksDeleted),
			humanBytes(r.GC.BytesReclaimed), humanBytes(r.GC.DiskBefore), humanBytes(r.GC.DiskAfter))
	}
	return nil
}
