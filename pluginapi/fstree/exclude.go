package fstree

import (
	"fmt"
	"path"
)

// checkExcludes reports the first malformed pattern of excludes.
func checkExcludes(excludes []string) error {
	for _, p := range excludes {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("exclude pattern %q: %w", p, err)
		}
	}
	return nil
}

// matchExcludes reports whether an entry at rel (slash-separated, relative
// to the root) with base name name matches one of excludes: each pattern
// is path.Match'ed against both. Capture skips what it matches (a matched
// directory with everything beneath it), and an in-place Applier keeps it,
// so a snapshot taken with excludes restores without touching them.
func matchExcludes(excludes []string, rel, name string) bool {
	for _, p := range excludes {
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// MatchExcludes reports whether the path rel (slash-separated, relative to
// the root) matches one of excludes as Capture and the Applier match it
// (against the path and against its base name). An engine that walks a
// target itself skips what it matches, with everything beneath it.
func MatchExcludes(excludes []string, rel string) bool {
	return matchExcludes(excludes, rel, path.Base(rel))
}
