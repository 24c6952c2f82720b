package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) diffCommand() *cobra.Command {
	var packagesOnly bool
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Compare two snapshots: paths and packages",
		Long: `Show what changed from snapshot A to snapshot B: paths added (+), removed (-)
and changed (~, with the size before and after); and, when both snapshots
carry an engine's package list (virtualenv), the packages added, removed, and
whose version changed. --packages shows the package diff alone.`,
		Example: examples(
			"ptest-snap diff clean after-tests",
			"ptest-snap diff clean after-tests --packages",
			"ptest-snap diff 01JD3K9Q 01JD3M2A --json | jq '.changed[].path'",
		),
		Args:              argsBetween(2, 2, "two snapshots, A and B"),
		ValidArgsFunction: a.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			d, err := svc.Diff(cmd.Context(), args[0], args[1], packagesOnly)
			if err != nil {
				return err
			}
			if a.jsonOut {
				if d.Added == nil {
					d.Added = []diffEntryJSON{}
				}
				if d.Removed == nil {
					d.Removed = []diffEntryJSON{}
				}
				if d.Changed == nil {
					d.Changed = []diffEntryJSON{}
				}
				return writeJSON(a.stdout, d)
			}
			return a.printDiff(d, packagesOnly)
		},
	}
	cmd.Flags().BoolVar(&packagesOnly, "packages", false, "show only the package-level diff")
	return cmd
}

func (a *app) printDiff(d *diffJSON, packagesOnly bool) error {
	w := a.stdout
	if !packagesOnly {
		t := newTable(w)
		for _, e := range d.Added {
			t.row("+", diffPath(e), sizeOf(e.SizeAfter))
		}
		for _, e := range d.Removed {
			t.row("-", diffPath(e), sizeOf(e.SizeBefore))
		}
		for _, e := range d.Changed {
			sizes := sizeOf(e.SizeBefore) + " -> " + sizeOf(e.SizeAfter)
			if *e.SizeBefore == *e.SizeAfter {
				sizes = sizeOf(e.SizeAfter)
			}
			t.row("~", diffPath(e), sizes, strings.Join(e.What, ","))
		}
		if err := t.flush(); err != nil {
			return err
		}
		if !a.quiet {
			fmt.Fprintf(w, "%d added, %d removed, %d changed\n", len(d.Added), len(d.Removed), len(d.Changed))
		}
	}
	if d.Packages != nil {
		p := d.Packages
		if !packagesOnly && !a.quiet {
			fmt.Fprintln(w, "\npackages:")
		}
		t := newTable(w)
		for _, n := range sortedKeys(p.Added) {
			t.row("+", n, p.Added[n])
		}
		for _, n := range sortedKeys(p.Removed) {
			t.row("-", n, p.Removed[n])
		}
		changed := make([]string, 0, len(p.Changed))
		for n := range p.Changed {
			changed = append(changed, n)
		}
		sort.Strings(changed)
		for _, n := range changed {
			t.row("~", n, p.Changed[n].From+" -> "+p.Changed[n].To)
		}
		if err := t.flush(); err != nil {
			return err
		}
		if !a.quiet {
			fmt.Fprintf(w, "%d packages added, %d removed, %d changed\n", len(p.Added), len(p.Removed), len(p.Changed))
		}
	} else if packagesOnly && !a.quiet {
		fmt.Fprintln(w, "no package lists to compare (the engine records none)")
	}
	return nil
}

func diffPath(e diffEntryJSON) string {
	p := e.Path
	if e.Type == "dir" {
		p += "/"
	}
	if e.Stream != "" && e.Stream != "rootfs" {
		p = e.Stream + ":" + p
	}
	return p
}

func sizeOf(n *int64) string {
	if n == nil {
		return ""
	}
	return humanBytes(*n)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
