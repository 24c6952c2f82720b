package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) statsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show the store's size, dedup and compression figures",
		Long: `Show the store's figures: snapshots, chunks, the logical size of every
snapshot added up, the unique bytes actually kept (after dedup), what they take
compressed and on disk, the dedup and compression ratios, and how much a
'ptest-snap gc' would reclaim.`,
		Example: examples("ptest-snap stats", "ptest-snap stats --json | jq .dedup_ratio"),
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			s, err := svc.Stats(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSON(a.stdout, s)
			}
			t := newTable(a.stdout)
			t.row("store", s.StoreDir)
			t.row("snapshots", fmt.Sprintf("%s in %s environments", humanCount(s.Snapshots), humanCount(s.Envs)))
			t.row("chunks", humanCount(s.Chunks))
			t.row("logical size", humanBytes(s.LogicalBytes))
			t.row("unique data", humanBytes(s.UniqueBytes))
			t.row("stored (compressed)", humanBytes(s.StoredBytes))
			t.row("on disk", humanBytes(s.DiskBytes))
			t.row("dedup ratio", fmt.Sprintf("%.2fx", s.DedupRatio))
			t.row("compression ratio", fmt.Sprintf("%.2fx", s.CompressionRatio))
			t.row("reclaimable by gc", fmt.Sprintf("%s in %s chunks", humanBytes(s.ReclaimableBytes), humanCount(s.ReclaimableChunks)))
			return t.flush()
		},
	}
}
