package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) createCommand() *cobra.Command {
	var (
		p                           createParams
		labels, env, options, ports []string
	)
	cmd := &cobra.Command{
		Use:   "create --engine NAME TARGET",
		Short: "Snapshot an environment",
		Long: `Create a snapshot of TARGET with the engine NAME (see 'ptest-snap engines').

TARGET is what the engine captures: a directory for 'dir', a virtualenv's
directory for 'virtualenv', a container's name or ID for 'docker'.

The parent snapshot (--parent auto, the default) is the newest snapshot of the
same environment: files unchanged since then are not read again, and only new
content is stored. The command prints the new snapshot's ID and what it cost:
files, logical bytes, new bytes stored, and the time taken. With --quiet it
prints the ID alone.

Ctrl-C stops the capture; nothing partial is kept.`,
		Example: examples(
			"ptest-snap create --engine dir ./fixtures",
			"ptest-snap create --engine virtualenv --name clean --label suite=api ./venv",
			"ptest-snap create --engine docker --env DB_URL=postgres://db --port 8080 my-container",
			"ptest-snap create --engine dir --exclude '*.log' --exclude tmp ./data",
			"ID=$(ptest-snap create -q --engine virtualenv ./venv)",
		),
		Args: argsBetween(1, 1, "one TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Target = args[0]
			var err error
			if p.Labels, err = parseKV(cmd, "label", labels); err != nil {
				return err
			}
			if p.Env, err = parseKV(cmd, "env", env); err != nil {
				return err
			}
			if p.Options, err = parseKV(cmd, "option", options); err != nil {
				return err
			}
			for _, s := range ports {
				for _, f := range strings.Split(s, ",") {
					n, err := strconv.Atoi(strings.TrimSpace(f))
					if err != nil || n < 1 || n > 65535 {
						return usagef(cmd, "--port %q: expected a port number 1-65535", f)
					}
					p.Ports = append(p.Ports, n)
				}
			}
			if p.Engine == "" {
				return usagef(cmd, "create needs --engine NAME (one of the engines 'ptest-snap engines' lists)")
			}
			a.prelaunch = p.Engine
			defer tuneGCForCreate()()
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			prog := a.newProgress("capturing", -1, true)
			snap, err := svc.Create(cmd.Context(), p, prog)
			prog.done()
			if err != nil {
				return err
			}
			return a.printCreated(snap)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&p.Engine, "engine", "e", "", "engine that captures TARGET: dir, virtualenv, docker, or any installed engine (required)")
	f.StringVar(&p.Name, "name", "", "a name for the snapshot, unique in the store; usable wherever an ID is")
	f.StringVar(&p.ID, "id", "", "use this ID instead of a generated one")
	f.StringArrayVarP(&labels, "label", "l", nil, "label `key=value` (repeatable)")
	f.StringArrayVar(&env, "env", nil, "environment variable `K=V` recorded with the snapshot (repeatable)")
	f.StringArrayVar(&ports, "port", nil, "allocated port recorded with the snapshot (repeatable, or comma-separated)")
	f.StringVar(&p.Parent, "parent", "auto", "parent snapshot for incremental capture: auto, none, or an ID or name")
	f.StringArrayVar(&p.Excludes, "exclude", nil, "skip paths matching `GLOB` (repeatable; matched against the relative path and the base name, path.Match syntax; a matched directory is skipped whole, and an in-place restore leaves excluded paths alone)")
	f.StringArrayVarP(&options, "option", "o", nil, "engine-specific option `k=v` (repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("engine", a.completeEngines)
	return cmd
}

// printCreated prints what a create made and cost.
func (a *app) printCreated(s *snapshotJSON) error {
	switch {
	case a.jsonOut:
		return writeJSON(a.stdout, s)
	case a.quiet:
		_, err := fmt.Fprintln(a.stdout, s.ID)
		return err
	}
	w := a.stdout
	fmt.Fprintf(w, "created snapshot %s", s.ID)
	if s.Name != "" {
		fmt.Fprintf(w, " (%s)", s.Name)
	}
	fmt.Fprintln(w)
	writeCost(w, s)
	return nil
}

// writeCost prints a snapshot's creation figures as aligned lines.
func writeCost(w io.Writer, s *snapshotJSON) {
	t := newTable(w)
	t.row("  engine", s.Engine+" "+s.EngineVersion)
	t.row("  target", s.Target)
	t.row("  parent", orDash(s.Parent))
	t.row("  files", fmt.Sprintf("%s files, %s dirs, %s", humanCount(s.Stats.Files), humanCount(s.Stats.Dirs), humanBytes(s.Stats.LogicalBytes)))
	t.row("  stored", fmt.Sprintf("%s new, %s on disk", humanBytes(s.Stats.NewBytes), humanBytes(s.Stats.StoredBytes)))
	t.row("  took", humanDuration(time.Duration(s.Stats.DurationSeconds*float64(time.Second))))
	_ = t.flush()
}
