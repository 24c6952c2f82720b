package virtualenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/pluginapi/fstree"
)

// Restore writes a captured venv back. It first checks that the base
// interpreter the snapshot needs is here with the same major.minor version
// (or the one option python=/path names), before writing anything. In place
// it rewrites only the entries the host did not mark Unchanged and deletes
// what the snapshot lacks (a sparse stream names both, and nothing else); to another path it relocates the venv (see
// relocation). The result's Target is the venv's path. A restore to a new
// path that fails or is cancelled removes what it wrote (fstree.Applier).
func (*Engine) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	m, err := decodeMetadata(req.Metadata)
	if err != nil {
		return nil, err
	}
	for _, s := range req.Streams {
		if s != StreamName {
			return nil, fmt.Errorf("%w: virtualenv snapshot has an unknown stream %q", pluginapi.ErrUnsupported, s)
		}
	}
	target := req.Target
	if target == "" {
		target = m.VenvPath
	}
	if target, err = filepath.Abs(target); err != nil {
		return nil, fmt.Errorf("restore virtualenv: target %s: %w", req.Target, err)
	}
	newPrefix := target
	if real, err := filepath.EvalSymlinks(target); err == nil && real == m.VenvPath {
		newPrefix = m.VenvPath // the same venv reached through a symlink
	}
	exe, home, version, err := resolveInterpreter(ctx, m, req.Options)
	if err != nil {
		return nil, fmt.Errorf("restore virtualenv %s: %w", target, err)
	}
	reloc := relocation{
		oldPrefix: m.VenvPath, newPrefix: newPrefix,
		oldHome: m.BaseInterpreter.Home, newHome: home,
		oldExe: m.BaseInterpreter.Path, newExe: exe,
		newVersion: version,
	}
	// Excludes: what the snapshot left out is not deleted from the target.
	opts := fstree.ApplyOptions{InPlace: req.InPlace || req.Replace, Excludes: req.Excludes, RecordWritten: true}
	// Sparse: the host sends only what changes and every deletion.
	opts.Sparse = req.InPlace && req.Sparse
	// In place, a directory the host found with the snapshot's mtime has
	// no extra entries (pip and Python add and remove files, which moves
	// it), so only changed directories are listed for extras; the option
	// full-scan=true lists every directory instead.
	opts.TrustUnchangedDirs = req.InPlace && !isTrue(req.Options["full-scan"])
	if reloc.active() {
		opts.Rewrite = func(e *pluginapi.Entry) (func([]byte) ([]byte, error), bool) {
			rel := e.Path
			if !reloc.wantsFile(rel, e.Size) {
				return nil, false
			}
			return func(data []byte) ([]byte, error) {
				out, _ := reloc.rewriteFile(rel, data)
				return out, nil
			}, true
		}
	}
	a, err := fstree.NewApplier(target, opts)
	if err != nil {
		return nil, fmt.Errorf("restore virtualenv %s: %w", target, err)
	}
	// On any failure or cancellation (the host cancelling the call), a new
	// target is removed again; after a successful Finish, Close does nothing.
	defer a.Close()
	fixups, sent, err := applyStream(ctx, a, r, reloc, opts.Sparse)
	if err != nil {
		return nil, fmt.Errorf("restore virtualenv %s: %w", target, err)
	}
	if err := a.Finish(ctx); err != nil {
		return nil, fmt.Errorf("restore virtualenv %s: %w", target, err)
	}
	if sent != nil {
		// A sparse stream did not name what was kept: find on disk what
		// the relocation changes.
		if fixups, err = keptFixups(ctx, target, reloc, sent, req.Excludes); err != nil {
			return nil, fmt.Errorf("restore virtualenv %s: %w", target, err)
		}
	}
	if err := fixUnchanged(target, reloc, fixups); err != nil {
		return nil, fmt.Errorf("restore virtualenv %s: %w", target, err)
	}
	res := &pluginapi.RestoreResult{Target: newPrefix}
	if w := a.Written(); w != nil {
		res.Written = pluginapi.ParentIndex{StreamName: w}
	}
	if reloc.swaps() {
		res.Messages = append(res.Messages, fmt.Sprintf("the venv now runs on %s instead of %s", exe, m.BaseInterpreter.Path))
	}
	return res, nil
}

// applyStream feeds every entry of r to a, relocating symlink targets on
// the way. It returns the Unchanged entries the relocation would have
// changed (possible only in place), which fixUnchanged rewrites on disk;
// for a sparse stream that relocates, which names only some of them, it
// returns instead the paths it wrote (sent), for keptFixups.
func applyStream(ctx context.Context, a *fstree.Applier, r pluginapi.RestoreReader, reloc relocation, sparse bool) (fixups []pluginapi.Entry, sent map[string]bool, err error) {
	if sparse && reloc.active() {
		sent = map[string]bool{}
	}
	for {
		stream, e, body, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return fixups, sent, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if stream != StreamName {
			return nil, nil, fmt.Errorf("%w: entry %q of unknown stream %q", pluginapi.ErrUnsupported, e.Path, stream)
		}
		if sent != nil && !e.Unchanged && !e.Delete {
			sent[e.Path] = true
		}
		if reloc.active() && !e.Delete {
			switch {
			case e.Type == pluginapi.TypeSymlink && e.Unchanged:
				if reloc.rewriteSymlink(e.Path, e.LinkTarget) != e.LinkTarget {
					fixups = append(fixups, *e)
				}
			case e.Type == pluginapi.TypeSymlink:
				e.LinkTarget = reloc.rewriteSymlink(e.Path, e.LinkTarget)
			case e.Type == pluginapi.TypeFile && e.Unchanged && e.Path == "pyvenv.cfg" && reloc.swaps():
				fixups = append(fixups, *e)
			}
		}
		if err := a.Apply(ctx, e, body); err != nil {
			return nil, nil, err
		}
	}
}

// keptFixups finds, after a sparse in-place restore that relocates, what
// fixUnchanged must relocate among the entries the stream did not write
// (sent holds those it wrote): symlinks whose relocated target differs,
// and pyvenv.cfg when the interpreter is swapped. It walks target without
// following symlinks and skips what excludes match; only this rare case
// (python= or a moved venv, restored in place) pays for the walk.
func keptFixups(ctx context.Context, target string, reloc relocation, sent map[string]bool, excludes []string) ([]pluginapi.Entry, error) {
	// The Applier restored where a symlinked target points.
	root, err := filepath.EvalSymlinks(target)
	if err != nil {
		return nil, fmt.Errorf("find kept entries to relocate: %w", err)
	}
	var fixups []pluginapi.Entry
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if fstree.MatchExcludes(excludes, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if sent[rel] {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			lt, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if reloc.rewriteSymlink(rel, lt) != lt {
				fixups = append(fixups, pluginapi.Entry{Path: rel, Type: pluginapi.TypeSymlink, LinkTarget: lt})
			}
		case rel == "pyvenv.cfg" && d.Type().IsRegular() && reloc.swaps():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			fixups = append(fixups, pluginapi.Entry{Path: rel, Type: pluginapi.TypeFile, Mode: uint32(fi.Mode().Perm())})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find kept entries to relocate: %w", err)
	}
	return fixups, nil
}

// fixUnchanged relocates, on disk, entries the host kept as they were
// (pyvenv.cfg and interpreter symlinks when option python= swaps the
// interpreter of an in-place restore). The paths come from the stream
// and were checked by the Applier; each parent is checked to be a real
// directory beneath target before anything is replaced.
func fixUnchanged(target string, reloc relocation, fixups []pluginapi.Entry) error {
	for _, e := range fixups {
		if err := pluginapi.ValidatePath(e.Path); err != nil {
			return err
		}
		if err := checkRealDirs(target, path.Dir(e.Path)); err != nil {
			return err
		}
		full := filepath.Join(target, filepath.FromSlash(e.Path))
		tmp := filepath.Join(filepath.Dir(full), ".ptest-snap-fix-"+filepath.Base(full))
		switch e.Type {
		case pluginapi.TypeSymlink:
			os.Remove(tmp)
			if err := os.Symlink(reloc.rewriteSymlink(e.Path, e.LinkTarget), tmp); err != nil {
				return fmt.Errorf("relocate %s: %w", e.Path, err)
			}
		case pluginapi.TypeFile:
			data, err := os.ReadFile(full)
			if err != nil {
				return fmt.Errorf("relocate %s: %w", e.Path, err)
			}
			out, _ := reloc.rewriteFile(e.Path, data)
			if err := os.WriteFile(tmp, out, os.FileMode(e.Mode&0o777)); err != nil {
				return fmt.Errorf("relocate %s: %w", e.Path, err)
			}
		}
		if err := os.Rename(tmp, full); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("relocate %s: %w", e.Path, err)
		}
	}
	return nil
}

// checkRealDirs checks that every element of rel (a slash path) beneath
// root is a directory, not a symlink.
func checkRealDirs(root, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	p := root
	for _, elem := range strings.Split(rel, "/") {
		p = filepath.Join(p, elem)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: %s is not a directory", pluginapi.ErrUnsafePath, p)
		}
	}
	return nil
}

// isTrue reads a boolean option value.
func isTrue(v string) bool {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}
