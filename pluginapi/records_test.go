package pluginapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

func TestComparePathsIsPreOrder(t *testing.T) {
	paths := []string{"a-b", "a/b", "a", "a/b/c", "a.txt", "b", "a/a", "a/b-c", "a/b/d", "A"}
	sort.Slice(paths, func(i, j int) bool { return ComparePaths(paths[i], paths[j]) < 0 })
	// Element-wise order: a directory's contents follow it immediately,
	// before "a-b" and "a.txt", which plain string order would put first.
	assert.Equal(t, []string{"A", "a", "a/a", "a/b", "a/b/c", "a/b/d", "a/b-c", "a-b", "a.txt", "b"}, paths)
	assert.Zero(t, ComparePaths("x/y", "x/y"))
}

func TestOrderChecker(t *testing.T) {
	dir := func(p string) *Entry { return &Entry{Path: p, Type: TypeDir, Mode: 0o755} }
	file := func(p string) *Entry { return &Entry{Path: p, Type: TypeFile, Mode: 0o644} }
	for _, tc := range []struct {
		name    string
		entries []*Entry
		want    error
		msg     string
	}{
		{"ok", []*Entry{dir("a"), dir("a/b"), file("a/b/c"), file("a/d"), file("a-b"), file("z")}, nil, ""},
		{"child before parent", []*Entry{file("a/b")}, ErrProtocol, "before its parent"},
		{"parent is a file", []*Entry{file("a"), file("a/b")}, ErrProtocol, "before its parent"},
		{"unsorted", []*Entry{file("b"), file("a")}, ErrProtocol, "sorted pre-order"},
		{"duplicate", []*Entry{file("a"), file("a")}, ErrProtocol, "sorted pre-order"},
		{"string order is not pre-order", []*Entry{dir("a"), file("a-b"), file("a/c")}, ErrProtocol, ""},
		{"dotdot", []*Entry{file("../x")}, ErrUnsafePath, ".."},
		{"absolute", []*Entry{file("/x")}, ErrUnsafePath, "absolute"},
		{"empty element", []*Entry{dir("a"), file("a//b")}, ErrUnsafePath, "empty element"},
		{"bad type", []*Entry{{Path: "a", Type: 9}}, ErrProtocol, "invalid entry type"},
		{"bad mode", []*Entry{{Path: "a", Type: TypeFile, Mode: 0o100644}}, ErrProtocol, "mode"},
		{"hard link forward", []*Entry{{Path: "a", Type: TypeHardlink, LinkTarget: "b"}}, ErrProtocol, "not an earlier entry"},
		{"hard link unsafe", []*Entry{{Path: "a", Type: TypeHardlink, LinkTarget: "../a"}}, ErrUnsafePath, ""},
		{"hard link ok", []*Entry{file("a"), {Path: "b", Type: TypeHardlink, LinkTarget: "a"}}, nil, ""},
		{"xattrs from parent ok", []*Entry{{Path: "a", Type: TypeFile, Unchanged: true, XattrsFromParent: true}}, nil, ""},
		{"xattrs from parent, changed", []*Entry{{Path: "a", Type: TypeFile, XattrsFromParent: true}}, ErrProtocol, "its xattrs from the parent"},
		{"xattrs from parent, dir", []*Entry{{Path: "a", Type: TypeDir, Unchanged: true, XattrsFromParent: true}}, ErrProtocol, "its xattrs from the parent"},
		{"xattrs from parent and own", []*Entry{{Path: "a", Type: TypeFile, Unchanged: true, XattrsFromParent: true,
			Xattrs: map[string][]byte{"user.k": nil}}}, ErrProtocol, "its xattrs from the parent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o orderChecker
			var err error
			for _, e := range tc.entries {
				if err = o.check(e); err != nil {
					break
				}
			}
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// In an index-only capture any regular file may come without its xattrs
// read (XattrsFromParent without Unchanged); nothing else may.
func TestOrderCheckerIndexOnlyXattrsUnread(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    *Entry
		ok   bool
	}{
		{"file", &Entry{Path: "a", Type: TypeFile, XattrsFromParent: true}, true},
		{"directory", &Entry{Path: "a", Type: TypeDir, XattrsFromParent: true}, false},
		{"symlink", &Entry{Path: "a", Type: TypeSymlink, LinkTarget: "b", XattrsFromParent: true}, false},
		{"file with xattrs", &Entry{Path: "a", Type: TypeFile, XattrsFromParent: true, Xattrs: map[string][]byte{"user.k": nil}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := orderChecker{indexOnly: true}
			err := o.check(tc.e)
			if tc.ok {
				require.NoError(t, err)
				var full orderChecker
				require.ErrorIs(t, full.check(tc.e), ErrProtocol, "only in an index-only capture")
				return
			}
			require.ErrorIs(t, err, ErrProtocol)
			assert.Contains(t, err.Error(), "its xattrs from the parent")
		})
	}
}

// entryWithBody is what a batcher is given and an entryReader returns.
type entryWithBody struct {
	stream string
	e      Entry
	body   []byte
}

// roundTripWith packs items with a batcher and reads them back, returning
// the messages and what was read; with fill set, the bodies of files are
// given with batcher.entryFill; with packed, the records go packed.
func roundTripWith(t *testing.T, items []entryWithBody, fill, packed bool) ([]wireBatch, []entryWithBody) {
	t.Helper()
	var msgs []wireBatch
	b := batcher{send: func(recs []*enginepb.Record, pk []byte) error {
		if packed {
			require.Empty(t, recs)
		} else {
			require.Empty(t, pk)
		}
		msgs = append(msgs, wireBatch{recs: recs, packed: pk})
		return nil
	}, packed: packed}
	cur := ""
	for _, it := range items {
		if it.stream != cur {
			cur = it.stream
			require.NoError(t, b.beginStream(cur))
		}
		e := it.e
		withBody := e.Type == TypeFile && !e.Unchanged
		if fill && withBody {
			require.NoError(t, b.entryFill(&e, func(buf []byte) error {
				require.Len(t, buf, len(it.body))
				copy(buf, it.body)
				return nil
			}))
			continue
		}
		require.NoError(t, b.entry(&e, bytes.NewReader(it.body), withBody))
	}
	require.NoError(t, b.flush())

	i := 0
	r := newEntryReader(func() (wireBatch, error) {
		if i == len(msgs) {
			return wireBatch{}, io.EOF
		}
		i++
		return msgs[i-1], nil
	}, true)
	var got []entryWithBody
	stream := ""
	for {
		begin, e, body, err := r.next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if e == nil {
			stream = begin
			continue
		}
		it := entryWithBody{stream: stream, e: *e}
		if body != nil {
			it.body, err = io.ReadAll(body)
			require.NoError(t, err)
		}
		got = append(got, it)
	}
	return msgs, got
}

func TestBatcherRoundTrip(t *testing.T) {
	var items []entryWithBody
	items = append(items, entryWithBody{stream: "rootfs", e: Entry{Path: "d", Type: TypeDir, Mode: 0o755}})
	sizes := []int{0, 1, 100, MaxFrameSize - 1, MaxFrameSize, MaxFrameSize + 1, 3*MaxFrameSize + 5, 7}
	for i, n := range sizes {
		body := bytes.Repeat([]byte{byte(i + 1)}, n)
		items = append(items, entryWithBody{stream: "rootfs", e: Entry{Path: fmt.Sprintf("d/f%02d", i), Type: TypeFile, Mode: 0o644, Size: int64(n)}, body: body})
	}
	items = append(items,
		entryWithBody{stream: "rootfs", e: Entry{Path: "d/link", Type: TypeSymlink, Mode: 0o777, UID: 1 << 31, GID: 7, MtimeNs: -5, LinkTarget: "../x y"}},
		entryWithBody{stream: "rootfs", e: Entry{Path: "d/same", Type: TypeDir, Mode: 0o1777, Unchanged: true, CtimeNs: 1 << 62, Inode: 1<<64 - 1, SubtreeFiles: 3, SubtreeDirs: 1, SubtreeBytes: 1 << 40}},
		entryWithBody{stream: "rootfs", e: Entry{Path: "d/x", Type: TypeFile, Mode: 0o4755, Size: 2, Xattrs: map[string][]byte{"user.a": []byte("1"), "user.empty": {}, "security.capability": {0, 1, 2}}}, body: []byte("hi")},
		entryWithBody{stream: "rootfs", e: Entry{Path: "d/y", Type: TypeFile, Unchanged: true, XattrsFromParent: true, Size: 9}},
		entryWithBody{stream: "rootfs", e: Entry{Path: "d/z", Type: TypeHardlink, LinkTarget: "d/x"}},
	)
	for i := range 5000 { // many small files share messages
		items = append(items, entryWithBody{stream: "volume:data", e: Entry{Path: fmt.Sprintf("s%05d", i), Type: TypeFile, Size: 3}, body: []byte("abc")})
	}
	for _, packed := range []bool{false, true} {
		for _, fill := range []bool{false, true} {
			batcherRoundTrip(t, items, fill, packed)
		}
	}
}

func batcherRoundTrip(t *testing.T, items []entryWithBody, fill, packed bool) {
	msgs, got := roundTripWith(t, items, fill, packed)
	require.Equal(t, len(items), len(got))
	for i := range items {
		require.Equal(t, items[i].e, got[i].e)
		require.Equal(t, items[i].stream, got[i].stream)
		if items[i].e.Size > 0 && !items[i].e.Unchanged {
			require.True(t, bytes.Equal(items[i].body, got[i].body), items[i].e.Path)
		}
	}
	total := 0
	for _, m := range msgs {
		size := proto.Size(&enginepb.CaptureResponse{Records: m.recs, Packed: m.packed})
		require.LessOrEqual(t, size, MaxMessageSize)
		for _, r := range m.recs {
			require.LessOrEqual(t, len(r.GetData()), MaxFrameSize)
		}
		for p := (packedReader{b: m.packed}); p.more(); {
			r, err := p.next()
			require.NoError(t, err)
			require.LessOrEqual(t, len(r.data), MaxFrameSize)
		}
		total += size
	}
	// About one message per MiB of bodies, not one per file.
	assert.Less(t, len(msgs), 20, "messages")
}

func TestEntryReaderRefuses(t *testing.T) {
	file := func(p string, size int64) *enginepb.Record {
		return &enginepb.Record{Kind: &enginepb.Record_Entry{Entry: &enginepb.Entry{Path: p, Type: enginepb.EntryType_ENTRY_TYPE_FILE, Size: size}}}
	}
	data := func(n int) *enginepb.Record {
		return &enginepb.Record{Kind: &enginepb.Record_Data{Data: make([]byte, n)}}
	}
	begin := &enginepb.Record{Kind: &enginepb.Record_BeginStream{BeginStream: "rootfs"}}
	for _, tc := range []struct {
		name string
		recs []*enginepb.Record
		msg  string
	}{
		{"entry before stream", []*enginepb.Record{file("a", 0)}, "before any stream"},
		{"stream twice", []*enginepb.Record{begin, begin}, "sent twice"},
		{"empty stream name", []*enginepb.Record{{Kind: &enginepb.Record_BeginStream{}}}, "empty name"},
		{"stray data", []*enginepb.Record{begin, data(1)}, "without a file"},
		{"short body at end", []*enginepb.Record{begin, file("a", 5), data(2)}, "short of its size"},
		{"short body then entry", []*enginepb.Record{begin, file("a", 5), data(2), file("b", 0)}, "short of its size"},
		{"long body", []*enginepb.Record{begin, file("a", 1), data(2)}, "longer than its size"},
		{"big frame", []*enginepb.Record{begin, file("a", MaxFrameSize+1), data(MaxFrameSize + 1)}, "exceeds"},
		{"empty record", []*enginepb.Record{begin, {}}, "empty or unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := false
			r := newEntryReader(func() (wireBatch, error) {
				if sent {
					return wireBatch{}, io.EOF
				}
				sent = true
				return wireBatch{recs: tc.recs}, nil
			}, true)
			var err error
			for err == nil {
				_, _, body, nerr := r.next()
				err = nerr
				if body != nil {
					_, err = io.Copy(io.Discard, body)
				}
			}
			require.ErrorIs(t, err, ErrProtocol)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// FuzzEntryReader feeds arbitrary messages to the host's reader: it must
// never panic, and whatever it accepts must have a safe path and a body of
// exactly its size.
func FuzzEntryReader(f *testing.F) {
	seed := func(recs ...*enginepb.Record) []byte {
		b, err := proto.Marshal(&enginepb.CaptureResponse{Records: recs})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed(&enginepb.Record{Kind: &enginepb.Record_BeginStream{BeginStream: "rootfs"}},
		&enginepb.Record{Kind: &enginepb.Record_Entry{Entry: &enginepb.Entry{Path: "a", Type: 1, Size: 3}}},
		&enginepb.Record{Kind: &enginepb.Record_Data{Data: []byte("abc")}}))
	f.Add(seed(&enginepb.Record{Kind: &enginepb.Record_BeginStream{BeginStream: "s"}},
		&enginepb.Record{Kind: &enginepb.Record_Entry{Entry: &enginepb.Entry{Path: "d", Type: 2}}},
		&enginepb.Record{Kind: &enginepb.Record_Entry{Entry: &enginepb.Entry{Path: "d/../x", Type: 1}}}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var m enginepb.CaptureResponse
		if proto.Unmarshal(msg, &m) != nil {
			return
		}
		sent := false
		r := newEntryReader(func() (wireBatch, error) {
			if sent {
				return wireBatch{}, io.EOF
			}
			sent = true
			return wireBatch{recs: m.GetRecords(), packed: m.GetPacked()}, nil
		}, true)
		for {
			_, e, body, err := r.next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrUnsafePath) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if e == nil {
				continue
			}
			if err := ValidatePath(e.Path); err != nil {
				t.Fatalf("accepted unsafe path %q", e.Path)
			}
			if body != nil {
				n, err := io.Copy(io.Discard, body)
				if err == nil && n != e.Size {
					t.Fatalf("body of %d bytes for size %d", n, e.Size)
				}
			}
		}
	})
}

// An entry marked delete is accepted only in a sparse restore, never with
// a body, and never marked unchanged too.
func TestEntryReaderDelete(t *testing.T) {
	del := &enginepb.Record{Kind: &enginepb.Record_Entry{Entry: &enginepb.Entry{Path: "gone", Type: enginepb.EntryType_ENTRY_TYPE_FILE, Size: 5, Delete: true}}}
	begin := &enginepb.Record{Kind: &enginepb.Record_BeginStream{BeginStream: "rootfs"}}
	for _, sparse := range []bool{false, true} {
		sent := false
		r := newEntryReader(func() (wireBatch, error) {
			if sent {
				return wireBatch{}, io.EOF
			}
			sent = true
			return wireBatch{recs: []*enginepb.Record{begin, del}}, nil
		}, true)
		r.deletes = sparse
		_, _, _, err := r.next()
		require.NoError(t, err)
		_, e, body, err := r.next()
		if !sparse {
			require.ErrorIs(t, err, ErrProtocol)
			continue
		}
		require.NoError(t, err)
		assert.True(t, e.Delete)
		assert.Nil(t, body, "a deletion has no body")
	}
	var o orderChecker
	require.ErrorIs(t, o.check(&Entry{Path: "x", Type: TypeFile, Delete: true, Unchanged: true}), ErrProtocol)
}
