package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) restoreCommand() *cobra.Command {
	var (
		p       restoreParams
		options []string
	)
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT [--target PATH | --in-place]",
		Short: "Restore a snapshot, in place or to a new target",
		Long: `Restore SNAPSHOT (an ID, a unique prefix of one, or a name).

--in-place resets the environment the snapshot was taken from: only files that
differ are rewritten, files the snapshot lacks are deleted, modes and times are
put back. --target PATH restores to a new place instead (a virtualenv is
relocated: its pyvenv.cfg, scripts and activate files point at the new path).
For a container, --name gives the new container's name and --replace stops
and replaces an existing container of that name.

Ctrl-C stops the restore: an in-place target is left as it was or as the
snapshot has it, file by file; a new target is removed.`,
		Example: examples(
			"ptest-snap restore clean --in-place",
			"ptest-snap restore 01JD3K9Q --target /tmp/venv-copy",
			"ptest-snap restore web-ok --name web-restored",
			"ptest-snap restore web-ok --name web --replace",
		),
		Args:              argsBetween(1, 1, "one SNAPSHOT"),
		ValidArgsFunction: a.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Ref = args[0]
			if p.InPlace && p.Target != "" {
				return usagef(cmd, "--in-place and --target exclude each other: --in-place restores over the snapshot's own target")
			}
			var err error
			if p.Options, err = parseKV(cmd, "option", options); err != nil {
				return err
			}
			defer tuneGCForRestore()()
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			a.restoreInPlace = p.InPlace || p.Replace
			target := watchNewTarget(p)
			prog := a.newProgress("restoring", -1, true)
			res, err := svc.Restore(cmd.Context(), p, prog)
			prog.done()
			if err != nil {
				if _, uerr := target.undo(err); uerr != nil {
					err = fmt.Errorf("%w; %w", err, uerr)
				}
				return err
			}
			return a.printRestored(res)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&p.Target, "target", "t", "", "restore to `PATH` (or container) instead of the snapshot's own target")
	f.BoolVar(&p.InPlace, "in-place", false, "reset the snapshot's own target, rewriting only what differs")
	f.StringVar(&p.Container, "name", "", "name of the container to create (docker)")
	f.BoolVar(&p.Replace, "replace", false, "replace an existing environment of the same name (docker: stop and remove it)")
	f.StringArrayVarP(&options, "option", "o", nil, "engine-specific option `k=v` (repeatable)")
	return cmd
}

func (a *app) printRestored(r *restoreJSON) error {
	switch {
	case a.jsonOut:
		return writeJSON(a.stdout, r)
	case a.quiet:
		_, err := fmt.Fprintln(a.stdout, r.Target)
		return err
	}
	w := a.stdout
	how := "to"
	if r.InPlace {
		how = "in place at"
	}
	fmt.Fprintf(w, "restored snapshot %s %s %s\n", r.SnapshotID, how, r.Target)
	t := newTable(w)
	t.row("  written", fmt.Sprintf("%s files, %s", humanCount(r.FilesWritten), humanBytes(r.BytesWritten)))
	if r.InPlace {
		t.row("  unchanged", humanCount(r.FilesUnchanged)+" files")
		if r.FilesDeleted > 0 {
			t.row("  deleted", humanCount(r.FilesDeleted)+" entries")
		}
	}
	t.row("  took", humanDuration(time.Duration(r.DurationSeconds*float64(time.Second))))
	_ = t.flush()
	for _, m := range r.Messages {
		fmt.Fprintf(w, "note: %s\n", m)
	}
	return nil
}
