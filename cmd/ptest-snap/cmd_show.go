package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) showCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show SNAPSHOT",
		Short: "Show one snapshot: record, engine metadata, figures",
		Long: `Show everything the store knows of SNAPSHOT (an ID, a unique prefix, or a
name): its record, the engine's metadata (for a virtualenv the Python version
and installed packages, for a container its image and config), and its size
figures.`,
		Example: examples(
			"ptest-snap show clean",
			"ptest-snap show 01JD3K9Q --json | jq .metadata",
		),
		Args:              argsBetween(1, 1, "one SNAPSHOT"),
		ValidArgsFunction: a.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			s, err := svc.Show(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSON(a.stdout, s)
			}
			if a.quiet {
				_, err := fmt.Fprintln(a.stdout, s.ID)
				return err
			}
			return a.printShow(s)
		},
	}
}

func (a *app) printShow(s *snapshotJSON) error {
	w := a.stdout
	t := newTable(w)
	t.row("id", s.ID)
	t.row("name", orDash(s.Name))
	t.row("engine", s.Engine+" "+s.EngineVersion)
	t.row("env", s.EnvID)
	t.row("target", s.Target)
	t.row("parent", orDash(s.Parent))
	t.row("created", s.CreatedAt.Local().Format("2006-01-02 15:04:05 MST"))
	t.row("labels", orDash(formatLabels(s.Labels)))
	if len(s.Env) > 0 {
		t.row("env vars", formatLabels(s.Env))
	}
	if len(s.Ports) > 0 {
		t.row("ports", fmt.Sprint(s.Ports))
	}
	for _, st := range s.Streams {
		t.row("stream", st.Name+" "+st.Root)
	}
	t.row("files", fmt.Sprintf("%s files, %s dirs, %s", humanCount(s.Stats.Files), humanCount(s.Stats.Dirs), humanBytes(s.Stats.LogicalBytes)))
	t.row("new at creation", fmt.Sprintf("%s (%s on disk)", humanBytes(s.Stats.NewBytes), humanBytes(s.Stats.StoredBytes)))
	if s.Size != nil {
		t.row("held by it alone", humanBytes(s.Size.ExclusiveBytes))
	}
	t.row("took", humanDuration(time.Duration(s.Stats.DurationSeconds*float64(time.Second))))
	if err := t.flush(); err != nil {
		return err
	}
	if len(s.Metadata) > 0 {
		fmt.Fprintf(w, "\nmetadata (%s, version %d):\n", s.Engine, s.MetadataVersion)
		writeMetadata(w, s.Metadata)
	}
	return nil
}

// writeMetadata prints the engine's metadata: packages as a sorted list when
// there is a package map, the rest as indented JSON.
func writeMetadata(w interface{ Write([]byte) (int, error) }, raw json.RawMessage) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		var buf bytes.Buffer
		if json.Indent(&buf, raw, "  ", "  ") == nil {
			fmt.Fprintf(w, "  %s\n", buf.String())
		}
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t := newTable(w)
	var packages map[string]string
	for _, k := range keys {
		if pk := packagesOf(k, m[k]); pk != nil {
			packages = pk
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, m[k]); err != nil {
			continue
		}
		v := buf.String()
		var str string
		if json.Unmarshal(m[k], &str) == nil {
			v = str
		}
		t.row("  "+k, v)
	}
	_ = t.flush()
	if len(packages) > 0 {
		fmt.Fprintf(w, "\npackages (%d):\n", len(packages))
		names := make([]string, 0, len(packages))
		for n := range packages {
			names = append(names, n)
		}
		sort.Strings(names)
		pt := newTable(w)
		for _, n := range names {
			pt.row("  "+n, packages[n])
		}
		_ = pt.flush()
	}
}

// packagesOf returns the value as a name → version map when key names a
// package list ("packages", "installed_packages").
func packagesOf(key string, v json.RawMessage) map[string]string {
	if key != "packages" && key != "installed_packages" && key != "distributions" {
		return nil
	}
	var m map[string]string
	if json.Unmarshal(v, &m) == nil {
		return m
	}
	return nil
}
