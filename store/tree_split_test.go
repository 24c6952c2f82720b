package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// largeTree is a directory of n files, each with its own chunk, named like
// the JSON schemas of venv-full's largest directories.
func largeTree(n int) *Tree {
	t := &Tree{}
	for i := range n {
		t.Nodes = append(t.Nodes, Node{Name: fmt.Sprintf("aws_service_%05d.json", i), Type: NodeFile, Mode: 0o644,
			MtimeNs: 1700000000000000000 + int64(i), Size: 100, Content: []Hash{SumChunk([]byte(fmt.Sprint(i)))}})
	}
	return t
}

// fragmentsOf returns a tree's stored parts by hash, the root included.
func fragmentsOf(t *testing.T, tr *Tree) (root []byte, parts map[Hash][]byte, order []Hash) {
	t.Helper()
	root, frags, err := encodeTreeParts(tr)
	require.NoError(t, err)
	parts = map[Hash][]byte{}
	for _, f := range frags {
		parts[f.h] = f.b
		order = append(order, f.h)
	}
	return root, parts, order
}

func partsGetter(parts map[Hash][]byte) func(Hash) ([]byte, error) {
	return func(h Hash) ([]byte, error) {
		b, ok := parts[h]
		if !ok {
			return nil, fmt.Errorf("chunk %s: %w", h, ErrNotFound)
		}
		return b, nil
	}
}

// TestSmallTreeKeepsVersion1: a tree at or below splitAbove is stored in
// the version-1 encoding, byte for byte as stores written before
// fragments hold it, so their trees keep deduplicating.
func TestSmallTreeKeepsVersion1(t *testing.T) {
	for _, tr := range []*Tree{{}, sampleTreeSorted(), benchTree(20)} {
		whole, err := EncodeTree(tr)
		require.NoError(t, err)
		require.LessOrEqual(t, len(whole), splitAbove)
		root, frags, err := encodeTreeParts(tr)
		require.NoError(t, err)
		assert.Nil(t, frags)
		assert.Equal(t, whole, root)
	}
}

func sampleTreeSorted() *Tree {
	tr := sampleTree()
	tr.Nodes[1], tr.Nodes[2], tr.Nodes[3], tr.Nodes[4] = tr.Nodes[4], tr.Nodes[1], tr.Nodes[2], tr.Nodes[3]
	return tr
}

// TestLargeTreeFragmentsCanonical: a large tree is a root and fragments
// that decode to the same tree; the same content always gives the same
// hashes; one changed entry changes one fragment, an added or removed one
// at most two; every fragment is a version-1 tree of its own.
func TestLargeTreeFragmentsCanonical(t *testing.T) {
	tr := largeTree(1500)
	root, parts, order := fragmentsOf(t, tr)
	require.Greater(t, len(order), 50)
	got, hs, err := decodeStoredTree(root, partsGetter(parts))
	require.NoError(t, err)
	assert.Equal(t, tr, got)
	assert.Equal(t, order, hs)
	again, _, _ := fragmentsOf(t, got)
	assert.Equal(t, root, again, "the same content, the same root")
	for h, b := range parts {
		ft, err := DecodeTree(b)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(ft.Nodes), splitMaxNodes)
		assert.Equal(t, h, SumChunk(b))
	}

	changed := largeTree(1500)
	changed.Nodes[750].Size = 101
	changed.Nodes[750].Content = []Hash{SumChunk([]byte("changed"))}
	_, cparts, corder := fragmentsOf(t, changed)
	require.Len(t, corder, len(order))
	assert.Equal(t, 1, countNew(cparts, parts), "one changed entry, one new fragment")

	added := largeTree(1500)
	added.Nodes = append(added.Nodes[:300:300], append([]Node{{Name: "aws_service_00299x.json", Type: NodeFile}}, added.Nodes[300:]...)...)
	_, aparts, _ := fragmentsOf(t, added)
	assert.LessOrEqual(t, countNew(aparts, parts), 2, "an added entry")

	removed := largeTree(1500)
	removed.Nodes = append(removed.Nodes[:1000:1000], removed.Nodes[1001:]...)
	_, rparts, _ := fragmentsOf(t, removed)
	assert.LessOrEqual(t, countNew(rparts, parts), 2, "a removed entry")
}

func countNew(parts, old map[Hash][]byte) int {
	n := 0
	for h := range parts {
		if _, ok := old[h]; !ok {
			n++
		}
	}
	return n
}

// TestTreeRootRejectsNonCanonical: a root is read only in the form
// encodeTreeParts gives, so a directory has exactly one hash.
func TestTreeRootRejectsNonCanonical(t *testing.T) {
	tr := largeTree(400)
	root, parts, order := fragmentsOf(t, tr)
	frags, err := decodeTreeRoot(root)
	require.NoError(t, err)

	// Two fragments merged into one: valid trees, another split.
	merged := &Tree{}
	for _, h := range order[:2] {
		ft, err := DecodeTree(parts[h])
		require.NoError(t, err)
		merged.Nodes = append(merged.Nodes, ft.Nodes...)
	}
	mb, err := EncodeTree(merged)
	require.NoError(t, err)
	mh := SumChunk(mb)
	withMerged := map[Hash][]byte{mh: mb}
	for h, b := range parts {
		withMerged[h] = b
	}
	mergedRoot := encodeTreeRootOf(append([]treeFragment{{h: mh, nodes: len(merged.Nodes)}}, frags[2:]...))

	// A small tree as a root of two fragments.
	small := largeTree(10)
	s1, _ := EncodeTree(&Tree{Nodes: small.Nodes[:5]})
	s2, _ := EncodeTree(&Tree{Nodes: small.Nodes[5:]})
	smallParts := map[Hash][]byte{SumChunk(s1): s1, SumChunk(s2): s2}
	smallRoot := encodeTreeRootOf([]treeFragment{{h: SumChunk(s1), nodes: 5}, {h: SumChunk(s2), nodes: 5}})

	// Fragments out of order.
	swapped := append([]treeFragment(nil), frags...)
	swapped[0], swapped[1] = swapped[1], swapped[0]

	nested := map[Hash][]byte{SumChunk(root): root}
	for h, b := range parts {
		nested[h] = b
	}
	nestedRoot := encodeTreeRootOf(append([]treeFragment{{h: SumChunk(root), nodes: frags[0].nodes}}, frags[1:]...))

	for _, tc := range []struct {
		name  string
		root  []byte
		parts map[Hash][]byte
	}{
		{"merged fragments", mergedRoot, withMerged},
		{"small tree", smallRoot, smallParts},
		{"swapped", encodeTreeRootOf(swapped), parts},
		{"one fragment", encodeTreeRootOf(frags[:1]), parts},
		{"wrong node count", encodeTreeRootOf(append([]treeFragment{{h: frags[0].h, nodes: frags[0].nodes + 1}}, frags[1:]...)), parts},
		{"a root as fragment", nestedRoot, nested},
		{"trailing bytes", append(append([]byte(nil), root...), 0), parts},
		{"truncated", root[:len(root)-1], parts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeStoredTree(tc.root, partsGetter(tc.parts))
			assert.ErrorIs(t, err, ErrCorrupt)
		})
	}
	_, _, err = decodeStoredTree(root, partsGetter(map[Hash][]byte{}))
	assert.ErrorIs(t, err, ErrNotFound, "a missing fragment")
	_, err = DecodeTree(root)
	assert.ErrorIs(t, err, ErrCorrupt, "DecodeTree does not read a root")
}

// TestStoreLargeTree: through a Writer a large tree is stored as a root and
// fragments; GetTree reads it whole, verify counts the fragments, gc keeps
// them while a snapshot needs them and collects them after.
func TestStoreLargeTree(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	tr := largeTree(1000)
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	for i := range tr.Nodes {
		_, err := w.PutChunk(ctx, []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	h, err := w.PutTree(ctx, tr)
	require.NoError(t, err)
	require.NoError(t, w.Commit(ctx, &Snapshot{ID: "big", Engine: "dir", EnvID: "e", CreatedAt: time.Now(),
		Streams: []Stream{{Name: "rootfs", Root: h}}}, nil))

	got, parts, err := s.GetTreeParts(ctx, h)
	require.NoError(t, err)
	assert.Equal(t, tr, got)
	require.Greater(t, len(parts), 1)
	// GetTreeChunks: the same tree, with the root's and every fragment's
	// stored bytes in the root's order, each matching its hash.
	got2, root, frags, err := s.GetTreeChunks(ctx, h)
	require.NoError(t, err)
	assert.Equal(t, tr, got2)
	assert.Equal(t, h, SumChunk(root))
	require.Len(t, frags, len(parts))
	for i, f := range frags {
		assert.Equal(t, parts[i], f.Hash)
		assert.Equal(t, f.Hash, SumChunk(f.Data), "fragment %d's bytes", i)
	}
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.EqualValues(t, 1+len(parts)+len(tr.Nodes), rep.Chunks, "the root, its fragments and the files' chunks")

	_, err = s.GC(ctx)
	require.NoError(t, err)
	for _, p := range parts {
		ok, err := s.HasChunk(ctx, p)
		require.NoError(t, err)
		assert.True(t, ok, "gc keeps fragment %s", p)
	}
	require.NoError(t, s.DeleteSnapshot(ctx, "big"))
	_, err = s.GC(ctx)
	require.NoError(t, err)
	for _, p := range parts {
		ok, err := s.HasChunk(ctx, p)
		require.NoError(t, err)
		assert.False(t, ok, "gc collects fragment %s", p)
	}
}

// TestLargeVersion1TreeStillReads: stores written before fragments existed
// hold large directories as one version-1 chunk. Such a tree reads, verifies
// and survives gc; PutTreeBytes (an import) keeps it byte for byte; a new
// snapshot of the same directory stores it as fragments, under another
// hash.
func TestLargeVersion1TreeStillReads(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	tr := largeTree(1000)
	old, err := EncodeTree(tr)
	require.NoError(t, err)
	require.Greater(t, len(old), splitAbove)
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	for i := range tr.Nodes {
		_, err := w.PutChunk(ctx, []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	h, err := w.PutTreeBytes(ctx, old)
	require.NoError(t, err)
	assert.Equal(t, SumChunk(old), h)
	require.NoError(t, w.Commit(ctx, &Snapshot{ID: "old", Engine: "dir", EnvID: "e", CreatedAt: time.Now(),
		Streams: []Stream{{Name: "rootfs", Root: h}}}, nil))

	got, parts, err := s.GetTreeParts(ctx, h)
	require.NoError(t, err)
	assert.Equal(t, tr, got)
	assert.Nil(t, parts)
	_, root, frags, err := s.GetTreeChunks(ctx, h)
	require.NoError(t, err)
	assert.Equal(t, old, root, "a one-chunk tree's bytes as stored")
	assert.Nil(t, frags)
	_, err = s.GC(ctx)
	require.NoError(t, err)
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)

	w, err = s.NewWriter(ctx)
	require.NoError(t, err)
	defer w.Abort()
	require.NoError(t, w.UseParent(ctx, "old"))
	pt, err := w.ParentTree(ctx, h)
	require.NoError(t, err)
	h2, err := w.PutTree(ctx, pt)
	require.NoError(t, err)
	assert.NotEqual(t, h, h2, "stored anew as fragments")
	got2, err := s.GetTree(ctx, h2)
	require.NoError(t, err)
	assert.Equal(t, tr, got2)
}

// TestLargeIndexDirFragments: a large directory's change index is a root and
// fragments; it reads back whole, and one changed record stores one new
// fragment and the root.
func TestLargeIndexDirFragments(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := map[string]IndexRecord{}
	for i := range 1500 {
		files[fmt.Sprintf("aws_service_%05d.json", i)] = IndexRecord{Size: 100, MtimeNs: 1e18 + int64(i)*7919, CtimeNs: 1e18 + int64(i)*104729, Inode: uint64(1000 + i*13)}
	}
	dirs := map[string]Hash{"sub": {}}
	put := func(id string, files map[string]IndexRecord) (Hash, []Hash) {
		w, err := s.NewWriter(ctx)
		require.NoError(t, err)
		sub, err := w.PutIndexDir(ctx, map[string]IndexRecord{"x": {Size: 1}}, nil, nil)
		require.NoError(t, err)
		dirs["sub"] = sub
		root, err := w.PutIndexDir(ctx, files, dirs, map[string]IndexRecord{"sub": {Kind: IndexDir, CtimeNs: 5, Inode: 6}})
		require.NoError(t, err)
		th, err := w.PutTree(ctx, &Tree{})
		require.NoError(t, err)
		require.NoError(t, w.CommitIndexed(ctx, &Snapshot{ID: id, Engine: "dir", EnvID: "e", CreatedAt: time.Now(),
			Streams: []Stream{{Name: "rootfs", Root: th}}}, map[string]Hash{"rootfs": root}))
		var chunks []Hash
		require.NoError(t, s.IndexChunks(ctx, id, func(h Hash) bool { chunks = append(chunks, h); return true }))
		return root, chunks
	}
	_, first := put("one", files)
	require.Greater(t, len(first), 50)
	idx, err := s.ChangeIndex(ctx, "one")
	require.NoError(t, err)
	want := map[string]IndexRecord{"sub/x": {Size: 1}}
	for k, v := range files {
		want[k] = v
	}
	assert.Equal(t, want, idx["rootfs"])

	r := files["aws_service_00750.json"]
	r.Size, r.Inode = 101, 99
	files["aws_service_00750.json"] = r
	_, second := put("two", files)
	seen := map[Hash]bool{}
	for _, h := range first {
		seen[h] = true
	}
	var fresh int
	for _, h := range second {
		if !seen[h] {
			fresh++
		}
	}
	assert.Equal(t, 2, fresh, "the root and one fragment")
	idx, err = s.ChangeIndex(ctx, "two")
	require.NoError(t, err)
	want["aws_service_00750.json"] = r
	assert.Equal(t, want, idx["rootfs"])
	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}

// FuzzDecodeStoredTree: a root is read only if it is exactly what
// encodeTreeParts writes for the tree it assembles; anything else is an
// error wrapping ErrCorrupt (or ErrNotFound for a fragment not there).
func FuzzDecodeStoredTree(f *testing.F) {
	root, frags, err := encodeTreeParts(largeTree(300))
	if err != nil {
		f.Fatal(err)
	}
	parts := map[Hash][]byte{}
	for _, p := range frags {
		parts[p.h] = p.b
	}
	f.Add(root)
	f.Add(root[:40])
	f.Add([]byte{'T', 2, 2})
	f.Add(frags[0].b)
	get := partsGetter(parts)
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, hs, err := decodeStoredTree(data, get)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				assert.ErrorIs(t, err, ErrCorrupt)
			}
			return
		}
		again, agFrags, err := encodeTreeParts(tr)
		require.NoError(t, err)
		require.Equal(t, data, again, "a decoded tree re-encodes to the same bytes")
		require.Len(t, hs, len(agFrags))
	})
}

// TestTreesStoredWithEncodeHashes: a tree's chunks (a large tree's root and
// fragments as a small tree's one chunk) are stored as the codec's
// EncodeHashes makes them, not at bigLevel like a file's chunk stored
// alone.
func TestTreesStoredWithEncodeHashes(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	defer w.Abort()
	large := largeTree(1000)
	for i := range large.Nodes {
		_, err := w.PutChunk(ctx, []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	// Names of random letters: literals Huffman coding would shrink.
	r := rand.New(rand.NewPCG(5, 6))
	small := &Tree{}
	for i := range 40 {
		name := make([]byte, 200) // long, so that letters outweigh the hashes
		for j := range name {
			name[j] = 'a' + byte(r.IntN(26))
		}
		small.Nodes = append(small.Nodes, Node{Name: string(name) + ".py", Type: NodeFile, Mode: 0o644,
			MtimeNs: 1700000000000000000 + int64(i), Size: 100, Content: []Hash{SumChunk([]byte(fmt.Sprint(i)))}})
	}
	slices.SortFunc(small.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	differ := 0
	for name, tr := range map[string]*Tree{"large": large, "small": small} {
		h, err := w.PutTree(ctx, tr)
		require.NoError(t, err)
		require.NoError(t, s.chunks.flush())
		_, root, frags, err := s.GetTreeChunks(ctx, h)
		require.NoError(t, err)
		if name == "large" {
			require.NotEmpty(t, frags)
		}
		for _, c := range append([]TreeChunk{{Hash: h, Data: root}}, frags...) {
			stored, err := s.value(chunkKey(c.Hash))
			require.NoError(t, err)
			assert.Equal(t, s.codec.EncodeHashes(nil, c.Data), stored, "%s tree, chunk %s", name, c.Hash)
			if !bytes.Equal(s.codec.EncodeLevel(nil, c.Data, bigChunkLevel), stored) {
				differ++
			}
		}
	}
	// Where Huffman coding gains nothing the two encodings coincide; the
	// small tree's names would compress, so it tells them apart.
	assert.Positive(t, differ, "some tree chunk is encoded otherwise than at bigChunkLevel")
}
