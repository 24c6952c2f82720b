package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) deleteCommand() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:     "delete SNAPSHOT...",
		Aliases: []string{"rm"},
		Short:   "Delete snapshots",
		Long: `Delete one or more snapshots (IDs, unique prefixes, or names). Every name is
resolved first: if one is unknown or ambiguous nothing is deleted. Their data
is freed by the next 'ptest-snap gc'. --dry-run shows what would go.`,
		Example: examples(
			"ptest-snap delete after-tests",
			"ptest-snap delete 01JD3K9Q 01JD3M2A --dry-run",
			"ptest-snap list -q --label tmp=1 | xargs ptest-snap delete && ptest-snap gc",
		),
		Args:              argsBetween(1, -1, "at least one SNAPSHOT"),
		ValidArgsFunction: a.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			res, err := svc.Delete(cmd.Context(), args, dryRun)
			if err != nil {
				return err
			}
			if a.jsonOut {
				if res.Deleted == nil {
					res.Deleted = []snapshotJSON{}
				}
				return writeJSON(a.stdout, res)
			}
			verb := "deleted"
			if res.DryRun {
				verb = "would delete"
			}
			for _, s := range res.Deleted {
				if a.quiet {
					fmt.Fprintln(a.stdout, s.ID)
					continue
				}
				fmt.Fprintf(a.stdout, "%s %s\n", verb, describeSnapshot(&s))
			}
			if !a.quiet && !res.DryRun && len(res.Deleted) > 0 {
				fmt.Fprintln(a.stdout, "run 'ptest-snap gc' to reclaim their space")
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "show what would be deleted, delete nothing")
	return cmd
}

// describeSnapshot is a one-line description: "ID (name) engine target, age".
func describeSnapshot(s *snapshotJSON) string {
	var b strings.Builder
	b.WriteString(s.ID)
	if s.Name != "" {
		fmt.Fprintf(&b, " (%s)", s.Name)
	}
	fmt.Fprintf(&b, " %s %s, %s", s.Engine, s.Target, humanAge(time.Now(), s.CreatedAt))
	return b.String()
}
