package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pypj/ptest-snap/core"
	"github.com/pypj/ptest-snap/pluginapi"
)

// newTarget is the path of a restore to a new target as it was before the
// restore: absent (with the ancestors that were absent too) or an empty
// directory. If the restore fails, it is put back so (issue #7: a new
// target is complete or gone). The engine removes what it wrote itself
// when its call is cancelled or fails (fstree.Applier); this covers the
// engine that cannot: one the plugin host killed (Ctrl-C stops engines at
// once), that crashed, or that hung.
type newTarget struct {
	path string
	// created is the topmost directory of path that did not exist ("" if
	// path was an empty directory, which is emptied and kept).
	created string
}

// watchNewTarget records target before a restore to it; nil when the
// restore is in place, has no explicit target, or the target is something
// the restore itself will refuse or an engine resolves otherwise (a
// non-empty directory, a file, a symlink).
func watchNewTarget(p restoreParams) *newTarget {
	if p.InPlace || p.Replace || p.Target == "" {
		return nil
	}
	abs, err := filepath.Abs(p.Target)
	if err != nil {
		return nil
	}
	fi, err := os.Lstat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		top := abs
		for parent := filepath.Dir(top); parent != top; parent = filepath.Dir(parent) {
			if _, err := os.Lstat(parent); !errors.Is(err, fs.ErrNotExist) {
				break
			}
			top = parent
		}
		return &newTarget{path: abs, created: top}
	case err == nil && fi.IsDir():
		f, err := os.Open(abs)
		if err != nil {
			return nil
		}
		defer f.Close()
		if names, _ := f.Readdirnames(1); len(names) > 0 {
			return nil
		}
		return &newTarget{path: abs}
	}
	return nil
}

// undo puts the target back as it was after the restore failed with
// restoreErr. It reports whether anything was removed.
func (t *newTarget) undo(restoreErr error) (bool, error) {
	if t == nil || errors.Is(restoreErr, core.ErrTargetNotEmpty) || errors.Is(restoreErr, pluginapi.ErrTargetExists) {
		// The target was not ours: someone else put something there.
		return false, nil
	}
	if t.created == "" {
		ents, err := os.ReadDir(t.path)
		if err != nil {
			return false, nil
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(t.path, e.Name())); err != nil {
				return true, fmt.Errorf("remove the partial target %s: %w", t.path, err)
			}
		}
		return len(ents) > 0, nil
	}
	if _, err := os.Lstat(t.created); err != nil {
		return false, nil
	}
	// os.RemoveAll never follows a symlink, so nothing outside is touched.
	if err := os.RemoveAll(t.path); err != nil {
		return true, fmt.Errorf("remove the partial target %s: %w", t.path, err)
	}
	for dir := filepath.Dir(t.path); len(dir) >= len(t.created); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil || dir == t.created {
			break
		}
	}
	return true, nil
}
