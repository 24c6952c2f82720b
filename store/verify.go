package store

import (
	"context"
	"errors"
	"fmt"
	"path"
)

// Problem is one finding of Verify.
type Problem struct {
	SnapshotID string
	Stream     string
	Path       string // slash-separated, relative to the stream's root; "" is the root itself
	Chunk      Hash
	Err        error // wraps ErrNotFound or ErrCorrupt
}

// String describes the problem for a person: snapshot, stream, path, error.
func (p Problem) String() string {
	return fmt.Sprintf("snapshot %s stream %s path %q: %v", p.SnapshotID, p.Stream, p.Path, p.Err)
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Snapshots int
	Trees     int64
	Chunks    int64
	Bytes     int64
	Problems  []Problem
}

// verifier remembers what it checked so each chunk and tree is read and
// hashed once however many snapshots share it; the problems found under a
// tree are kept relative to it and re-reported for every snapshot and path
// that reaches it.
type verifier struct {
	s        *Store
	ctx      context.Context
	rep      *VerifyReport
	chunks   map[Hash]error
	trees    map[Hash][]Problem
	progress func(int64)
}

// Verify walks the given snapshots (all if ids is empty), re-hashes every
// tree and chunk once, and reports each missing or corrupt one with the
// snapshot and path that need it. progress, if set, is called with bytes
// checked so far. Problems are findings, not errors: the error is for
// failing to verify at all (an unknown id, a closed store, ctx).
func (s *Store) Verify(ctx context.Context, ids []string, progress func(bytes int64)) (*VerifyReport, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var snaps []*Snapshot
	if len(ids) == 0 {
		var err error
		if snaps, err = s.Snapshots(ctx); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	} else {
		for _, id := range ids {
			snap, err := s.Snapshot(ctx, id)
			if err != nil {
				return nil, fmt.Errorf("verify: %w", err)
			}
			snaps = append(snaps, snap)
		}
	}
	v := &verifier{s: s, ctx: ctx, rep: &VerifyReport{}, chunks: map[Hash]error{}, trees: map[Hash][]Problem{}, progress: progress}
	for _, snap := range snaps {
		v.rep.Snapshots++
		for _, st := range snap.Streams {
			probs, err := v.tree(st.Root)
			if err != nil {
				return v.rep, fmt.Errorf("verify: %w", err)
			}
			for _, p := range probs {
				p.SnapshotID, p.Stream = snap.ID, st.Name
				v.rep.Problems = append(v.rep.Problems, p)
			}
		}
		v.index(snap)
	}
	return v.rep, nil
}

// chunk checks one chunk (once) and returns its problem.
func (v *verifier) chunk(h Hash) ([]byte, error) {
	if err, ok := v.chunks[h]; ok && err != nil {
		return nil, err
	}
	data, err := v.s.GetChunk(v.ctx, h)
	v.chunks[h] = err
	if err == nil {
		v.rep.Chunks++
		v.rep.Bytes += int64(len(data))
		if v.progress != nil {
			v.progress(v.rep.Bytes)
		}
	}
	return data, err
}

// tree checks a tree and everything under it; the problems' paths are
// relative to the tree.
func (v *verifier) tree(h Hash) ([]Problem, error) {
	if probs, ok := v.trees[h]; ok {
		return probs, nil
	}
	if err := v.ctx.Err(); err != nil {
		return nil, err
	}
	var probs []Problem
	data, err := v.chunk(h)
	if err == nil {
		v.rep.Trees++
		var t *Tree
		// A fragment shared with a tree checked before is read again
		// but counted once.
		frag := func(f Hash) ([]byte, error) {
			if err, seen := v.chunks[f]; seen && err == nil {
				return v.s.GetChunk(v.ctx, f)
			}
			return v.chunk(f)
		}
		if t, _, err = decodeStoredTree(data, frag); err == nil {
			for i := range t.Nodes {
				n := &t.Nodes[i]
				for _, c := range n.Content {
					if _, seen := v.chunks[c]; seen && v.chunks[c] == nil {
						continue
					}
					if _, err := v.chunk(c); err != nil {
						probs = append(probs, Problem{Path: n.Name, Chunk: c, Err: err})
					}
				}
				if n.Type == NodeDir {
					sub, err := v.tree(n.Subtree)
					if err != nil {
						return nil, err
					}
					for _, p := range sub {
						p.Path = path.Join(n.Name, p.Path)
						probs = append(probs, p)
					}
				}
			}
		} else {
			err = fmt.Errorf("tree %s: %w", h, err)
		}
	}
	if err != nil {
		probs = append(probs, Problem{Chunk: h, Err: err})
	}
	v.trees[h] = probs
	return probs, nil
}

// IndexPath is the Path of a Problem found in a snapshot's change index
// rather than in its files; such a problem costs the next snapshot its
// shortcut, not data.
const IndexPath = "(change index)"

// index checks a snapshot's change index chunks (each once).
func (v *verifier) index(snap *Snapshot) {
	roots, err := v.s.indexRoots(snap.ID)
	if errors.Is(err, ErrNotFound) {
		return
	}
	report := func(stream string, h Hash, err error) {
		v.rep.Problems = append(v.rep.Problems, Problem{SnapshotID: snap.ID, Stream: stream, Path: IndexPath, Chunk: h, Err: err})
	}
	if err != nil {
		report("", Hash{}, err)
		return
	}
	for _, st := range sortedKeys(roots) {
		var bad Hash
		err := v.s.walkIndex(v.ctx, roots[st], nil, func(h Hash) bool {
			if _, seen := v.chunks[h]; seen {
				return false
			}
			v.chunks[h] = nil
			v.rep.Chunks++
			bad = h
			return true
		})
		if err != nil {
			report(st, bad, err)
		}
	}
}
