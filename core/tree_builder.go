package core

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/pypj/ptest-snap/store"
)

// dirNode is a directory being built: its nodes arrive in name order from
// the capture; file contents and subtrees fill in as workers finish.
type dirNode struct {
	path     string
	nodes    []store.Node
	lastName string
	// pending counts files whose chunks are not all stored and subdirs not
	// yet finalized; the tree is stored when it reaches 0 after close.
	pending int
	closed  bool
	parent  *dirNode
	slot    int          // index in parent.nodes
	stream  *streamState // for the root: where its hash goes
	// The directory's change index (store.Writer.PutIndexDir), stored
	// with its tree: its files' records by name, and the index hashes of
	// its subdirectories that hold files. Both nil until needed.
	index     map[string]store.IndexRecord
	indexDirs map[string]store.Hash
	// meta holds the IndexDir and IndexSymlink records of its
	// subdirectories and symlinks, for the next capture's unchanged
	// directories; nil until needed.
	meta map[string]store.IndexRecord
}

// streamState is one stream's root once built.
type streamState struct {
	name      string
	root      store.Hash
	indexRoot store.Hash
}

// treeBuilder turns the pre-order entries of a capture into trees,
// bottom-up: a directory's tree is stored once it is closed (the capture
// moved past it) and all its files and subdirectories are stored. The
// stack holds the open directories of the current stream.
type treeBuilder struct {
	w    *store.Writer
	fail *failure

	mu      sync.Mutex
	stack   []*dirNode // capture goroutine only
	streams []*streamState
	trees   int64
}

func newTreeBuilder(w *store.Writer, fail *failure) *treeBuilder {
	return &treeBuilder{w: w, fail: fail}
}

// beginStream closes the current stream and opens a new one.
func (tb *treeBuilder) beginStream(ctx context.Context, name string) {
	tb.endStream(ctx)
	st := &streamState{name: name}
	tb.streams = append(tb.streams, st)
	tb.stack = []*dirNode{{path: "", stream: st, slot: -1}}
}

// endStream closes every open directory of the current stream.
func (tb *treeBuilder) endStream(ctx context.Context) {
	for len(tb.stack) > 0 {
		tb.pop(ctx)
	}
}

func (tb *treeBuilder) pop(ctx context.Context) {
	d := tb.stack[len(tb.stack)-1]
	tb.stack = tb.stack[:len(tb.stack)-1]
	tb.mu.Lock()
	d.closed = true
	ready := d.pending == 0
	tb.mu.Unlock()
	if ready {
		tb.finalize(ctx, d)
	}
}

// dirOf returns the directory path of p ("" for the stream's root). Paths
// are validated (pluginapi.ValidatePath: clean, relative), so the last
// slash splits them; path.Dir, which cleans, cost 40 ms of a second create
// of venv-full, called for every entry.
func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// add places node n (for entry path p) in its directory. It closes the
// directories the capture has left, and checks the order: p's directory
// must be open (sent before p), and p's name must sort after its previous
// sibling. A directory node is opened. pendingContent marks a file whose
// chunks are still being stored; fill it in with fileDone(dir, slot, ...).
func (tb *treeBuilder) add(ctx context.Context, p string, n store.Node, pendingContent bool) (*dirNode, int, error) {
	return tb.place(ctx, p, n, pendingContent, n.Type == store.NodeDir)
}

// place is add; open says whether n is a directory whose entries follow.
func (tb *treeBuilder) place(ctx context.Context, p string, n store.Node, pendingContent, open bool) (*dirNode, int, error) {
	if len(tb.stack) == 0 {
		return nil, 0, fmt.Errorf("%w: entry %q before any stream", ErrEngine, p)
	}
	dir := dirOf(p)
	for tb.stack[len(tb.stack)-1].path != dir {
		if len(tb.stack) == 1 {
			return nil, 0, fmt.Errorf("%w: entry %q out of order: its directory %q was not sent just before its contents", ErrEngine, p, dir)
		}
		tb.pop(ctx)
	}
	d := tb.stack[len(tb.stack)-1]
	if len(d.nodes) > 0 && n.Name <= d.lastName {
		return nil, 0, fmt.Errorf("%w: entry %q out of order: siblings must come sorted by name and once (after %q)", ErrEngine, p, d.lastName)
	}
	d.lastName = n.Name
	tb.mu.Lock()
	d.nodes = append(d.nodes, n)
	slot := len(d.nodes) - 1
	if pendingContent || open {
		d.pending++
	}
	tb.mu.Unlock()
	if open {
		tb.stack = append(tb.stack, &dirNode{path: p, parent: d, slot: slot})
	}
	return d, slot, nil
}

// addIndex records the change index record of file name in d, a directory
// add returned for it; capture goroutine only, before d is closed.
func (tb *treeBuilder) addIndex(d *dirNode, name string, r store.IndexRecord) {
	if d.index == nil {
		d.index = map[string]store.IndexRecord{}
	}
	d.index[name] = r
}

// addMeta records the ctime and inode of the subdirectory or symlink name
// in d, a directory add returned for it (capture goroutine only, before d
// is closed). An engine that reports no inode (a tar stream) leaves none.
func (tb *treeBuilder) addMeta(d *dirNode, name string, kind store.IndexKind, ctimeNs int64, inode uint64) {
	if inode == 0 {
		return
	}
	if d.meta == nil {
		d.meta = map[string]store.IndexRecord{}
	}
	d.meta[name] = store.IndexRecord{Kind: kind, CtimeNs: ctimeNs, Inode: inode}
}

// addUnchangedDir places directory node n (for entry path p), complete
// with its subtree, in its directory as add does, without opening it:
// nothing beneath it follows. indexHash is its change index chunk (zero
// if it has none). It returns the directory n was added to.
func (tb *treeBuilder) addUnchangedDir(ctx context.Context, p string, n store.Node, indexHash store.Hash) (*dirNode, error) {
	d, _, err := tb.place(ctx, p, n, false, false)
	if err != nil {
		return nil, err
	}
	if !indexHash.IsZero() {
		// Under the lock: finalize adds the hashes of d's other
		// subdirectories from the workers.
		tb.mu.Lock()
		if d.indexDirs == nil {
			d.indexDirs = map[string]store.Hash{}
		}
		d.indexDirs[n.Name] = indexHash
		tb.mu.Unlock()
	}
	return d, nil
}

// fileDone fills in a file's chunk list; called from any goroutine.
func (tb *treeBuilder) fileDone(ctx context.Context, d *dirNode, slot int, content []store.Hash) {
	tb.mu.Lock()
	d.nodes[slot].Content = content
	d.pending--
	ready := d.closed && d.pending == 0
	tb.mu.Unlock()
	if ready {
		tb.finalize(ctx, d)
	}
}

// finalize stores d's tree and its change index and, up the chain, every
// parent that becomes complete by it. Storing the change index here, as
// the capture goes, rather than from the whole index in Commit took its
// 60-85 ms off the end of a second create of venv-full.
func (tb *treeBuilder) finalize(ctx context.Context, d *dirNode) {
	for d != nil {
		if tb.fail.get() != nil {
			return
		}
		// d is complete: nobody else touches its nodes any more.
		h, err := tb.w.PutTree(ctx, &store.Tree{Nodes: d.nodes})
		if err != nil {
			tb.fail.set(fmt.Errorf("store tree of %q: %w", d.path, err))
			return
		}
		// A directory holding no file at any depth has no index chunk
		// (the stream's root always has one).
		var ih store.Hash
		hasIndex := len(d.index) > 0 || len(d.indexDirs) > 0 || len(d.meta) > 0
		if hasIndex || d.parent == nil {
			if ih, err = tb.w.PutIndexDir(ctx, d.index, d.indexDirs, d.meta); err != nil {
				tb.fail.set(fmt.Errorf("store change index of %q: %w", d.path, err))
				return
			}
		}
		tb.mu.Lock()
		tb.trees++
		var next *dirNode
		if p := d.parent; p == nil {
			d.stream.root, d.stream.indexRoot = h, ih
		} else {
			p.nodes[d.slot].Subtree = h
			if hasIndex {
				if p.indexDirs == nil {
					p.indexDirs = map[string]store.Hash{}
				}
				p.indexDirs[p.nodes[d.slot].Name] = ih
			}
			p.pending--
			if p.closed && p.pending == 0 {
				next = p
			}
		}
		d.nodes, d.index, d.indexDirs, d.meta = nil, nil, nil, nil
		tb.mu.Unlock()
		d = next
	}
}

// roots returns every stream's root and the root of its change index,
// once the capture is complete and all workers have finished.
func (tb *treeBuilder) roots() ([]store.Stream, map[string]store.Hash, error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	out := make([]store.Stream, 0, len(tb.streams))
	index := make(map[string]store.Hash, len(tb.streams))
	for _, st := range tb.streams {
		if st.root.IsZero() || st.indexRoot.IsZero() {
			return nil, nil, fmt.Errorf("stream %q: root tree was not completed", st.name)
		}
		out = append(out, store.Stream{Name: st.name, Root: st.root})
		index[st.name] = st.indexRoot
	}
	return out, index, nil
}
