package pluginapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

// readAllPacked reads packed records b as an entryReader does, draining
// bodies, and returns the first error (io.EOF at the end).
func readAllPacked(b []byte, deletes bool) ([]Entry, error) {
	sent := false
	r := newEntryReader(func() (wireBatch, error) {
		if sent {
			return wireBatch{}, io.EOF
		}
		sent = true
		return wireBatch{packed: b}, nil
	}, true)
	r.deletes = deletes
	var got []Entry
	for {
		_, e, body, err := r.next()
		if err != nil {
			return got, err
		}
		if e != nil {
			got = append(got, *e)
		}
		if body != nil {
			if _, err := io.Copy(io.Discard, body); err != nil {
				return got, err
			}
		}
	}
}

// A message may carry Record messages and packed records: the packed ones
// follow.
func TestPackedRecordsFollowRecordMessages(t *testing.T) {
	pk := appendPackedRecordEntry(nil, &Entry{Path: "b", Type: TypeFile, Size: 2})
	pk = appendPackedData(pk, 2)
	pk = append(pk, "hi"...)
	sent := false
	r := newEntryReader(func() (wireBatch, error) {
		if sent {
			return wireBatch{}, io.EOF
		}
		sent = true
		return wireBatch{recs: []*enginepb.Record{
			{Kind: &enginepb.Record_BeginStream{BeginStream: "rootfs"}},
			{Kind: &enginepb.Record_Entry{Entry: &enginepb.Entry{Path: "a", Type: enginepb.EntryType_ENTRY_TYPE_DIR}}},
		}, packed: pk}, nil
	}, true)
	begin, _, _, err := r.next()
	require.NoError(t, err)
	assert.Equal(t, "rootfs", begin)
	_, e, _, err := r.next()
	require.NoError(t, err)
	assert.Equal(t, "a", e.Path)
	_, e, body, err := r.next()
	require.NoError(t, err)
	assert.Equal(t, "b", e.Path)
	b, err := io.ReadAll(body)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(b))
	_, _, _, err = r.next()
	assert.Equal(t, io.EOF, err)
}

func TestPackedRecordsRefused(t *testing.T) {
	begin := appendPackedBegin(nil, "rootfs")
	file := appendPackedRecordEntry(nil, &Entry{Path: "a", Type: TypeFile, Size: 3})
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	withFlags := func(flags byte) []byte {
		e := appendPackedRecordEntry(nil, &Entry{Path: "a", Type: TypeDir})
		e[1] = flags
		return e
	}
	xattrs := func(n uint64, pairs ...string) []byte {
		e := appendPackedRecordEntry(nil, &Entry{Path: "a", Type: TypeFile, LinkTarget: "x"})
		e = e[:len(e)-3-1-0] // drop the empty xattr count and three subtree varints
		e = binary.AppendUvarint(e, n)
		for _, p := range pairs {
			e = appendPackedString(e, p)
		}
		return append(e, 0, 0, 0)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"unknown kind", []byte{9}, "unknown record kind 9"},
		{"kind zero", cat(begin, []byte{0}), "unknown record kind 0"},
		{"truncated name", begin[:len(begin)-1], "truncated"},
		{"truncated entry", cat(begin, file[:len(file)-1]), "truncated"},
		{"entry without flags", cat(begin, []byte{packedEntry}), "truncated"},
		{"reserved flag", cat(begin, withFlags(packedReserved|byte(TypeDir))), "truncated or malformed"},
		{"bad type", cat(begin, withFlags(7)), "invalid entry type"},
		{"mode beyond uint32", cat(begin, []byte{packedEntry, byte(TypeDir), 1, 'a'}, binary.AppendUvarint(nil, 1<<32)), "malformed"},
		{"long varint", cat(begin, []byte{packedShared}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), "malformed"},
		{"shared length beyond uint32", cat(begin, file, appendPackedShared(nil, 0, 0)[:2], binary.AppendUvarint(nil, 1<<32)), "malformed"},
		{"data beyond the message", cat(begin, file, appendPackedData(nil, 3), []byte("ab")), "truncated"},
		{"short body", cat(begin, file, appendPackedData(nil, 2), []byte("ab")), "short of its size"},
		{"long body", cat(begin, file, appendPackedData(nil, 4), []byte("abcd")), "longer than its size"},
		{"stray data", cat(begin, appendPackedData(nil, 1), []byte("x")), "without a file"},
		{"shared without a ring", cat(begin, file, appendPackedShared(nil, 0, 3)), "no shared ring"},
		{"xattr count beyond the message", cat(begin, xattrs(1000, "user.a", "1")), "malformed"},
		{"duplicate xattr", cat(begin, xattrs(2, "user.a", "1", "user.a", "2")), "malformed"},
		{"unsafe path", cat(begin, appendPackedRecordEntry(nil, &Entry{Path: "../x", Type: TypeFile})), "unsafe"},
		{"delete outside sparse", cat(begin, appendPackedRecordEntry(nil, &Entry{Path: "x", Type: TypeFile, Delete: true})), "outside a sparse restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAllPacked(tc.b, false)
			require.Error(t, err)
			require.NotEqual(t, io.EOF, err)
			assert.True(t, errors.Is(err, ErrProtocol) || errors.Is(err, ErrUnsafePath), err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// FuzzPackedRecords feeds arbitrary packed records to the reader: it must
// never panic, and whatever it accepts must have a safe path and a body of
// exactly its size.
func FuzzPackedRecords(f *testing.F) {
	seed := appendPackedBegin(nil, "rootfs")
	seed = appendPackedRecordEntry(seed, &Entry{Path: "d", Type: TypeDir, Mode: 0o755})
	seed = appendPackedRecordEntry(seed, &Entry{Path: "d/a", Type: TypeFile, Size: 3, Xattrs: map[string][]byte{"user.x": []byte("y")}})
	seed = appendPackedData(seed, 3)
	seed = append(seed, "abc"...)
	seed = appendPackedRecordEntry(seed, &Entry{Path: "d/l", Type: TypeSymlink, LinkTarget: "a"})
	f.Add(seed, false)
	f.Add(appendPackedRecordEntry(appendPackedBegin(nil, "s"), &Entry{Path: "gone", Type: TypeDir, Delete: true}), true)
	f.Fuzz(func(t *testing.T, b []byte, deletes bool) {
		got, err := readAllPacked(b, deletes)
		if err != io.EOF && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrUnsafePath) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		for _, e := range got {
			if err := ValidatePath(e.Path); err != nil {
				t.Fatalf("accepted unsafe path %q", e.Path)
			}
		}
	})
}

// A packed report of written files reads back as the files it was made
// of; one naming a directory is refused.
func TestWrittenReportPacked(t *testing.T) {
	idx := ParentIndex{
		"rootfs": {
			"a":     {Size: 3, MtimeNs: 5, CtimeNs: -6, Inode: 1 << 63},
			"d/b":   {},
			"d":     {Type: TypeDir, CtimeNs: 1},
			"d/sym": {Type: TypeSymlink},
		},
		"volume:v": {"x": {Size: 1}},
	}
	for _, packed := range []bool{false, true} {
		resp := restoreResultToProto(&RestoreResult{Target: "t", Written: idx}, packed)
		for _, ps := range resp.GetWritten() {
			assert.Equal(t, packed, len(ps.GetPacked()) > 0)
			assert.Equal(t, !packed, len(ps.GetEntries()) > 0)
		}
		wire, err := proto.Marshal(resp)
		require.NoError(t, err)
		var back enginepb.RestoreResponse
		require.NoError(t, proto.Unmarshal(wire, &back))
		res, err := restoreResultFromProto(&back)
		require.NoError(t, err)
		assert.Equal(t, ParentIndex{
			"rootfs":   {"a": idx["rootfs"]["a"], "d/b": {}},
			"volume:v": {"x": {Size: 1}},
		}, res.Written)
	}
	dirs := &enginepb.RestoreResponse{WrittenReported: true, Written: []*enginepb.ParentStream{{
		Name: "rootfs", Packed: appendPackedIndex(nil, map[string]IndexEntry{"d": {Type: TypeDir}}),
	}}}
	_, err := restoreResultFromProto(dirs)
	require.ErrorIs(t, err, ErrProtocol)
}

// undoEntries are the entries of an in-place undo of change small on
// venv-full, roughly, as the host sends them: 6,551 files in 132
// directories, each file with a shared frame.
func undoEntries() []*Entry {
	var out []*Entry
	for _, p := range []string{"lib", "lib/python3.11", "lib/python3.11/site-packages", "lib/python3.11/site-packages/awscli", "lib/python3.11/site-packages/awscli/examples"} {
		out = append(out, &Entry{Path: p, Type: TypeDir, Unchanged: true})
	}
	for i := range 6551 {
		if i%50 == 0 {
			out = append(out, &Entry{Path: fmt.Sprintf("lib/python3.11/site-packages/awscli/examples/service%03d", i/50), Type: TypeDir, Mode: 0o755})
		}
		out = append(out, &Entry{Path: fmt.Sprintf("lib/python3.11/site-packages/awscli/examples/service%03d/command-%04d.rst", i/50, i),
			Type: TypeFile, Mode: 0o644, UID: 1000, GID: 1000, MtimeNs: 1700000000123456789, Size: 1900})
	}
	return out
}

// undoBatches batches entries as the host's Restore does.
func undoBatches(entries []*Entry, ring *bodyRing, packed bool) []wireBatch {
	var out []wireBatch
	b := batcher{send: func(recs []*enginepb.Record, pk []byte) error {
		out = append(out, wireBatch{recs: recs, packed: pk})
		return nil
	}, packed: packed, ring: ring}
	if err := b.beginStream("rootfs"); err != nil {
		panic(err)
	}
	for _, e := range entries {
		if err := b.entry(e, nil, false); err != nil {
			panic(err)
		}
		if e.Type == TypeFile {
			// Nothing consumes the ring here: keep the head at 0.
			ring.head = 0
			if err := b.sendFrame(0, int(e.Size)); err != nil {
				panic(err)
			}
		}
	}
	if err := b.flush(); err != nil {
		panic(err)
	}
	return out
}

// BenchmarkUndoRecords measures both ends of the records of an in-place
// undo of change small on venv-full (without bodies): building and
// marshalling the messages, and unmarshalling and reading them back.
func BenchmarkUndoRecords(b *testing.B) {
	entries := undoEntries()
	ring := &bodyRing{data: make([]byte, RingSize)}
	for _, packed := range []bool{false, true} {
		b.Run(fmt.Sprintf("packed=%v/send", packed), func(b *testing.B) {
			for b.Loop() {
				for _, m := range undoBatches(entries, ring, packed) {
					if _, err := proto.Marshal(&enginepb.RestoreMessage{Records: m.recs, Packed: m.packed}); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(fmt.Sprintf("packed=%v/receive", packed), func(b *testing.B) {
			var wire [][]byte
			for _, m := range undoBatches(entries, ring, packed) {
				w, err := proto.Marshal(&enginepb.RestoreMessage{Records: m.recs, Packed: m.packed})
				if err != nil {
					b.Fatal(err)
				}
				wire = append(wire, w)
			}
			for b.Loop() {
				i := 0
				src := recordSource{recv: func() (wireBatch, error) {
					if i == len(wire) {
						return wireBatch{}, io.EOF
					}
					var m enginepb.RestoreMessage
					if err := proto.Unmarshal(wire[i], &m); err != nil {
						return wireBatch{}, err
					}
					i++
					return wireBatch{recs: m.GetRecords(), packed: m.GetPacked()}, nil
				}}
				for {
					r, err := src.next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					if r.kind == recNone {
						b.Fatal("empty record")
					}
				}
			}
		})
	}
}
