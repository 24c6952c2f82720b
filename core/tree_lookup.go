package core

import (
	"context"
	"fmt"
	"sort"

	"github.com/pypj/ptest-snap/store"
)

// treeLookup finds nodes of a stored snapshot by stream and path, loading
// each directory's tree lazily and keeping a bounded number of them. A
// capture asks in pre-order, so the directories it needs come in runs.
type treeLookup struct {
	// get reads a tree: the store's, or a create's Writer's (ParentTree),
	// which then knows the tree's hashes are protected by its parent pin.
	get   func(context.Context, store.Hash) (*store.Tree, error)
	roots map[string]store.Hash
	dirs  map[string]*store.Tree // key: stream + "\x00" + dir path
}

// maxCachedTrees bounds treeLookup's memory; a venv has ~5,000 directories.
const maxCachedTrees = 1024

func newTreeLookup(st *store.Store, snap *store.Snapshot) *treeLookup {
	return newTreeLookupWith(st.GetTree, snap)
}

// newParentLookup reads the parent snapshot a Writer pinned (UseParent)
// through the Writer, so the content it finds is reused without lookups.
func newParentLookup(w *store.Writer, snap *store.Snapshot) *treeLookup {
	return newTreeLookupWith(w.ParentTree, snap)
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
	if len(t.dirs) >= maxCachedTrees {
		clear(t.dirs)
	}
	t.dirs[key] = tree
	return tree, nil
}

// node returns the node at path p of stream, or nil if there is none.
func (t *treeLookup) node(ctx context.Context, stream, p string) (*store.Node, error) {
	tree, err := t.dir(ctx, stream, dirOf(p))
	if err != nil || tree == nil {
		return nil, err
	}
	return findNode(tree, baseOf(p)), nil
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
