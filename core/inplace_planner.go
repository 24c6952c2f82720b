package core

import (
	"context"
	"slices"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// inplacePlanner decides, entry by entry, whether an in-place restore can
// leave what the target holds alone. An entry is unchanged only when its
// type, mode, owner, mtime, size, link target and xattrs equal the
// snapshot's AND, for a file, its content is known to be the snapshot's
// without reading it: its (size, mtime, ctime, inode) are those recorded
//   - in the snapshot's own change index (the target is where it was
//     captured and the file was not touched since), or
//   - in the target's restore index, kept after the last restore, and that
//     restore's snapshot has the same chunk list at that path.
//
// Anything else is rewritten. What the snapshot lacks is deleted: by the
// engine, which lists the target for it, or, for an engine that takes a
// sparse stream (pluginapi.CapRestoreSparse), as the host names it from
// the listing (extras); a sparse stream sends nothing of what is kept but
// the directories above what changes.
type inplacePlanner struct {
	current targetIndex
	// children are the target's directories' entries, for a sparse
	// restore's deletions (nil: not listed that way).
	children targetChildren
	own      store.ChangeIndex
	last     *restoreIndex
	lastIsS  bool        // the last restore was of this very snapshot
	lastSn   *treeLookup // the last restore's snapshot, when another one

	// keptFiles are the files left alone, per stream: a hard link to a
	// rewritten file must be remade.
	keptFiles map[string]map[string]bool
	// files counts the snapshot's regular files planned, kept or not.
	files int
}

func newInplacePlanner(current targetIndex, children targetChildren, own store.ChangeIndex, last *restoreIndex, lastSnap *treeLookup, snapID string) *inplacePlanner {
	p := &inplacePlanner{current: current, children: children, own: own, last: last, keptFiles: map[string]map[string]bool{}}
	if last != nil {
		p.lastIsS = last.SnapshotID == snapID
		p.lastSn = lastSnap
	}
	return p
}

// unchanged reports whether the target already holds node n at path p.
func (p *inplacePlanner) unchanged(ctx context.Context, stream, path string, n *store.Node) (bool, error) {
	if n.Type == store.NodeFile {
		p.files++
	}
	cur := p.current[stream][path]
	if cur == nil || cur.Mode != n.Mode || cur.UID != n.UID || cur.GID != n.GID || !sameXattrs(cur.Xattrs, n.Xattrs) {
		return false, nil
	}
	switch n.Type {
	case store.NodeDir:
		return cur.Type == pluginapi.TypeDir && cur.MtimeNs == n.MtimeNs, nil
	case store.NodeSymlink:
		return cur.Type == pluginapi.TypeSymlink && cur.MtimeNs == n.MtimeNs && cur.LinkTarget == n.LinkTarget, nil
	case store.NodeHardlink:
		return cur.Type == pluginapi.TypeHardlink && cur.LinkTarget == n.LinkTarget && p.keptFiles[stream][n.LinkTarget], nil
	case store.NodeFile:
		if cur.Type != pluginapi.TypeFile || cur.MtimeNs != n.MtimeNs || cur.Size != n.Size {
			return false, nil
		}
		ok, err := p.contentKnown(ctx, stream, path, cur, n)
		if err != nil || !ok {
			return false, err
		}
		kept := p.keptFiles[stream]
		if kept == nil {
			kept = map[string]bool{}
			p.keptFiles[stream] = kept
		}
		kept[path] = true
		return true, nil
	}
	return false, nil
}

func sameStat(r store.IndexRecord, cur *targetEntry) bool {
	return r.Size == cur.Size && r.MtimeNs == cur.MtimeNs && r.CtimeNs == cur.CtimeNs && r.Inode == cur.Inode
}

func (p *inplacePlanner) contentKnown(ctx context.Context, stream, path string, cur *targetEntry, n *store.Node) (bool, error) {
	if r, ok := p.own[stream][path]; ok && sameStat(r, cur) {
		return true, nil
	}
	if p.last == nil {
		return false, nil
	}
	r, ok := p.last.Files[stream][path]
	if !ok || !sameStat(r, cur) {
		return false, nil
	}
	if p.lastIsS {
		return true, nil
	}
	if p.lastSn == nil {
		return false, nil
	}
	ln, err := p.lastSn.node(ctx, stream, path)
	if err != nil {
		return false, err
	}
	return ln != nil && ln.Type == store.NodeFile && ln.Size == n.Size && slices.Equal(ln.Content, n.Content), nil
}

// extras returns the entries the target holds in directory dir of stream
// that nodes (the snapshot's directory, sorted by name) lacks, in name
// order, with the type each has in the target: what a sparse restore
// deletes.
func (p *inplacePlanner) extras(stream, dir string, nodes []store.Node) []pluginapi.Entry {
	names := p.children[stream][dir]
	if len(names) == 0 {
		return nil
	}
	var out []pluginapi.Entry
	j := 0
	for _, name := range names {
		for j < len(nodes) && nodes[j].Name < name {
			j++
		}
		if j < len(nodes) && nodes[j].Name == name {
			continue
		}
		path := name
		if dir != "" {
			path = dir + "/" + name
		}
		e := pluginapi.Entry{Path: path, Delete: true, Type: pluginapi.TypeFile}
		if cur := p.current[stream][path]; cur != nil {
			e.Type = cur.Type
		}
		out = append(out, e)
	}
	return out
}

// rewrittenFiles is how many of the snapshot's files the plan rewrote.
func (p *inplacePlanner) rewrittenFiles() int {
	kept := 0
	for _, m := range p.keptFiles {
		kept += len(m)
	}
	return p.files - kept
}

// keptIndex returns the change-index form of the files the plan left
// alone, with the statistics the listing before the restore saw. The
// engine did not touch them, so those are still their statistics, and
// their content was known to be the snapshot's; anything that touched
// one since (the engine included) changed its ctime, so a stale record
// only costs a rewrite. Rewritten files are left out: their new
// statistics are unknown without listing the target again.
func (p *inplacePlanner) keptIndex() store.ChangeIndex {
	out := make(store.ChangeIndex, len(p.current))
	for stream := range p.current {
		kept := p.keptFiles[stream]
		m := make(map[string]store.IndexRecord, len(kept))
		for path := range kept {
			if e := p.current[stream][path]; e != nil && e.Type == pluginapi.TypeFile {
				m[path] = store.IndexRecord{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
			}
		}
		out[stream] = m
	}
	return out
}
