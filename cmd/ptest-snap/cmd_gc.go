package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) gcCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Reclaim the space of deleted snapshots",
		Long: `Delete every chunk no snapshot references any more (after delete or cleanup)
and compact the store so the disk space comes back. Safe to run at any time: a
snapshot being written meanwhile keeps its chunks.`,
		Example: examples("ptest-snap gc", "ptest-snap cleanup --older-than 30d && ptest-snap gc"),
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			prog := a.newPhaseProgress("gc")
			res, err := svc.GC(cmd.Context(), prog)
			prog.done()
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSON(a.stdout, res)
			}
			if a.quiet {
				return nil
			}
			fmt.Fprintf(a.stdout, "deleted %s chunks (%s), kept %s; disk %s -> %s in %s\n",
				humanCount(res.ChunksDeleted), humanBytes(res.BytesReclaimed), humanCount(res.ChunksKept),
				humanBytes(res.DiskBefore), humanBytes(res.DiskAfter),
				humanDuration(time.Duration(res.DurationSeconds*float64(time.Second))))
			return nil
		},
	}
}
