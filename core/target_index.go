package core

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// targetEntry is what an index-only capture reports of one entry of a
// target, for planning an in-place restore.
type targetEntry struct {
	Type       pluginapi.EntryType
	Mode       uint32
	UID, GID   uint32
	MtimeNs    int64
	CtimeNs    int64
	Inode      uint64
	Size       int64
	LinkTarget string
	Xattrs     []store.Xattr
	// XattrsUnread: a regular file whose xattrs the engine did not read
	// (pluginapi.Entry.XattrsFromParent); Xattrs is empty and says
	// nothing.
	XattrsUnread bool
	// Subtree: a directory the engine found, with everything beneath it,
	// as the Parent index given to the listing has it (an Unchanged
	// directory, pluginapi.CaptureRequest.UnchangedDirs); nothing beneath
	// it is listed. SubtreeFiles and SubtreeDirs count what it holds.
	Subtree                   bool
	SubtreeFiles, SubtreeDirs int64
}

// targetIndex is a target's entries by stream and path.
type targetIndex map[string]map[string]*targetEntry

// files returns the change-index form of the target's regular files.
func (t targetIndex) files() store.ChangeIndex {
	out := make(store.ChangeIndex, len(t))
	for stream, entries := range t {
		m := make(map[string]store.IndexRecord, len(entries))
		for p, e := range entries {
			if e.Type == pluginapi.TypeFile {
				m[p] = store.IndexRecord{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
			}
		}
		out[stream] = m
	}
	return out
}

// targetChildren is, by stream and directory path ("" for the root), the
// names of a target's entries in that directory, in capture order (sorted,
// as the protocol has them): what a sparse in-place restore compares with
// a snapshot's directory to find what to delete.
type targetChildren map[string]map[string][]string

// captureIndex runs an index-only capture of target through eng. excludes
// are the snapshot's (store.Snapshot.Excludes): what they match is not
// listed, so the plan neither rewrites nor deletes it.
func captureIndex(ctx context.Context, eng pluginapi.Engine, target string, options map[string]string, excludes []string) (targetIndex, error) {
	l := newLiveListing(0, 0)
	if err := l.run(ctx, eng, target, options, excludes, nil); err != nil {
		return nil, err
	}
	return l.index(), nil
}

// sameXattrs compares two sorted xattr lists.
func sameXattrs(a, b []store.Xattr) bool {
	return slices.EqualFunc(a, b, func(x, y store.Xattr) bool {
		return x.Name == y.Name && string(x.Value) == string(y.Value)
	})
}

// liveListingBatch is how many entries a liveListing receives before it
// publishes them to the planner: publishing takes its lock and may wake
// the planner, so doing it per entry would make the two goroutines trade
// the CPU 46,500 times on venv-full. 256 entries are listed in ~2 ms.
const liveListingBatch = 256

// liveListing is an index-only capture of a target that an in-place
// restore plans from while it is still arriving (a pluginapi.CaptureWriter
// on one side, the planner on the other). Entries cross the protocol in
// sorted pre-order (pluginapi.ComparePaths; the host checks it for a
// plugin, and WriteEntry checks it again for an in-process engine), so
// once the listing has reached path p of a stream, it holds every entry
// of that stream at or before p — and whatever of the target it lacks
// there, the target lacks. The planner waits (await) until the listing
// has passed what it asks about, so the engine writes the target's first
// directories while its last ones are still being listed.
//
// Sound because the engine writes only what the planner sent, which the
// listing has passed: the directories above (where new entries are made
// under temporary names, see fstree.Applier) were read whole before any
// of their entries crossed, and a directory's deletion is sent only once
// the listing is past its subtree.
type liveListing struct {
	mu   sync.Mutex
	cond sync.Cond
	// The published listing, under mu.
	idx      targetIndex
	children targetChildren
	stream   string          // the stream being received
	pos      string          // the last path of stream published
	finished map[string]bool // streams received completely
	done     bool            // the capture returned
	err      error           // what it returned
	// waiting is set by a planner about to wait: publishing wakes it.
	waiting bool
	// want is what a waiting planner waits for the listing to pass (nil:
	// none): the receiving side publishes as soon as it has, rather than
	// when its batch is full (see WriteEntry).
	want atomic.Pointer[listingWant]

	// entriesHint and dirsHint size the first stream's maps (the target
	// is most likely about the snapshot's size): growing them entry by
	// entry was half of the host's cost of receiving venv-full's listing.
	entriesHint, dirsHint int

	// subtrees: the listing was asked for unchanged subtrees as one entry
	// (run's parent); set before it starts.
	subtrees bool

	// The receiving side's own, unlocked.
	pending []pendingTargetEntry
	started bool   // a stream began
	recv    string // the stream being received
	last    string // the last path received in recv
}

// listingWant is the position a planner waits for the listing to reach
// (liveListing.reachedLocked's stream, path and subtree).
type listingWant struct {
	stream, path string
	subtree      bool
}

// passedBy reports whether a listing of stream at position pos holds
// everything w waits for.
func (w *listingWant) passedBy(stream, pos string) bool {
	return stream == w.stream && passed(pos, w.path, w.subtree)
}

// passed reports whether a listing at position pos (the last path it
// received of a stream) holds everything of that stream up to path
// (subtree: up to the end of directory path's subtree; "" is the stream's
// root, whose subtree ends with the stream).
func passed(pos, path string, subtree bool) bool {
	if pos == "" {
		return false
	}
	if !subtree {
		return pluginapi.ComparePaths(pos, path) >= 0
	}
	if path == "" {
		return false
	}
	return pluginapi.ComparePaths(pos, path) > 0 && !strings.HasPrefix(pos, path+"/")
}

// pendingTargetEntry is an entry received but not yet published.
type pendingTargetEntry struct {
	path string
	e    *targetEntry
}

// maxListingHint bounds the size hints of newLiveListing.
const maxListingHint = 1 << 22

// newLiveListing returns an empty listing; entriesHint and dirsHint are
// how many entries and directories its first stream likely holds (0: no
// idea).
func newLiveListing(entriesHint, dirsHint int64) *liveListing {
	l := &liveListing{idx: targetIndex{}, children: targetChildren{}, finished: map[string]bool{},
		entriesHint: int(min(max(entriesHint, 0), maxListingHint)), dirsHint: int(min(max(dirsHint, 0), maxListingHint))}
	l.cond.L = &l.mu
	return l
}

// run captures target through eng into l and marks it done, with the
// capture's error. excludes are the snapshot's (see captureIndex). parent,
// if not nil, is the snapshot's own change index with its directories
// and symlinks, in eng's form (ownIndex): a directory whose subtree is
// still as captured may then come as one entry (targetEntry.Subtree). It
// is done with parent once the listing's first stream has begun (or the
// capture returned).
func (l *liveListing) run(ctx context.Context, eng pluginapi.Engine, target string, options map[string]string, excludes []string, parent *ownIndex) error {
	// ParentXattrs: the plan trusts a file's xattrs only through its
	// ctime (inplacePlanner.unchanged), so the engine need not read them.
	req := &pluginapi.CaptureRequest{Target: target, Excludes: excludes, Options: options, IndexOnly: true, ParentXattrs: true}
	if parent != nil {
		if parent.form == formPrinted {
			req.ParentPrinted = parent.prints
		} else {
			var err error
			if req.Parent, req.ParentPacked, err = pluginapi.ParentFor(eng, parent.packed); err != nil {
				return l.finish(err)
			}
		}
		req.UnchangedDirs = true
		l.subtrees = true
	}
	return l.finish(eng.Capture(ctx, req, l))
}

// finish marks the listing done with the capture's error (nil: complete),
// publishes what is pending and wakes the planner. It returns err.
func (l *liveListing) finish(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && l.started {
		l.publishLocked()
		l.finished[l.recv] = true
	}
	l.done, l.err = true, err
	l.cond.Broadcast()
	return err
}

// wake wakes a waiting planner, so it sees its context ended.
func (l *liveListing) wake() {
	l.mu.Lock()
	l.cond.Broadcast()
	l.mu.Unlock()
}

// WriteMetadata implements pluginapi.CaptureWriter.
func (l *liveListing) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }

// BeginStream implements pluginapi.CaptureWriter.
func (l *liveListing) BeginStream(_ context.Context, name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.idx[name]; ok {
		return fmt.Errorf("%w: stream %q sent twice", ErrEngine, name)
	}
	l.publishLocked()
	if l.started {
		l.finished[l.recv] = true
	}
	l.started = true
	l.idx[name] = make(map[string]*targetEntry, l.entriesHint)
	l.children[name] = make(map[string][]string, l.dirsHint)
	l.entriesHint, l.dirsHint = 0, 0
	l.stream, l.pos = name, ""
	l.recv, l.last = name, ""
	l.cond.Broadcast()
	return nil
}

// WriteEntry implements pluginapi.CaptureWriter.
func (l *liveListing) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	if !l.started {
		return fmt.Errorf("%w: entry %q before any stream", ErrEngine, e.Path)
	}
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return fmt.Errorf("%w: %w", ErrEngine, err)
	}
	if l.last != "" && pluginapi.ComparePaths(l.last, e.Path) >= 0 {
		// What the planner concludes from the listing's position needs
		// this order; a plugin's is checked by the host already.
		return fmt.Errorf("%w: %q comes after %q: entries must be in sorted pre-order", ErrEngine, e.Path, l.last)
	}
	l.last = e.Path
	if body != nil {
		// An engine that ignores IndexOnly: drain so it can go on.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return err
		}
	}
	te := &targetEntry{
		Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID,
		MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode, Size: e.Size,
		LinkTarget: e.LinkTarget, Xattrs: sortedXattrs(e.Xattrs),
		XattrsUnread: e.XattrsFromParent && e.Type == pluginapi.TypeFile && len(e.Xattrs) == 0,
	}
	if e.Unchanged && e.Type == pluginapi.TypeDir && l.subtrees {
		te.Subtree, te.SubtreeFiles, te.SubtreeDirs = true, e.SubtreeFiles, e.SubtreeDirs
	}
	l.pending = append(l.pending, pendingTargetEntry{path: e.Path, e: te})
	// A planner waiting for this entry's position gets it now: it may
	// be the last of a message, the plugin's next one some time away.
	if w := l.want.Load(); len(l.pending) >= liveListingBatch || w != nil && w.passedBy(l.recv, e.Path) {
		l.mu.Lock()
		l.publishLocked()
		l.mu.Unlock()
	}
	return nil
}

// publishLocked moves the pending entries into the published listing and
// wakes a waiting planner. l.mu is held.
func (l *liveListing) publishLocked() {
	if len(l.pending) == 0 {
		return
	}
	entries, kids := l.idx[l.recv], l.children[l.recv]
	for _, pe := range l.pending {
		dir, name := "", pe.path
		if i := strings.LastIndexByte(pe.path, '/'); i >= 0 {
			dir, name = pe.path[:i], pe.path[i+1:]
		}
		kids[dir] = append(kids[dir], name)
		entries[pe.path] = pe.e
	}
	l.pos = l.pending[len(l.pending)-1].path
	clear(l.pending)
	l.pending = l.pending[:0]
	if l.waiting {
		l.waiting = false
		l.cond.Broadcast()
	}
}

// reachedLocked reports whether the listing holds everything of stream up
// to path (subtree: up to the end of directory path's subtree; "" is the
// stream's root). l.mu is held.
func (l *liveListing) reachedLocked(stream, path string, subtree bool) bool {
	if l.done || l.finished[stream] {
		return true
	}
	if l.stream != stream {
		return false
	}
	return passed(l.pos, path, subtree)
}

// awaitLocked waits until the listing holds everything of stream up to
// path (see reachedLocked), the listing failed, or ctx ended. l.mu is
// held.
func (l *liveListing) awaitLocked(ctx context.Context, stream, path string, subtree bool) error {
	if !l.reachedLocked(stream, path, subtree) {
		l.want.Store(&listingWant{stream: stream, path: path, subtree: subtree})
		for !l.reachedLocked(stream, path, subtree) {
			if err := ctx.Err(); err != nil {
				l.want.Store(nil)
				return err
			}
			l.waiting = true
			l.cond.Wait()
		}
		l.want.Store(nil)
	}
	if l.done && l.err != nil {
		return fmt.Errorf("list target: %w", l.err)
	}
	return nil
}

// entry returns the target's entry at path of stream (nil: it has none),
// once the listing has passed it.
func (l *liveListing) entry(ctx context.Context, stream, path string) (*targetEntry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.awaitLocked(ctx, stream, path, false); err != nil {
		return nil, err
	}
	return l.idx[stream][path], nil
}

// childrenUpTo returns the names the target holds in directory dir of
// stream, once the listing has passed dir/name (every name up to name is
// then in), or, with name "", dir's whole subtree (every name). The
// result is only read: later entries are appended past its length.
func (l *liveListing) childrenUpTo(ctx context.Context, stream, dir, name string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	switch {
	case name == "":
		err = l.awaitLocked(ctx, stream, dir, true)
	case dir == "":
		err = l.awaitLocked(ctx, stream, name, false)
	default:
		err = l.awaitLocked(ctx, stream, dir+"/"+name, false)
	}
	if err != nil {
		return nil, err
	}
	return l.children[stream][dir], nil
}

// typeOf returns the type of the target's entry at path of stream, which
// the listing has passed (TypeFile if it holds none).
func (l *liveListing) typeOf(stream, path string) pluginapi.EntryType {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := l.idx[stream][path]; cur != nil {
		return cur.Type
	}
	return pluginapi.TypeFile
}

// index returns the whole listing, once it is done.
func (l *liveListing) index() targetIndex {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idx
}

// failure returns the error the listing ended with, if it has.
func (l *liveListing) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return l.err
	}
	return nil
}

// begun waits until the listing's first stream has begun or the listing
// has ended, and returns the error it ended with.
func (l *liveListing) begun(ctx context.Context) error {
	stop := context.AfterFunc(ctx, l.wake)
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.started && !l.done {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.waiting = true
		l.cond.Wait()
	}
	return l.err
}

// awaitDone waits until the listing has ended (or ctx ended) and returns
// its error.
func (l *liveListing) awaitDone(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.done {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.waiting = true
		l.cond.Wait()
	}
	if l.err != nil {
		return fmt.Errorf("list target: %w", l.err)
	}
	return nil
}
