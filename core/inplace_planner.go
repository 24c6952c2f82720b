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
// the listing (extrasCursor); a sparse stream sends nothing of what is
// kept but the directories above what changes.
//
// The planner reads the target's listing while it arrives (liveListing):
// each question waits until the listing has passed the path it is about.
type inplacePlanner struct {
	live *liveListing
	// own is the snapshot's own change index, with its directories and
	// symlinks when the listing was given it (liveListing.run's parent).
	own     *ownFiles
	last    *restoreIndex
	lastIsS bool        // the last restore was of this very snapshot
	lastSn  *treeLookup // the last restore's snapshot, when another one

	// kept are the files left alone, per stream, with the statistics the
	// listing saw (a hard link to a rewritten file must be remade; the
	// restore index records them, keptIndex).
	kept store.ChangeIndex
	// keptHint sizes the first stream's kept map.
	keptHint int
	// files counts the snapshot's regular files planned, kept or not.
	files int
}

// newInplacePlanner returns the planner of an in-place restore of snapshot
// snapID; filesHint is how many files the snapshot holds (0: no idea).
func newInplacePlanner(live *liveListing, own *ownFiles, last *restoreIndex, lastSnap *treeLookup, snapID string, filesHint int64) *inplacePlanner {
	p := &inplacePlanner{live: live, own: own, last: last, kept: store.ChangeIndex{},
		keptHint: int(min(max(filesHint, 0), maxListingHint))}
	if last != nil {
		p.lastIsS = last.SnapshotID == snapID
		p.lastSn = lastSnap
	}
	return p
}

// unchanged reports whether the target already holds node n at path p,
// once the listing has passed p. whole is set when n is a directory the
// target holds with everything beneath it as the snapshot has it (the
// listing's targetEntry.Subtree, which it is): nothing beneath it need be
// asked about, or sent.
func (p *inplacePlanner) unchanged(ctx context.Context, stream, path string, n *store.Node) (keep bool, whole *targetEntry, err error) {
	if n.Type == store.NodeFile {
		p.files++
	}
	cur, err := p.live.entry(ctx, stream, path)
	if err != nil {
		return false, nil, err
	}
	if cur != nil && cur.Subtree && n.Type == store.NodeDir && cur.Type == pluginapi.TypeDir {
		// The engine found the directory and all beneath it with the
		// ctimes and inodes (and files with the sizes and mtimes) that
		// own recorded when the snapshot was captured: nothing changed
		// since, names, modes, owners, mtimes and xattrs included, as a
		// change to any of them sets the ctime. The cheap fields are
		// checked all the same; its xattrs were not sent.
		// Nothing beneath it goes into kept: own vouches for all of it
		// (see keptIndex).
		if cur.Mode != n.Mode || cur.UID != n.UID || cur.GID != n.GID || cur.MtimeNs != n.MtimeNs {
			return false, nil, nil
		}
		return true, cur, nil
	}
	// A file listed without its xattrs (targetEntry.XattrsUnread) has
	// the snapshot's when contentKnown vouches for it: its ctime, which
	// setting an xattr moves, is the one recorded with them.
	if cur == nil || cur.Mode != n.Mode || cur.UID != n.UID || cur.GID != n.GID || !cur.XattrsUnread && !sameXattrs(cur.Xattrs, n.Xattrs) {
		return false, nil, nil
	}
	switch n.Type {
	case store.NodeDir:
		return cur.Type == pluginapi.TypeDir && cur.MtimeNs == n.MtimeNs, nil, nil
	case store.NodeSymlink:
		return cur.Type == pluginapi.TypeSymlink && cur.MtimeNs == n.MtimeNs && cur.LinkTarget == n.LinkTarget, nil, nil
	case store.NodeHardlink:
		return cur.Type == pluginapi.TypeHardlink && cur.LinkTarget == n.LinkTarget && p.isKept(stream, n.LinkTarget), nil, nil
	case store.NodeFile:
		if cur.Type != pluginapi.TypeFile || cur.MtimeNs != n.MtimeNs || cur.Size != n.Size {
			return false, nil, nil
		}
		ok, err := p.contentKnown(ctx, stream, path, cur, n)
		if err != nil || !ok {
			return false, nil, err
		}
		p.keptIn(stream)[path] = store.IndexRecord{Size: cur.Size, MtimeNs: cur.MtimeNs, CtimeNs: cur.CtimeNs, Inode: cur.Inode}
		return true, nil, nil
	}
	return false, nil, nil
}

// keptIn returns the kept files of stream, made on first use.
func (p *inplacePlanner) keptIn(stream string) map[string]store.IndexRecord {
	kept := p.kept[stream]
	if kept == nil {
		kept = make(map[string]store.IndexRecord, p.keptHint)
		p.keptHint = 0
		p.kept[stream] = kept
	}
	return kept
}

// listed waits until the target's listing has ended, and returns its error.
func (p *inplacePlanner) listed(ctx context.Context) error {
	return p.live.awaitDone(ctx)
}

// isKept reports whether the plan left the file at path of stream alone.
func (p *inplacePlanner) isKept(stream, path string) bool {
	_, ok := p.kept[stream][path]
	return ok
}

func sameStat(r store.IndexRecord, cur *targetEntry) bool {
	return r.Size == cur.Size && r.MtimeNs == cur.MtimeNs && r.CtimeNs == cur.CtimeNs && r.Inode == cur.Inode
}

// contentKnown reports whether the file cur at path holds node n's content
// and, if its xattrs were not listed, n's xattrs: its statistics are those
// recorded when it held them (in the snapshot's own change index, or in
// the restore index of the last restore, of this snapshot or of another
// one with the same content and xattrs there).
func (p *inplacePlanner) contentKnown(ctx context.Context, stream, path string, cur *targetEntry, n *store.Node) (bool, error) {
	if r, ok := p.own.file(ctx, stream, path); ok && sameStat(r, cur) {
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
	return ln != nil && ln.Type == store.NodeFile && ln.Size == n.Size && slices.Equal(ln.Content, n.Content) &&
		(!cur.XattrsUnread || sameXattrs(ln.Xattrs, n.Xattrs)), nil
}

// extrasCursor finds, in one directory of a sparse restore's walk, the
// entries the target holds that the snapshot's directory lacks: what the
// restore deletes. The walk asks before each of the snapshot's entries, in
// name order, for the target's entries sorted before it (before), and at
// the end for the rest (rest); each answer waits only until the listing
// has passed what it covers.
type extrasCursor struct {
	p      *inplacePlanner
	stream string
	dir    string
	next   int // how many of the target's names in dir were looked at
}

// extrasIn returns the cursor of directory dir of stream.
func (p *inplacePlanner) extrasIn(stream, dir string) *extrasCursor {
	return &extrasCursor{p: p, stream: stream, dir: dir}
}

// before returns the deletions of the target's entries in the directory
// named before name (the snapshot's next entry there), in name order,
// with the type each has in the target; the target's entry named name
// itself, if any, is the snapshot's, so passed over.
func (c *extrasCursor) before(ctx context.Context, name string) ([]pluginapi.Entry, error) {
	names, err := c.p.live.childrenUpTo(ctx, c.stream, c.dir, name)
	if err != nil {
		return nil, err
	}
	var out []pluginapi.Entry
	for ; c.next < len(names) && names[c.next] <= name; c.next++ {
		if names[c.next] != name {
			out = append(out, c.deletion(names[c.next]))
		}
	}
	return out, nil
}

// rest returns the deletions of the target's entries in the directory
// after the snapshot's last one there.
func (c *extrasCursor) rest(ctx context.Context) ([]pluginapi.Entry, error) {
	names, err := c.p.live.childrenUpTo(ctx, c.stream, c.dir, "")
	if err != nil {
		return nil, err
	}
	var out []pluginapi.Entry
	for ; c.next < len(names); c.next++ {
		out = append(out, c.deletion(names[c.next]))
	}
	return out, nil
}

func (c *extrasCursor) deletion(name string) pluginapi.Entry {
	path := name
	if c.dir != "" {
		path = c.dir + "/" + name
	}
	return pluginapi.Entry{Path: path, Delete: true, Type: c.p.live.typeOf(c.stream, path)}
}

// rewrittenFiles is how many of the snapshot's files the plan rewrote.
func (p *inplacePlanner) rewrittenFiles() int {
	kept := 0
	for _, m := range p.kept {
		kept += len(m)
	}
	return p.files - kept
}

// keptIndex returns the change-index form of the files the plan left
// alone, with the statistics the listing before the restore saw, for every
// stream the listing holds. The engine did not touch them, so those are
// still their statistics, and their content was known to be the
// snapshot's; anything that touched one since (the engine included)
// changed its ctime, so a stale record only costs a rewrite. Rewritten
// files are left out: their new statistics are unknown without listing the
// target again. So are the files the snapshot's own change index has with
// these statistics — those beneath subtrees kept whole and most others:
// every in-place restore reads own (Manager.loadOwnIndex), which vouches
// for them, so recording them again only made each restore write and the
// next one read ~40,000 records of venv-full more. The maps are the
// planner's own, given away: the planner is done.
func (p *inplacePlanner) keptIndex(ctx context.Context) store.ChangeIndex {
	for stream, kept := range p.kept {
		for path, r := range kept {
			if o, ok := p.own.file(ctx, stream, path); ok && o == r {
				delete(kept, path)
			}
		}
	}
	for stream := range p.live.index() {
		if p.kept[stream] == nil {
			p.kept[stream] = map[string]store.IndexRecord{}
		}
	}
	return p.kept
}
