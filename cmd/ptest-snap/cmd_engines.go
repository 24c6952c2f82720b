package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// engineJSON is one engine binary found by discovery.
type engineJSON struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Source says where it was found: plugin-path, exec-dir or data-dir.
	Source          string   `json:"source"`
	Version         string   `json:"version,omitempty"`
	ProtocolVersion int      `json:"protocol_version,omitempty"`
	Capabilities    []string `json:"capabilities"`
	SHA256          string   `json:"sha256"`
	// Error says why the engine could not be asked for its Info.
	Error string `json:"error,omitempty"`
}

// enginesJSON is the engines command's document.
type enginesJSON struct {
	SearchPath []string     `json:"search_path"`
	Engines    []engineJSON `json:"engines"`
	// Warnings report duplicates (a name found again later in the search
	// path is shadowed by the first) and files that cannot be used.
	Warnings []string `json:"warnings"`
}

func (a *app) enginesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "engines",
		Short: "List the engines found, where, their versions and checksums",
		Long: `List every engine program (ptest-snap-engine-<name>) found, in search order:
the directories of $PTEST_SNAP_PLUGIN_PATH (separated by ':'), the directory of
the ptest-snap binary, then $XDG_DATA_HOME/ptest-snap/engines. Each engine is
started to ask its version and capabilities, and its SHA-256 is shown so it can
be pinned. When a name is found twice, the first wins and the others are
reported as shadowed.`,
		Example: examples(
			"ptest-snap engines",
			"PTEST_SNAP_PLUGIN_PATH=$PWD/my-engines ptest-snap engines --json",
		),
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := discoverEngines(cmd.Context(), true)
			if err != nil {
				return err
			}
			if res.Engines == nil {
				res.Engines = []engineJSON{}
			}
			if res.Warnings == nil {
				res.Warnings = []string{}
			}
			if a.jsonOut {
				return writeJSON(a.stdout, res)
			}
			if a.quiet {
				for _, e := range res.Engines {
					fmt.Fprintln(a.stdout, e.Name)
				}
				return nil
			}
			if len(res.Engines) == 0 {
				fmt.Fprintf(a.stdout, "no engines found in %s\n", strings.Join(res.SearchPath, ":"))
				return nil
			}
			t := newTable(a.stdout, "NAME", "VERSION", "CAPABILITIES", "PATH", "SHA256")
			for _, e := range res.Engines {
				name := e.Name
				caps := strings.Join(e.Capabilities, ",")
				if e.Error != "" {
					caps = "error: " + cleanMessage(e.Error)
				}
				sum := e.SHA256
				if len(sum) > 16 {
					sum = sum[:16]
				}
				t.row(name, orDash(e.Version), orDash(caps), e.Path, sum)
			}
			if err := t.flush(); err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(a.stdout, "warning: %s\n", w)
			}
			return nil
		},
	}
}

// completeEngines completes --engine with the names discovery finds.
func (a *app) completeEngines(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	res, err := discoverEngines(cmd.Context(), false)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, e := range res.Engines {
		if strings.HasPrefix(e.Name, toComplete) {
			names = append(names, e.Name)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeSnapshots completes snapshot arguments with names and IDs.
func (a *app) completeSnapshots(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	a.lockTimeout = 0
	svc, err := a.service(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	snaps, err := svc.List(cmd.Context(), listFilter{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, s := range snaps {
		if s.Name != "" && strings.HasPrefix(s.Name, toComplete) {
			out = append(out, s.Name+"\t"+s.Engine+" "+s.Target)
		}
		if strings.HasPrefix(s.ID, toComplete) {
			out = append(out, s.ID+"\t"+s.Engine+" "+s.Target)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
