package store

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleTree() *Tree {
	return &Tree{Nodes: []Node{
		{Name: "bin", Type: NodeDir, Mode: 0o755, MtimeNs: -5, Subtree: SumChunk([]byte("bin"))},
		{Name: "hard", Type: NodeHardlink, Mode: 0o644, LinkTarget: "lib/x.py"},
		{Name: "link", Type: NodeSymlink, Mode: 0o777, LinkTarget: "/usr/bin/python3"},
		{Name: "x.py", Type: NodeFile, Mode: 0o644, UID: 1000, GID: 1000, MtimeNs: 1700000000123456789, Size: 12,
			Xattrs:  []Xattr{{Name: "user.a", Value: []byte{1}}, {Name: "user.b"}},
			Content: []Hash{SumChunk([]byte("a")), SumChunk([]byte("b"))}},
		{Name: "empty", Type: NodeFile},
	}}
}

func TestTreeRoundTrip(t *testing.T) {
	tr := sampleTree()
	// Sort: "empty" belongs after "bin".
	tr.Nodes[1], tr.Nodes[2], tr.Nodes[3], tr.Nodes[4] = tr.Nodes[4], tr.Nodes[1], tr.Nodes[2], tr.Nodes[3]
	b, err := EncodeTree(tr)
	require.NoError(t, err)
	got, err := DecodeTree(b)
	require.NoError(t, err)
	assert.Equal(t, tr, got)
	b2, err := EncodeTree(got)
	require.NoError(t, err)
	assert.Equal(t, b, b2, "encoding is canonical")

	empty, err := EncodeTree(&Tree{})
	require.NoError(t, err)
	got, err = DecodeTree(empty)
	require.NoError(t, err)
	assert.Empty(t, got.Nodes)
}

func TestEncodeTreeRejects(t *testing.T) {
	h := SumChunk([]byte("x"))
	for _, tc := range []struct {
		name    string
		nodes   []Node
		badName bool
	}{
		{"unsorted", []Node{{Name: "b", Type: NodeFile}, {Name: "a", Type: NodeFile}}, false},
		{"duplicate", []Node{{Name: "a", Type: NodeFile}, {Name: "a", Type: NodeFile}}, false},
		{"bad type", []Node{{Name: "a", Type: 9}}, false},
		{"zero type", []Node{{Name: "a"}}, false},
		{"empty name", []Node{{Name: "", Type: NodeFile}}, true},
		{"dot", []Node{{Name: ".", Type: NodeFile}}, true},
		{"dot dot", []Node{{Name: "..", Type: NodeFile}}, true},
		{"slash", []Node{{Name: "a/b", Type: NodeFile}}, true},
		{"nul", []Node{{Name: "a\x00", Type: NodeFile}}, true},
		{"too long", []Node{{Name: strings.Repeat("a", maxNameLen+1), Type: NodeFile}}, true},
		{"dir without subtree", []Node{{Name: "a", Type: NodeDir}}, false},
		{"file with subtree", []Node{{Name: "a", Type: NodeFile, Subtree: h}}, false},
		{"dir with content", []Node{{Name: "a", Type: NodeDir, Subtree: h, Content: []Hash{h}}}, false},
		{"symlink without target", []Node{{Name: "a", Type: NodeSymlink}}, false},
		{"file with target", []Node{{Name: "a", Type: NodeFile, LinkTarget: "x"}}, false},
		{"negative size", []Node{{Name: "a", Type: NodeFile, Size: -1}}, false},
		{"xattrs unsorted", []Node{{Name: "a", Type: NodeFile, Xattrs: []Xattr{{Name: "b"}, {Name: "a"}}}}, false},
		{"xattrs duplicate", []Node{{Name: "a", Type: NodeFile, Xattrs: []Xattr{{Name: "a"}, {Name: "a"}}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EncodeTree(&Tree{Nodes: tc.nodes})
			assert.ErrorIs(t, err, ErrCorrupt)
			assert.Equal(t, tc.badName, errors.Is(err, ErrBadName), "ErrBadName: %v", err)
		})
	}
}

func TestDecodeTreeRejects(t *testing.T) {
	good, err := EncodeTree(&Tree{Nodes: []Node{{Name: "a", Type: NodeFile, Size: 1}, {Name: "b", Type: NodeFile}}})
	require.NoError(t, err)
	swapped := append([]byte(nil), good...)
	// Swap the two names: "a" and "b" are single bytes at known places.
	ia, ib := 4, -1
	for i := ia + 1; i < len(swapped); i++ {
		if swapped[i] == 'b' {
			ib = i
			break
		}
	}
	swapped[ia], swapped[ib] = swapped[ib], swapped[ia]
	nonMinimal := append([]byte{'T', 1, 0x82, 0x00}, good[3:]...) // count 2 as two bytes
	huge := binary.AppendUvarint([]byte{'T', 1}, 1<<40)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte{'X'}, good[1:]...)},
		{"newer version", append([]byte{'T', 2}, good[2:]...)},
		{"trailing bytes", append(append([]byte(nil), good...), 0)},
		{"truncated", good[:len(good)-1]},
		{"unsorted", swapped},
		{"non-minimal varint", nonMinimal},
		{"oversized count", huge},
		{"oversized name", append([]byte{'T', 1, 1}, binary.AppendUvarint(nil, 1<<30)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeTree(tc.b)
			assert.ErrorIs(t, err, ErrCorrupt)
		})
	}
	_, err = DecodeTree(good)
	assert.NoError(t, err)
}

func FuzzDecodeTree(f *testing.F) {
	b, _ := EncodeTree(&Tree{Nodes: []Node{{Name: "a", Type: NodeFile, Size: 3, Content: []Hash{SumChunk([]byte("abc"))}}}})
	f.Add(b)
	tr := sampleTree()
	tr.Nodes = tr.Nodes[:1]
	b, _ = EncodeTree(tr)
	f.Add(b)
	f.Add([]byte{'T', 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := DecodeTree(data)
		if err != nil {
			assert.ErrorIs(t, err, ErrCorrupt)
			return
		}
		again, err := EncodeTree(tr)
		require.NoError(t, err)
		require.Equal(t, data, again, "a decoded tree re-encodes to the same bytes")
	})
}

func BenchmarkTreeEncode(b *testing.B) {
	tr := benchTree(200)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := EncodeTree(tr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTreeDecode(b *testing.B) {
	enc, _ := EncodeTree(benchTree(200))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeTree(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTree is a directory of n files, like a site-packages module dir.
func benchTree(n int) *Tree {
	t := &Tree{}
	for i := 0; i < n; i++ {
		t.Nodes = append(t.Nodes, Node{Name: string(rune('a'+i/26%26)) + string(rune('a'+i%26)) + "_module.py", Type: NodeFile,
			Mode: 0o644, MtimeNs: 1700000000000000000 + int64(i), Size: 4000, Content: []Hash{SumChunk([]byte{byte(i)})}})
	}
	return t
}

// TestBadNameSentinel: a node name that is not a single path element is
// ErrBadName (and ErrCorrupt, with the same text as before) from
// DecodeTree, EncodeTree and PutTree; other damage is not ErrBadName.
func TestBadNameSentinel(t *testing.T) {
	good, err := EncodeTree(&Tree{Nodes: []Node{{Name: "ab", Type: NodeFile}}})
	require.NoError(t, err)
	i := strings.Index(string(good), "ab")
	for _, name := range []string{"..", "a/", "a\x00"} {
		b := append([]byte(nil), good...)
		copy(b[i:], name)
		_, err := DecodeTree(b)
		require.ErrorIs(t, err, ErrBadName, "%q", name)
		require.ErrorIs(t, err, ErrCorrupt)
		assert.Contains(t, err.Error(), "corrupt data: tree: bad name")
	}
	_, err = DecodeTree(good[:len(good)-1])
	require.ErrorIs(t, err, ErrCorrupt)
	assert.NotErrorIs(t, err, ErrBadName)

	ctx := context.Background()
	s := openTest(t, "")
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	defer w.Abort()
	_, err = w.PutTree(ctx, &Tree{Nodes: []Node{{Name: ".", Type: NodeFile}}})
	require.ErrorIs(t, err, ErrBadName)
	assert.EqualError(t, err, `corrupt data: tree: bad name "."`)
}
