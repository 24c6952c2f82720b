package pluginapi

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// BinaryPrefix starts the file name of every engine binary:
// ptest-snap-engine-<name>.
const BinaryPrefix = "ptest-snap-engine-"

// PluginPathEnv is the environment variable listing directories
// (colon-separated) searched for engines before any other.
const PluginPathEnv = "PTEST_SNAP_PLUGIN_PATH"

// Where an engine was found.
const (
	SourcePluginPath = "plugin-path" // a directory of $PTEST_SNAP_PLUGIN_PATH
	SourceExecDir    = "exec-dir"    // next to the ptest-snap binary
	SourceDataDir    = "data-dir"    // the user's data directory
)

// DiscoverOptions say where to look for engines. The zero value looks where
// the user expects: $PTEST_SNAP_PLUGIN_PATH, the directory of the running
// binary, $XDG_DATA_HOME/ptest-snap/engines (or
// ~/.local/share/ptest-snap/engines).
type DiscoverOptions struct {
	// PluginPath overrides $PTEST_SNAP_PLUGIN_PATH when non-nil.
	PluginPath *string
	// ExecDir overrides the running binary's directory when non-nil ("" to
	// skip it).
	ExecDir *string
	// DataDir overrides the user's engines directory when non-nil ("" to
	// skip it).
	DataDir *string
}

// Found is an engine binary discovery found.
type Found struct {
	// Name is the engine's name: the file name without BinaryPrefix.
	Name string
	// Path is the executable's absolute path.
	Path string
	// Source says which search directory it came from (SourcePluginPath,
	// SourceExecDir, SourceDataDir).
	Source string
}

// Spec returns what Host.Launch needs to run f, with the checksum the user
// pinned (nil for none).
func (f Found) Spec(sha256 []byte) Spec {
	return Spec{Name: f.Name, Path: f.Path, SHA256: sha256}
}

// SearchDirs returns the directories Discover searches, in order, each with
// its source.
func SearchDirs(opts DiscoverOptions) []Found {
	var dirs []Found
	pluginPath := os.Getenv(PluginPathEnv)
	if opts.PluginPath != nil {
		pluginPath = *opts.PluginPath
	}
	for _, d := range filepath.SplitList(pluginPath) {
		if d != "" {
			dirs = append(dirs, Found{Path: d, Source: SourcePluginPath})
		}
	}
	execDir := ""
	if opts.ExecDir != nil {
		execDir = *opts.ExecDir
	} else if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		execDir = filepath.Dir(exe)
	}
	if execDir != "" {
		dirs = append(dirs, Found{Path: execDir, Source: SourceExecDir})
	}
	dataDir := ""
	if opts.DataDir != nil {
		dataDir = *opts.DataDir
	} else if xdg := os.Getenv("XDG_DATA_HOME"); xdg != "" && filepath.IsAbs(xdg) {
		dataDir = filepath.Join(xdg, "ptest-snap", "engines")
	} else if home, err := os.UserHomeDir(); err == nil {
		dataDir = filepath.Join(home, ".local", "share", "ptest-snap", "engines")
	}
	if dataDir != "" {
		dirs = append(dirs, Found{Path: dataDir, Source: SourceDataDir})
	}
	for i := range dirs {
		if abs, err := filepath.Abs(dirs[i].Path); err == nil {
			dirs[i].Path = abs
		}
	}
	return dirs
}

// Discover lists the engines in the search directories (see SearchDirs),
// sorted by name. A name found in more than one place: the first directory
// wins, and each other is reported in warnings, as are unreadable
// directories and files named like engines that are not executable. A
// directory that does not exist is not worth a warning.
func Discover(opts DiscoverOptions) (found []Found, warnings []string) {
	byName := map[string]Found{}
	seenDir := map[string]bool{}
	for _, dir := range SearchDirs(opts) {
		if seenDir[dir.Path] {
			continue
		}
		seenDir[dir.Path] = true
		ents, err := os.ReadDir(dir.Path)
		if err != nil {
			if !os.IsNotExist(err) {
				warnings = append(warnings, fmt.Sprintf("engine directory %s: %v", dir.Path, err))
			}
			continue
		}
		for _, de := range ents {
			name, ok := strings.CutPrefix(de.Name(), BinaryPrefix)
			if !ok || name == "" {
				continue
			}
			path := filepath.Join(dir.Path, de.Name())
			st, err := os.Stat(path) // follows symlinks
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("engine %q at %s: %v", name, path, err))
				continue
			}
			if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
				warnings = append(warnings, fmt.Sprintf("engine %q at %s: not an executable file; ignored", name, path))
				continue
			}
			if first, dup := byName[name]; dup {
				warnings = append(warnings, fmt.Sprintf("engine %q at %s is shadowed by %s, found first; ignored", name, path, first.Path))
				continue
			}
			byName[name] = Found{Name: name, Path: path, Source: dir.Source}
		}
	}
	for _, f := range byName {
		found = append(found, f)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Name < found[j].Name })
	return found, warnings
}

// Lookup returns the engine named name as Discover would find it, or an
// error wrapping ErrEngineNotFound that lists where it looked.
func Lookup(opts DiscoverOptions, name string) (Found, []string, error) {
	found, warnings := Discover(opts)
	for _, f := range found {
		if f.Name == name {
			return f, warnings, nil
		}
	}
	var where []string
	for _, d := range SearchDirs(opts) {
		where = append(where, d.Path)
	}
	return Found{}, warnings, fmt.Errorf("%w: no %s%s in %s (set %s to add a directory)",
		ErrEngineNotFound, BinaryPrefix, name, strings.Join(where, ", "), PluginPathEnv)
}
