package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// NodeType is the type of a tree node.
type NodeType uint8

// Node types. The numbers are stored on disk: never renumber them.
const (
	NodeFile NodeType = iota + 1
	NodeDir
	NodeSymlink
	NodeHardlink
)

// String names the type.
func (t NodeType) String() string {
	switch t {
	case NodeFile:
		return "file"
	case NodeDir:
		return "dir"
	case NodeSymlink:
		return "symlink"
	case NodeHardlink:
		return "hardlink"
	}
	return fmt.Sprintf("NodeType(%d)", uint8(t))
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Node is one entry of a directory: only what a restore needs (no inode, no
// ctime), so an unchanged directory hashes the same in every snapshot.
//
// The encoding accepts only well-formed nodes: Name is a single path element
// (not empty, ".", ".." and without '/' or NUL); Size >= 0; Content only on
// files; a non-zero Subtree on directories and on nothing else; a non-empty
// LinkTarget on symlinks and hard links (for a hard link: the slash-separated
// path, within the same stream, of the first link to the file) and on nothing
// else; Xattrs sorted by name, unique, names not empty.
type Node struct {
	Name       string
	Type       NodeType
	Mode       uint32
	UID        uint32
	GID        uint32
	MtimeNs    int64
	Size       int64
	LinkTarget string
	Xattrs     []Xattr // sorted by name
	Content    []Hash  // files: the chunk list, in order
	Subtree    Hash    // directories: the child tree
}

// Tree is one directory, nodes sorted by name (byte order), names unique.
type Tree struct {
	Nodes []Node
}

// Limits of the tree encoding: generous for real file systems (NAME_MAX is
// 255, PATH_MAX 4096, an xattr value at most 64 KiB on Linux), small enough
// that a hostile tree cannot make the decoder allocate without bound.
const (
	treeMagic      = 'T'
	treeVersion    = 1
	maxNameLen     = 4096
	maxTargetLen   = 64 << 10
	maxXattrs      = 1024
	maxXattrValue  = 1 << 20
	maxTreeNodes   = 1 << 24
	maxFileChunks  = 1 << 24
	minNodeEncoded = 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 // name len, name, type, mode, uid, gid, mtime, size, xattrs
)

var errTree = errors.New("tree")

// ErrBadName is wrapped (beside ErrCorrupt) by the error of EncodeTree,
// DecodeTree and Writer.PutTree for a node whose name is not a single path
// element: empty, ".", "..", containing '/' or NUL, or longer than 4096
// bytes. An importer tells an unsafe path from other damage with
// errors.Is(err, ErrBadName).
var ErrBadName = errors.New("bad node name")

// badNameError keeps the tree error's text ("corrupt data: tree: bad name
// ...") and adds ErrBadName to what it wraps.
type badNameError struct{ err error }

func (e *badNameError) Error() string   { return e.err.Error() }
func (e *badNameError) Unwrap() []error { return []error{e.err, ErrBadName} }

func treeErr(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrCorrupt, errTree, fmt.Sprintf(format, args...))
}

// validateNode checks a node's own fields (not its place in the tree).
func validateNode(n *Node) error {
	if n.Name == "" || n.Name == "." || n.Name == ".." || strings.ContainsAny(n.Name, "/\x00") || len(n.Name) > maxNameLen {
		return &badNameError{treeErr("bad name %q", n.Name)}
	}
	if n.Size < 0 {
		return treeErr("%s: negative size", n.Name)
	}
	switch n.Type {
	case NodeFile, NodeDir, NodeSymlink, NodeHardlink:
	default:
		return treeErr("%s: bad type %d", n.Name, n.Type)
	}
	if len(n.Content) > 0 && n.Type != NodeFile {
		return treeErr("%s: content on a %s", n.Name, n.Type)
	}
	if len(n.Content) > maxFileChunks {
		return treeErr("%s: too many chunks", n.Name)
	}
	if (n.Type == NodeDir) == n.Subtree.IsZero() {
		return treeErr("%s: subtree on a %s", n.Name, n.Type)
	}
	isLink := n.Type == NodeSymlink || n.Type == NodeHardlink
	if isLink == (n.LinkTarget == "") || len(n.LinkTarget) > maxTargetLen {
		return treeErr("%s: link target on a %s", n.Name, n.Type)
	}
	if len(n.Xattrs) > maxXattrs {
		return treeErr("%s: too many xattrs", n.Name)
	}
	for i, x := range n.Xattrs {
		if x.Name == "" || len(x.Name) > maxNameLen || len(x.Value) > maxXattrValue {
			return treeErr("%s: bad xattr %q", n.Name, x.Name)
		}
		if i > 0 && n.Xattrs[i-1].Name >= x.Name {
			return treeErr("%s: xattrs not sorted or not unique at %q", n.Name, x.Name)
		}
	}
	return nil
}

// EncodeTree returns the canonical encoding of t. It refuses a tree whose
// nodes are not sorted by name, not unique, or not well formed (see Node).
func EncodeTree(t *Tree) ([]byte, error) {
	if len(t.Nodes) > maxTreeNodes {
		return nil, treeErr("too many nodes")
	}
	size := 8
	for i := range t.Nodes {
		n := &t.Nodes[i]
		size += 48 + len(n.Name) + len(n.LinkTarget) + 32*len(n.Content) + 32
		for _, x := range n.Xattrs {
			size += 8 + len(x.Name) + len(x.Value)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, treeMagic, treeVersion)
	b = binary.AppendUvarint(b, uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if err := validateNode(n); err != nil {
			return nil, err
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return nil, treeErr("nodes not sorted or not unique at %q", n.Name)
		}
		b = appendNode(b, n)
	}
	return b, nil
}

// appendNode appends the encoding of one (valid) node to b.
func appendNode(b []byte, n *Node) []byte {
	b = appendString(b, n.Name)
	b = append(b, byte(n.Type))
	b = binary.AppendUvarint(b, uint64(n.Mode))
	b = binary.AppendUvarint(b, uint64(n.UID))
	b = binary.AppendUvarint(b, uint64(n.GID))
	b = binary.AppendVarint(b, n.MtimeNs)
	b = binary.AppendUvarint(b, uint64(n.Size))
	switch n.Type {
	case NodeFile:
		b = binary.AppendUvarint(b, uint64(len(n.Content)))
		for _, h := range n.Content {
			b = append(b, h[:]...)
		}
	case NodeDir:
		b = append(b, n.Subtree[:]...)
	case NodeSymlink, NodeHardlink:
		b = appendString(b, n.LinkTarget)
	}
	b = binary.AppendUvarint(b, uint64(len(n.Xattrs)))
	for _, x := range n.Xattrs {
		b = appendString(b, x.Name)
		b = binary.AppendUvarint(b, uint64(len(x.Value)))
		b = append(b, x.Value...)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// treeDecoder reads the encoding, bounds-checking every length against
// what is left so hostile input cannot make it allocate much.
type treeDecoder struct {
	b   []byte
	err error
	// str is the whole input as one string, and base its length when
	// decoding began: names are substrings of it, one allocation for all.
	str  string
	base int
}

func (d *treeDecoder) uvarint(max uint64, what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = treeErr("bad %s", what)
		return 0
	}
	if v > max {
		d.err = treeErr("%s %d exceeds %d", what, v, max)
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *treeDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = treeErr("bad %s", what)
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *treeDecoder) bytes(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = treeErr("%s: %d bytes past the end", what, n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *treeDecoder) string(max uint64, what string) string {
	if d.str == "" {
		return string(d.bytes(d.uvarint(max, what), what))
	}
	n := d.uvarint(max, what)
	off := d.base - len(d.b)
	if d.bytes(n, what) == nil {
		return ""
	}
	return d.str[off : off+int(n)]
}

// DecodeTree decodes a tree stored as one chunk (not a fragmented tree's
// root, see tree_split.go), refusing anything not canonical: a wrong magic
// or version, unsorted or duplicate names, bad types or fields, lengths past
// the limits or the end, non-minimal varints and trailing bytes. Its errors
// wrap ErrCorrupt.
func DecodeTree(b []byte) (*Tree, error) {
	if len(b) < 3 || b[0] != treeMagic {
		return nil, treeErr("bad magic")
	}
	if b[1] == treeRootVersion {
		return nil, treeErr("a fragmented tree's root, read through the store (Store.GetTree)")
	}
	if b[1] != treeVersion {
		return nil, treeErr("unknown version %d", b[1])
	}
	d := &treeDecoder{b: b[2:], str: string(b[2:]), base: len(b) - 2}
	count := d.uvarint(maxTreeNodes, "node count")
	if d.err == nil && count > uint64(len(d.b))/minNodeEncoded {
		return nil, treeErr("%d nodes cannot fit in %d bytes", count, len(d.b))
	}
	t := &Tree{}
	if count > 0 {
		t.Nodes = make([]Node, count)
	}
	// All chunk lists share one array: at most len/32 hashes fit.
	var hashes []Hash
	for i := range t.Nodes {
		n := &t.Nodes[i]
		n.Name = d.string(maxNameLen, "name")
		typ := d.bytes(1, "type")
		if d.err != nil {
			break
		}
		n.Type = NodeType(typ[0])
		n.Mode = uint32(d.uvarint(1<<32-1, "mode"))
		n.UID = uint32(d.uvarint(1<<32-1, "uid"))
		n.GID = uint32(d.uvarint(1<<32-1, "gid"))
		n.MtimeNs = d.varint("mtime")
		n.Size = int64(d.uvarint(1<<63-1, "size"))
		switch n.Type {
		case NodeFile:
			nc := d.uvarint(maxFileChunks, "chunk count")
			raw := d.bytes(nc*32, "chunk list")
			if d.err == nil && nc > 0 {
				if hashes == nil {
					hashes = make([]Hash, 0, len(b)/32)
				}
				start := len(hashes)
				for j := 0; j < int(nc); j++ {
					hashes = append(hashes, Hash(raw[32*j:32*j+32]))
				}
				n.Content = hashes[start:len(hashes):len(hashes)]
			}
		case NodeDir:
			copy(n.Subtree[:], d.bytes(32, "subtree"))
		case NodeSymlink, NodeHardlink:
			n.LinkTarget = d.string(maxTargetLen, "link target")
		default:
			d.err = treeErr("%q: bad type %d", n.Name, typ[0])
		}
		nx := d.uvarint(maxXattrs, "xattr count")
		if d.err == nil && nx > uint64(len(d.b))/2 {
			d.err = treeErr("%d xattrs cannot fit", nx)
		}
		if d.err != nil {
			break
		}
		if nx > 0 {
			n.Xattrs = make([]Xattr, nx)
			for j := range n.Xattrs {
				n.Xattrs[j].Name = d.string(maxNameLen, "xattr name")
				if v := d.bytes(d.uvarint(maxXattrValue, "xattr length"), "xattr value"); len(v) > 0 {
					n.Xattrs[j].Value = bytes.Clone(v)
				}
			}
		}
		if d.err != nil {
			break
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, treeErr("%d trailing bytes", len(d.b))
	}
	if err := checkCanonical(t, b); err != nil {
		return nil, err
	}
	return t, nil
}

// checkCanonical checks that b is what EncodeTree gives for t. This one
// comparison rejects unsorted and duplicate names, ill-formed nodes and
// non-minimal varints alike. It encodes node by node into one small
// buffer and compares as it goes: the whole tree encoded again cost an
// allocation as large as the tree's nodes, for every tree a create reads
// of its parent (BenchmarkTreeDecode).
func checkCanonical(t *Tree, b []byte) error {
	// Validated first, as EncodeTree does, so errors stay the same.
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if err := validateNode(n); err != nil {
			return err
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return treeErr("nodes not sorted or not unique at %q", n.Name)
		}
	}
	var scratch [512]byte
	enc := append(scratch[:0], treeMagic, treeVersion)
	enc = binary.AppendUvarint(enc, uint64(len(t.Nodes)))
	for i := range t.Nodes {
		if !bytes.HasPrefix(b, enc) {
			return treeErr("not in canonical form")
		}
		b = b[len(enc):]
		enc = appendNode(scratch[:0], &t.Nodes[i])
	}
	if !bytes.Equal(b, enc) {
		return treeErr("not in canonical form")
	}
	return nil
}
