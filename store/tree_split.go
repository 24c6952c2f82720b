package store

import (
	"encoding/binary"
	"fmt"
)

// Large directories are stored in fragments.
//
// A tree is one chunk, so one changed entry of a directory stores the
// whole directory's tree again: its entries are mostly 32-byte hashes,
// which do not compress. For the second snapshot of venv-full after change
// `small` the 54 new trees stored 143 kB, 64 kB of them for one directory
// of 1,489 entries (cfnlint/data/schemas/patches/extensions/all) in which
// one file changed; the change index (one chunk per directory, the same
// shape) added as much again.
//
// So a directory whose encoding is larger than splitAbove is stored as
// fragments — consecutive runs of its entries, each encoded exactly as a
// tree of those entries alone (version 1) — and a root (version 2) that
// lists the fragments' hashes and node counts. Where a fragment ends
// depends on the entries' names only (a hash of the name, as
// content-defined chunking does with bytes, with a minimum and a maximum
// run), so a changed entry changes one fragment and the root, an added or
// removed one at most two fragments, and the same directory content always
// gives the same fragments and root: the tree stays a Merkle tree, and an
// unchanged directory costs nothing. A directory at or below splitAbove
// keeps the version-1 encoding, byte for byte as before fragments existed,
// so stores written before keep deduplicating with new snapshots.
//
// The change index's directory chunks are split the same way, at the same
// names (change_index.go).
//
// Measured with the CLI and the virtualenv engine on venv-full (the store
// directory's allocated blocks, as the bench counts them): the second
// snapshot after change `small` grows the store by 1,687,552 bytes instead
// of 1,855,488 (its new trees 143 -> 50 kB stored, its new index chunks
// 82 -> 12 kB); the first snapshot holds 107.84 MB instead of 107.57
// (more, smaller tree chunks). The fragment sizes: see splitMinNodes.
const (
	treeRootVersion = 2
	// splitAbove is the encoded size (bytes) above which a directory is
	// fragmented. Below it, a root and two fragments would cost more
	// than the whole tree stored again.
	splitAbove = 2 << 10

	// splitMinNodes and splitMaxNodes bound a fragment's entries; between
	// them a fragment ends after an entry whose name hash has its top
	// splitMaskBits bits zero: on average splitMinNodes +
	// 2^splitMaskBits = 14 entries, about 1 kB of a site-packages tree
	// (the cost of a changed entry is its fragment plus 33 bytes per
	// fragment in the root: least near sqrt(32 x the directory's size)).
	//
	// Simulated on the trees of venv-full before and after change
	// `small` (new trees' parts, zstd-compressed, +60 bytes of Badger
	// per value; min/max/mask bits/splitAbove): 8/64/4/2048 61.0 kB,
	// 6/48/3/2048 55.4 kB, 4/48/3/2048 57.0 kB, 4/32/2/2048 57.2 kB,
	// 6/48/3/1024 52.9 kB but 78 kB more trees in the first snapshot,
	// 6/48/3/3072 56.0 kB; unsplit (main) 143 kB stored.
	splitMinNodes = 6
	splitMaxNodes = 48
	splitMaskBits = 3
	// splitMaxBytes ends a fragment early when its entries are large (files
	// with long chunk lists), so a fragment stays small whatever its
	// entries hold.
	splitMaxBytes = 16 << 10
)

// nameBoundary reports whether a fragment may end after an entry of this
// name: FNV-1a of the name, finished with a multiply-xorshift so that the
// low bits depend on every byte.
func nameBoundary(name string) bool {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h>>(64-splitMaskBits) == 0
}

// splitEnds returns where each fragment of n entries ends (exclusive
// indexes, the last one n): name(i) and size(i) are entry i's name and
// encoded size.
func splitEnds(n int, name func(int) string, size func(int) int) []int {
	var ends []int
	count, bytes := 0, 0
	for i := 0; i < n; i++ {
		count++
		bytes += size(i)
		if count >= splitMaxNodes || bytes >= splitMaxBytes || (count >= splitMinNodes && nameBoundary(name(i))) {
			ends = append(ends, i+1)
			count, bytes = 0, 0
		}
	}
	if count > 0 {
		ends = append(ends, n)
	}
	return ends
}

// uvarintLen is the length of v's uvarint encoding.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// treePart is one stored chunk of a tree: a fragment or the root.
type treePart struct {
	h Hash
	b []byte
}

// encodeTreeParts returns the stored form of t: its version-1 encoding when
// it is small (frags nil), else its root and fragments.
func encodeTreeParts(t *Tree) (root []byte, frags []treePart, err error) {
	whole, err := EncodeTree(t)
	if err != nil || len(whole) <= splitAbove {
		return whole, nil, err
	}
	// Where each node's encoding ends in whole.
	offs := make([]int, len(t.Nodes)+1)
	offs[0] = 2 + uvarintLen(uint64(len(t.Nodes)))
	var scratch []byte
	for i := range t.Nodes {
		scratch = appendNode(scratch[:0], &t.Nodes[i])
		offs[i+1] = offs[i] + len(scratch)
	}
	ends := splitEnds(len(t.Nodes), func(i int) string { return t.Nodes[i].Name },
		func(i int) int { return offs[i+1] - offs[i] })
	if len(ends) < 2 {
		return whole, nil, nil
	}
	root = append(make([]byte, 0, 3+len(ends)*34), treeMagic, treeRootVersion)
	root = binary.AppendUvarint(root, uint64(len(ends)))
	start := 0
	for _, end := range ends {
		f := append(make([]byte, 0, 4+offs[end]-offs[start]), treeMagic, treeVersion)
		f = binary.AppendUvarint(f, uint64(end-start))
		f = append(f, whole[offs[start]:offs[end]]...)
		p := treePart{h: SumChunk(f), b: f}
		frags = append(frags, p)
		root = binary.AppendUvarint(root, uint64(end-start))
		root = append(root, p.h[:]...)
		start = end
	}
	return root, frags, nil
}

// treeFragment is one entry of a root: a fragment's hash and node count.
type treeFragment struct {
	h     Hash
	nodes int
}

// isTreeRoot reports whether b is a fragmented tree's root (by its
// header; decodeTreeRoot checks the rest).
func isTreeRoot(b []byte) bool {
	return len(b) >= 2 && b[0] == treeMagic && b[1] == treeRootVersion
}

// decodeTreeRoot decodes a root: at least two fragments, each of at least
// one node, the nodes at most maxTreeNodes in all, nothing after them.
func decodeTreeRoot(b []byte) ([]treeFragment, error) {
	if !isTreeRoot(b) {
		return nil, treeErr("not a tree root")
	}
	d := &treeDecoder{b: b[2:]}
	n := d.uvarint(uint64(len(d.b)/(1+len(Hash{}))), "fragment count")
	if d.err == nil && n < 2 {
		return nil, treeErr("a root of %d fragments", n)
	}
	frags := make([]treeFragment, 0, n)
	total := 0
	for i := uint64(0); i < n && d.err == nil; i++ {
		c := d.uvarint(maxTreeNodes, "fragment node count")
		h := d.bytes(32, "fragment hash")
		if d.err != nil {
			break
		}
		if total += int(c); c == 0 || total > maxTreeNodes {
			return nil, treeErr("fragment %d: %d nodes", i, c)
		}
		frags = append(frags, treeFragment{h: Hash(h), nodes: int(c)})
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, treeErr("root: %d trailing bytes", len(d.b))
	}
	// Minimal varints: the count of fragments and each node count.
	if want := encodeTreeRootOf(frags); string(want) != string(b) {
		return nil, treeErr("root not in canonical form")
	}
	return frags, nil
}

// encodeTreeRootOf encodes a root listing frags.
func encodeTreeRootOf(frags []treeFragment) []byte {
	b := append(make([]byte, 0, 3+len(frags)*34), treeMagic, treeRootVersion)
	b = binary.AppendUvarint(b, uint64(len(frags)))
	for _, f := range frags {
		b = binary.AppendUvarint(b, uint64(f.nodes))
		b = append(b, f.h[:]...)
	}
	return b
}

// decodeStoredTree decodes tree h's stored bytes b: a whole tree, or a root
// whose fragments get returns (verified, as the store reads chunks). It
// returns the tree and, for a root, its fragments' hashes. A root is
// accepted only in the form encodeTreeParts gives for the tree it
// assembles, so a directory has one hash.
func decodeStoredTree(b []byte, get func(Hash) ([]byte, error)) (*Tree, []Hash, error) {
	if !isTreeRoot(b) {
		t, err := DecodeTree(b)
		return t, nil, err
	}
	frags, err := decodeTreeRoot(b)
	if err != nil {
		return nil, nil, err
	}
	total := 0
	for _, f := range frags {
		total += f.nodes
	}
	t := &Tree{Nodes: make([]Node, 0, total)}
	hashes := make([]Hash, len(frags))
	size := 2 + uvarintLen(uint64(total))
	for i, f := range frags {
		hashes[i] = f.h
		fb, err := get(f.h)
		if err != nil {
			return nil, nil, fmt.Errorf("fragment %s: %w", f.h, err)
		}
		if isTreeRoot(fb) {
			return nil, nil, treeErr("fragment %s is a root", f.h)
		}
		ft, err := DecodeTree(fb)
		if err != nil {
			return nil, nil, fmt.Errorf("fragment %s: %w", f.h, err)
		}
		if len(ft.Nodes) != f.nodes {
			return nil, nil, treeErr("fragment %s: %d nodes, the root says %d", f.h, len(ft.Nodes), f.nodes)
		}
		if len(t.Nodes) > 0 && t.Nodes[len(t.Nodes)-1].Name >= ft.Nodes[0].Name {
			return nil, nil, treeErr("fragment %s: nodes not sorted or not unique at %q", f.h, ft.Nodes[0].Name)
		}
		t.Nodes = append(t.Nodes, ft.Nodes...)
		size += len(fb) - 2 - uvarintLen(uint64(f.nodes))
	}
	// Canonical: large enough to be split, and split where encodeTreeParts
	// splits it.
	if size <= splitAbove {
		return nil, nil, treeErr("root of a tree of %d bytes, not above %d", size, splitAbove)
	}
	var scratch []byte
	ends := splitEnds(len(t.Nodes), func(i int) string { return t.Nodes[i].Name }, func(i int) int {
		scratch = appendNode(scratch[:0], &t.Nodes[i])
		return len(scratch)
	})
	if len(ends) != len(frags) {
		return nil, nil, treeErr("root not split canonically: %d fragments, want %d", len(frags), len(ends))
	}
	start := 0
	for i, end := range ends {
		if end-start != frags[i].nodes {
			return nil, nil, treeErr("root not split canonically at fragment %d", i)
		}
		start = end
	}
	return t, hashes, nil
}

// TreeFragments returns the fragments' hashes that b lists when b is a
// fragmented tree's root, in order, and nil when b is not one (a tree
// stored as one chunk: DecodeTree reads it). Its errors wrap ErrCorrupt.
// An importer uses it to store a root after its fragments.
func TreeFragments(b []byte) ([]Hash, error) {
	if !isTreeRoot(b) {
		return nil, nil
	}
	frags, err := decodeTreeRoot(b)
	if err != nil {
		return nil, err
	}
	hs := make([]Hash, len(frags))
	for i, f := range frags {
		hs[i] = f.h
	}
	return hs, nil
}
