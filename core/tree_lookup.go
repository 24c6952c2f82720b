package core

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// treeLookup finds nodes of a stored snapshot by stream and path, loading
// each directory's tree lazily and keeping a bounded number of them. A
// capture asks in pre-order, so the directories it needs come in runs.
// It is used from one goroutine.
type treeLookup struct {
	// get reads a tree: the store's, or a create's Writer's (ParentTree),
	// which then knows the tree's hashes are protected by its parent pin.
	get   func(context.Context, store.Hash) (*store.Tree, error)
	roots map[string]store.Hash
	dirs  map[string]*store.Tree // key: stream + "\x00" + dir path

	// prefetchCtx, when set, makes the lookup read a stream's trees ahead
	// in a goroutine (ahead), in the order a capture asks for them.
	prefetchCtx context.Context
	ahead       *treePrefetch

	// The last directory found, and where in it the last node was: a
	// capture asks for the files of one directory in a run, by name.
	lastStream, lastDir string
	lastTree            *store.Tree
	lastIdx             int
}

// maxCachedTrees bounds treeLookup's memory; a venv has ~5,000 directories.
const maxCachedTrees = 1024

func newTreeLookup(st *store.Store, snap *store.Snapshot) *treeLookup {
	return newTreeLookupWith(st.GetTree, snap)
}

// newParentLookup reads the parent snapshot a Writer pinned (UseParent)
// through the Writer, so the content it finds is reused without lookups,
// and reads its trees ahead of the capture (treePrefetch) until ctx ends
// or close is called, which the caller must do.
func newParentLookup(ctx context.Context, w *store.Writer, snap *store.Snapshot) *treeLookup {
	t := newTreeLookupWith(w.ParentTree, snap)
	t.prefetchCtx = ctx
	return t
}

func newTreeLookupWith(get func(context.Context, store.Hash) (*store.Tree, error), snap *store.Snapshot) *treeLookup {
	t := &treeLookup{get: get, roots: map[string]store.Hash{}, dirs: map[string]*store.Tree{}}
	for _, s := range snap.Streams {
		t.roots[s.Name] = s.Root
	}
	return t
}

// findNode returns the node called name in tree, or nil.
func findNode(tree *store.Tree, name string) *store.Node {
	i := sort.Search(len(tree.Nodes), func(i int) bool { return tree.Nodes[i].Name >= name })
	if i < len(tree.Nodes) && tree.Nodes[i].Name == name {
		return &tree.Nodes[i]
	}
	return nil
}

// dir returns the tree of directory p ("" is the root) in stream, or nil
// if the snapshot has no such directory.
func (t *treeLookup) dir(ctx context.Context, stream, p string) (*store.Tree, error) {
	key := stream + "\x00" + p
	if tree, ok := t.dirs[key]; ok {
		return tree, nil
	}
	if tree, ok := t.fromAhead(stream, p); ok {
		t.cache(key, tree)
		return tree, nil
	}
	var h store.Hash
	if p == "" {
		root, ok := t.roots[stream]
		if !ok {
			return nil, nil
		}
		h = root
	} else {
		parent, err := t.dir(ctx, stream, dirOf(p))
		if err != nil || parent == nil {
			return nil, err
		}
		n := findNode(parent, baseOf(p))
		if n == nil || n.Type != store.NodeDir {
			return nil, nil
		}
		h = n.Subtree
	}
	tree, err := t.get(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("read tree of %q in stream %q: %w", p, stream, err)
	}
	t.cache(key, tree)
	return tree, nil
}

func (t *treeLookup) cache(key string, tree *store.Tree) {
	if len(t.dirs) >= maxCachedTrees {
		clear(t.dirs)
	}
	t.dirs[key] = tree
}

// fromAhead returns directory p's tree if the prefetcher of stream has it
// (starting that prefetcher on the stream's first lookup). Trees it read
// for directories before p are cached on the way: a directory the capture
// did not ask for yet (one holding only subdirectories so far) may still
// be asked for after them. ok is false when p is not among what it reads
// (the parent has no such directory) or prefetching is off or failed; the
// caller then reads the tree itself.
func (t *treeLookup) fromAhead(stream, p string) (*store.Tree, bool) {
	if t.prefetchCtx == nil {
		return nil, false
	}
	if t.ahead == nil || t.ahead.stream != stream {
		root, ok := t.roots[stream]
		if !ok {
			return nil, false
		}
		t.close()
		t.ahead = startTreePrefetch(t.prefetchCtx, t.get, stream, root)
	}
	a := t.ahead
	for {
		if a.next == nil {
			it, ok := <-a.ch
			if !ok || it.err != nil {
				// Done, or failed: the caller's own read reports
				// any error where it matters.
				return nil, false
			}
			a.next = &it
		}
		switch c := pluginapi.ComparePaths(a.next.path, p); {
		case c == 0:
			tree := a.next.tree
			a.next = nil
			return tree, true
		case c < 0:
			t.cache(stream+"\x00"+a.next.path, a.next.tree)
			a.next = nil
		default:
			return nil, false
		}
	}
}

// stopPrefetch stops reading trees ahead for good: the capture skips
// whole subtrees from now on (unchanged directories), and the trees it
// still asks for are read when asked.
func (t *treeLookup) stopPrefetch() {
	if t.prefetchCtx == nil {
		return
	}
	t.close()
	t.prefetchCtx = nil
}

// close stops the prefetcher, if any, and waits for its goroutine.
func (t *treeLookup) close() {
	if t.ahead != nil {
		t.ahead.stop()
		t.ahead = nil
	}
}

// treePrefetch reads one stream's trees in pre-order (siblings by name, as
// a capture sends them) in its own goroutine, a bounded number ahead of
// the capture. Reading a parent's ~8,000 trees (venv-full) costs ~0.1 s of
// Badger reads, decompression and decoding; read in the capture's
// goroutine they delayed every entry behind them.
type treePrefetch struct {
	stream string
	ch     chan prefetchedTree
	next   *prefetchedTree // received, not yet asked for
	cancel context.CancelFunc
	done   chan struct{}
}

type prefetchedTree struct {
	path string
	tree *store.Tree
	err  error
}

// prefetchAhead is how many trees the prefetcher may read ahead.
const prefetchAhead = 256

func startTreePrefetch(ctx context.Context, get func(context.Context, store.Hash) (*store.Tree, error), stream string, root store.Hash) *treePrefetch {
	ctx, cancel := context.WithCancel(ctx)
	a := &treePrefetch{stream: stream, ch: make(chan prefetchedTree, prefetchAhead), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		defer close(a.ch)
		var walk func(p string, h store.Hash) bool
		walk = func(p string, h store.Hash) bool {
			tree, err := get(ctx, h)
			select {
			case a.ch <- prefetchedTree{path: p, tree: tree, err: err}:
			case <-ctx.Done():
				return false
			}
			if err != nil {
				return false
			}
			for i := range tree.Nodes {
				n := &tree.Nodes[i]
				if n.Type != store.NodeDir {
					continue
				}
				sub := n.Name
				if p != "" {
					sub = p + "/" + n.Name
				}
				if !walk(sub, n.Subtree) {
					return false
				}
			}
			return true
		}
		walk("", root)
	}()
	return a
}

func (a *treePrefetch) stop() {
	a.cancel()
	<-a.done
}

// node returns the node at path p of stream, or nil if there is none.
func (t *treeLookup) node(ctx context.Context, stream, p string) (*store.Node, error) {
	d := dirOf(p)
	tree := t.lastTree
	if tree == nil || d != t.lastDir || stream != t.lastStream {
		var err error
		if tree, err = t.dir(ctx, stream, d); err != nil || tree == nil {
			return nil, err
		}
		t.lastStream, t.lastDir, t.lastTree, t.lastIdx = stream, d, tree, 0
	}
	// Names come in order: look a few nodes on from the last one before
	// searching the whole directory.
	name := baseOf(p)
	for i := t.lastIdx; i < len(tree.Nodes) && i < t.lastIdx+4; i++ {
		if c := strings.Compare(tree.Nodes[i].Name, name); c == 0 {
			t.lastIdx = i + 1
			return &tree.Nodes[i], nil
		} else if c > 0 {
			break
		}
	}
	i := sort.Search(len(tree.Nodes), func(i int) bool { return tree.Nodes[i].Name >= name })
	t.lastIdx = i
	if i < len(tree.Nodes) && tree.Nodes[i].Name == name {
		t.lastIdx = i + 1
		return &tree.Nodes[i], nil
	}
	return nil, nil
}

// baseOf returns the last element of p.
func baseOf(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
