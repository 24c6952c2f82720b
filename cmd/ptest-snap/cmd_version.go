package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/pypj/ptest-snap/pluginapi"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module's build info.
var version = ""

// versionJSON is the version command's document.
type versionJSON struct {
	Version         string `json:"version"`
	Commit          string `json:"commit,omitempty"`
	GoVersion       string `json:"go_version"`
	Platform        string `json:"platform"`
	ProtocolVersion int    `json:"engine_protocol_version"`
}

func buildVersion() versionJSON {
	v := versionJSON{
		Version:         version,
		GoVersion:       runtime.Version(),
		Platform:        runtime.GOOS + "/" + runtime.GOARCH,
		ProtocolVersion: pluginapi.ProtocolVersion,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				if s.Value == "true" && v.Commit != "" {
					v.Commit += "-dirty"
				}
			}
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	return v
}

func versionString() string {
	v := buildVersion()
	s := v.Version
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " (" + c + ")"
	}
	return s
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print ptest-snap's version",
		Example: examples("ptest-snap version", "ptest-snap version --json"),
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion()
			if a.jsonOut {
				return writeJSON(a.stdout, v)
			}
			_, err := fmt.Fprintf(a.stdout, "ptest-snap %s\n%s %s, engine protocol %d\n",
				versionString(), v.GoVersion, v.Platform, v.ProtocolVersion)
			return err
		},
	}
}

func (a *app) completionCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print the completion script for bash, zsh or fish. Snapshot arguments complete
with names and IDs from the store, --engine with the engines found.`,
		Example: examples(
			"source <(ptest-snap completion bash)",
			"ptest-snap completion zsh > \"${fpath[1]}/_ptest-snap\"",
			"ptest-snap completion fish > ~/.config/fish/completions/ptest-snap.fish",
		),
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      argsBetween(1, 1, "one shell: bash, zsh or fish"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(a.stdout, true)
			case "zsh":
				return root.GenZshCompletion(a.stdout)
			case "fish":
				return root.GenFishCompletion(a.stdout, true)
			}
			return usagef(cmd, "unknown shell %q: choose bash, zsh or fish", args[0])
		},
	}
}
