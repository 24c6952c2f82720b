package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

func writeJSON(path string, res *Results) error {
	b, err := json.MarshalIndent(sanitize(res), "", "  ")
	if err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// sanitize replaces NaN (no data) by zero with N = 0, which JSON can carry.
func sanitize(res *Results) *Results {
	fix := func(s *Stat) {
		if s.N == 0 {
			*s = Stat{}
		}
	}
	out := *res
	out.Figures = append([]Figure(nil), res.Figures...)
	for i := range out.Figures {
		f := &out.Figures[i]
		fix(&f.WallS)
		fix(&f.CPUS)
		fix(&f.RSSMB)
		fix(&f.MB)
	}
	out.Ratios = append([]Ratio(nil), res.Ratios...)
	for i := range out.Ratios {
		fix(&out.Ratios[i].Wall)
	}
	return &out
}

func fmtStat(s Stat, unit string, prec int) string {
	if s.N == 0 || math.IsNaN(s.Median) {
		return "—"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmt.Sprintf("%.*f%s", prec, s.Median, unit)
	}
	return fmt.Sprintf("%.*f%s (%.*f–%.*f)", prec, s.Median, unit, prec, s.Min, prec, s.Max)
}

// writeMarkdown prints the figures, the ratios against the targets, the
// growth series and the scaling run as markdown tables.
func writeMarkdown(w io.Writer, res *Results) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## ptest-snap benchmark\n\ndataset `%s`, engine `%s`, median of %d runs (min–max), %s, %s cores\n\n",
		res.Dataset, res.Engine, res.Runs, res.Machine["cpu"], res.Machine["cores"])
	b.WriteString("| scenario | tool | wall | CPU | peak RSS | stored |\n|---|---|---|---|---|---|\n")
	for _, f := range res.Figures {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", cell(f.Scenario), cell(f.Tool),
			fmtStat(f.WallS, " s", 2), fmtStat(f.CPUS, " s", 2), fmtStat(f.RSSMB, " MB", 0), fmtStat(f.MB, " MB", 1))
	}
	b.WriteString("\n| scenario | ptest-snap / peer | wall ratio | target | met |\n|---|---|---|---|---|\n")
	for _, r := range res.Ratios {
		peer := r.Peer
		if r.Stored {
			peer += " (ratio of stored bytes)"
		}
		tgt, met := "", ""
		if r.Target > 0 {
			tgt = fmt.Sprintf("≤ %.2f", r.Target)
			if r.Met != nil {
				met = map[bool]string{true: "yes", false: "**no**"}[*r.Met]
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(r.Scenario), cell(peer), fmtStat(r.Wall, "", 3), tgt, met)
	}
	if len(res.Growth) > 0 {
		b.WriteString("\n| growth: tool | snapshots | total stored | median step adds | median step time |\n|---|---|---|---|---|\n")
		for _, tool := range sortedKeys(res.Growth) {
			ss := res.Growth[tool]
			var total int64
			var adds, times []float64
			for i, s := range ss {
				total += s.Bytes
				if i > 0 {
					adds = append(adds, float64(s.Bytes)/1e6)
					times = append(times, s.Wall.Seconds())
				}
			}
			fmt.Fprintf(&b, "| %s | %d | %.1f MB | %s | %s |\n", cell(tool), len(ss), float64(total)/1e6,
				fmtStat(summarize(adds), " MB", 2), fmtStat(summarize(times), " s", 2))
		}
	}
	if len(res.Scaling) > 0 {
		b.WriteString("\n| scaling | files | logical | create | restore | store | tar\\|zstd -1 | archive |\n|---|---|---|---|---|---|---|---|\n")
		for _, p := range res.Scaling {
			fmt.Fprintf(&b, "| %d× | %d | %.1f MB | %.2f s | %.2f s | %.1f MB | %.2f s | %.1f MB |\n",
				p.Scale, p.Files, p.MB, p.CreateS, p.RestoreS, p.StoreMB, p.TarS, p.ArchiveMB)
		}
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(&b, "\nskipped: %s", s)
	}
	fmt.Fprintf(&b, "\n\n(%.0f s in all; peak RSS figures include the harness's own %s MB, inherited at exec)\n", res.Seconds, res.Machine["harness_rss_hwm_mb"])
	_, err := io.WriteString(w, b.String())
	return err
}

// cell escapes a markdown table cell: tool names hold pipes ("tar | zstd").
func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && (toolOrder(keys[j]) < toolOrder(keys[j-1]) || toolOrder(keys[j]) == toolOrder(keys[j-1]) && keys[j] < keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
