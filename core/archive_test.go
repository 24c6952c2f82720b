package core

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// lcReadAll reads every file of a snapshot's stream into path → content
// ("->target" for symlinks, "=>target" for hard links, "/" for dirs).
func lcReadAll(t testing.TB, m *Manager, s *store.Snapshot) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	var walk func(h store.Hash, prefix string)
	walk = func(h store.Hash, prefix string) {
		tr, err := m.Store().GetTree(ctx, h)
		require.NoError(t, err)
		for _, n := range tr.Nodes {
			p := prefix + n.Name
			switch n.Type {
			case store.NodeDir:
				out[p+"/"] = ""
				walk(n.Subtree, p+"/")
			case store.NodeSymlink:
				out[p] = "->" + n.LinkTarget
			case store.NodeHardlink:
				out[p] = "=>" + n.LinkTarget
			default:
				var b []byte
				for _, c := range n.Content {
					d, err := m.Store().GetChunk(ctx, c)
					require.NoError(t, err)
					b = append(b, d...)
				}
				out[p] = string(b)
			}
		}
	}
	for _, st := range s.Streams {
		walk(st.Root, st.Name+":")
	}
	return out
}

// lcExport exports refs from m into a byte slice, through a pipe.
func lcExport(t testing.TB, m *Manager, refs ...string) []byte {
	t.Helper()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := m.Export(context.Background(), refs, pw, nil)
		pw.CloseWithError(err)
		done <- err
	}()
	b, err := io.ReadAll(pr)
	require.NoError(t, err)
	require.NoError(t, <-done)
	return b
}

func lcSnapIDs(t testing.TB, m *Manager) []string {
	t.Helper()
	all, err := m.Store().Snapshots(context.Background())
	require.NoError(t, err)
	ids := lcIDs(all)
	sort.Strings(ids)
	return ids
}

func TestExportImportRoundTripThroughAPipe(t *testing.T) {
	ctx := context.Background()
	src := lcOpen(t)
	big := strings.Repeat("0123456789abcdef", 100000) // 1.6 MB: several chunks
	meta := map[string]any{"installed_packages": map[string]string{"requests": "2.28.1"}}
	a := lcWrite(t, src, lcSnap{ID: "arch-a", Name: "alpha", Labels: map[string]string{"k": "v"}, Metadata: meta, Created: retentionClock.Add(-time.Hour),
		Streams: map[string]map[string]string{
			"rootfs":      {"bin/python": "->/usr/bin/python3", "lib/big": big, "lib/same": "same", "empty/": "", "hl": "=>lib/same"},
			"volume:data": {"db": "rows"},
		}})
	b := lcWrite(t, src, lcSnap{ID: "arch-b", Streams: lcFiles("lib/big", big, "lib/same", "same", "new", "only b")})
	lcWrite(t, src, lcSnap{ID: "arch-c", Streams: lcFiles("not", "exported")})

	var progressCalls int
	var buf bytes.Buffer
	rep, err := src.Export(ctx, []string{"alpha", "arch-b", "arch-a"}, &buf, func(ExportProgress) { progressCalls++ })
	require.NoError(t, err)
	assert.Len(t, rep.Snapshots, 2, "a snapshot named twice is exported once")
	assert.Greater(t, progressCalls, 3)
	assert.Equal(t, int64(buf.Len()), rep.Written)
	assert.Less(t, rep.Written, rep.Bytes/10, "compressed")
	archive := buf.Bytes()
	assert.Equal(t, archive, lcExport(t, src, "arch-a", "arch-b"), "a pipe gets the same stream")

	dst := lcOpen(t)
	irep, err := dst.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.NoError(t, err)
	require.Len(t, irep.Snapshots, 2)
	assert.Equal(t, rep.Trees, irep.Trees)
	assert.Equal(t, rep.Chunks, irep.Chunks)
	assert.Equal(t, irep.Chunks, irep.NewChunks)
	assert.Equal(t, []string{"arch-a", "arch-b"}, lcSnapIDs(t, dst))
	for _, want := range []*store.Snapshot{a, b} {
		got, err := dst.Resolve(ctx, want.ID)
		require.NoError(t, err)
		assert.Equal(t, want.Name, got.Name)
		assert.Equal(t, want.Labels, got.Labels)
		assert.JSONEq(t, string(orEmpty(want.Metadata)), string(orEmpty(got.Metadata)))
		assert.Equal(t, want.Streams, got.Streams)
		assert.True(t, want.CreatedAt.Equal(got.CreatedAt))
		assert.Equal(t, lcReadAll(t, src, want), lcReadAll(t, dst, got))
	}
	vr, err := dst.Store().Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, vr.Problems)

	// Importing again: already there, skipped.
	irep, err = dst.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.NoError(t, err)
	assert.Empty(t, irep.Snapshots)
	assert.Equal(t, []string{"arch-a", "arch-b"}, irep.Skipped)

	// A store that already holds most chunks stores only what it lacks.
	third := lcOpen(t)
	lcWrite(t, third, lcSnap{ID: "has-big", Streams: lcFiles("big", big)})
	irep, err = third.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.NoError(t, err)
	assert.Less(t, irep.NewBytes, int64(len(big)/2))
	assert.Less(t, irep.NewChunks, irep.Chunks)
}

func orEmpty(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

func TestImportNameAndIDClash(t *testing.T) {
	ctx := context.Background()
	src := lcOpen(t)
	lcWrite(t, src, lcSnap{ID: "clash-1", Name: "base", Streams: lcFiles("f", "src")})
	archive := lcExport(t, src, "base")

	dst := lcOpen(t)
	lcWrite(t, dst, lcSnap{ID: "other", Name: "base", Streams: lcFiles("f", "dst")})
	_, err := dst.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.ErrorIs(t, err, ErrNameTaken)
	assert.Equal(t, []string{"other"}, lcSnapIDs(t, dst))

	rep, err := dst.Import(ctx, bytes.NewReader(archive), ImportOptions{Rename: true})
	require.NoError(t, err)
	require.Len(t, rep.Snapshots, 1)
	assert.Equal(t, "base-imported", rep.Snapshots[0].Name)
	assert.Equal(t, "base-imported", rep.Renamed["name:base"])

	// Same ID, different content.
	dst2 := lcOpen(t)
	lcWrite(t, dst2, lcSnap{ID: "clash-1", Streams: lcFiles("f", "different")})
	_, err = dst2.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.ErrorIs(t, err, ErrIDTaken)
	rep, err = dst2.Import(ctx, bytes.NewReader(archive), ImportOptions{Rename: true})
	require.NoError(t, err)
	require.Len(t, rep.Snapshots, 1)
	assert.NotEqual(t, "clash-1", rep.Snapshots[0].ID)
	assert.Equal(t, rep.Snapshots[0].ID, rep.Renamed["clash-1"])
	got, err := dst2.Resolve(ctx, "base")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"rootfs:f": "src"}, lcReadAll(t, dst2, got))
}

// hostileCase is one archive of the hostile set and the error it must get.
type hostileCase struct {
	file string
	want error
}

var hostileCases = []hostileCase{
	{"not-an-archive.ptsa", ErrArchiveFormat},
	{"empty.ptsa", ErrArchiveTruncated},
	{"wrong-version.ptsa", ErrArchiveVersion},
	{"newer-record.ptsa", ErrNewerFormat},
	{"truncated.ptsa", ErrArchiveTruncated},
	{"bit-flipped.ptsa", ErrArchiveCorrupt},
	{"bad-chunk-hash.ptsa", ErrArchiveCorrupt},
	{"checksum-mismatch.ptsa", ErrArchiveChecksum},
	{"oversized-length.ptsa", ErrArchiveTooLarge},
	{"path-traversal-name.ptsa", ErrArchiveUnsafePath},
	{"path-traversal-link.ptsa", ErrArchiveUnsafePath},
	{"absolute-link.ptsa", ErrArchiveUnsafePath},
	{"symlink-escape.ptsa", ErrArchiveSymlinkEscape},
	{"missing-chunk.ptsa", ErrArchiveIncomplete},
	{"hostile-id.ptsa", ErrInvalidID},
}

// archiveErrors are the distinct refusals; a hostile case must match its
// own and no other (ErrArchiveVersion wraps ErrNewerFormat, and both path
// errors wrap pluginapi.ErrUnsafePath, by design).
var archiveErrors = []error{
	ErrArchiveFormat, ErrArchiveVersion, ErrArchiveTruncated, ErrArchiveChecksum, ErrArchiveCorrupt,
	ErrArchiveTooLarge, ErrArchiveIncomplete, ErrArchiveUnsafePath, ErrArchiveSymlinkEscape, ErrInvalidID,
}

func TestImportRefusesHostileArchives(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join("testdata", "archives")
	if *updateTestdata {
		writeHostileArchives(t, dir)
	}
	m := lcOpen(t)
	keep := lcWrite(t, m, lcSnap{ID: "keep", Name: "keep", Streams: lcFiles("f", "kept")})
	u0, err := m.Store().Usage(ctx)
	require.NoError(t, err)
	for _, tc := range hostileCases {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tc.file))
			require.NoError(t, err)
			_, err = m.Import(ctx, bytes.NewReader(b), ImportOptions{Rename: true})
			require.ErrorIs(t, err, tc.want)
			for _, other := range archiveErrors {
				if other != tc.want && !(tc.want == ErrArchiveSymlinkEscape && other == ErrArchiveUnsafePath) {
					assert.False(t, errors.Is(err, other), "%v also matches %v", err, other)
				}
			}
			t.Log(err)
		})
	}
	// The store is exactly as it was: the one snapshot, and after gc the
	// same chunks.
	assert.Equal(t, []string{"keep"}, lcSnapIDs(t, m))
	_, err = m.GC(ctx)
	require.NoError(t, err)
	u1, err := m.Store().Usage(ctx)
	require.NoError(t, err)
	assert.Equal(t, u0.Chunks, u1.Chunks)
	assert.Equal(t, u0.ChunkBytes, u1.ChunkBytes)
	assert.Equal(t, map[string]string{"rootfs:f": "kept"}, lcReadAll(t, m, keep))
	var failed int
	require.NoError(t, m.Events(ctx, EventsOptions{Types: []EventType{EventImportFailed}}, func(Event) error { failed++; return nil }))
	assert.Equal(t, len(hostileCases), failed)
}

func TestHostileSymlinkEscapeIsAlsoUnsafePath(t *testing.T) {
	assert.ErrorIs(t, ErrArchiveSymlinkEscape, pluginapi.ErrUnsafePath)
	assert.ErrorIs(t, ErrArchiveUnsafePath, pluginapi.ErrUnsafePath)
	assert.ErrorIs(t, ErrArchiveVersion, ErrNewerFormat)
}

// rawArchive builds an archive from raw frames, for the hostile set.
type rawArchive struct {
	version   uint16
	frames    [][2][]byte // kind (1 byte), payload
	badSum    bool        // write a wrong checksum in the trailer
	noTrailer bool
}

func (ra rawArchive) bytes(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	aw, err := newArchiveWriter(&buf)
	require.NoError(t, err)
	for _, f := range ra.frames {
		require.NoError(t, aw.frame(f[0][0], nil, f[1]))
		switch f[0][0] {
		case frameTree:
			aw.trees++
		case frameChunk:
			aw.chunks++
		}
	}
	if ra.badSum {
		aw.sum.Write([]byte("tampered"))
	}
	if ra.noTrailer {
		require.NoError(t, aw.zw.Close())
	} else {
		require.NoError(t, aw.close())
	}
	b := buf.Bytes()
	if ra.version != 0 {
		binary.BigEndian.PutUint16(b[8:], ra.version)
	}
	return b
}

func recFrame(t testing.TB, s *store.Snapshot) [2][]byte {
	t.Helper()
	b, err := store.EncodeSnapshot(s)
	require.NoError(t, err)
	return [2][]byte{{frameRecord}, b}
}

func treeFrame(t testing.TB, tr *store.Tree) ([2][]byte, store.Hash) {
	t.Helper()
	b, err := store.EncodeTree(tr)
	require.NoError(t, err)
	h := store.SumChunk(b)
	return [2][]byte{{frameTree}, append(append([]byte{}, h[:]...), b...)}, h
}

func rawTreeFrame(b []byte) ([2][]byte, store.Hash) {
	h := store.SumChunk(b)
	return [2][]byte{{frameTree}, append(append([]byte{}, h[:]...), b...)}, h
}

func chunkFrame(data string) ([2][]byte, store.Hash) {
	h := store.SumChunk([]byte(data))
	return [2][]byte{{frameChunk}, append(append([]byte{}, h[:]...), data...)}, h
}

func hostileRecord(root store.Hash) *store.Snapshot {
	return &store.Snapshot{ID: "hostile", Name: "hostile", Engine: "dir", EnvID: "h", CreatedAt: retentionClock,
		Streams: []store.Stream{{Name: "rootfs", Root: root}}}
}

// linkArchive is one stream holding the given nodes plus a file "f".
func linkArchive(t testing.TB, nodes ...store.Node) []byte {
	cf, ch := chunkFrame("file body")
	all := append([]store.Node{{Name: "f", Type: store.NodeFile, Mode: 0o644, Size: 9, Content: []store.Hash{ch}}}, nodes...)
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	tf, th := treeFrame(t, &store.Tree{Nodes: all})
	return rawArchive{frames: [][2][]byte{recFrame(t, hostileRecord(th)), tf, cf}}.bytes(t)
}

// writeHostileArchives regenerates testdata/archives (go test -run Hostile -update).
func writeHostileArchives(t *testing.T, dir string) {
	require.NoError(t, os.MkdirAll(dir, 0o755))
	put := func(name string, b []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	// A valid archive to damage.
	src := lcOpen(t)
	lcWrite(t, src, lcSnap{ID: "valid", Streams: lcFiles("a", strings.Repeat("valid archive body ", 2000), "b", "bee")})
	valid := lcExport(t, src, "valid")

	put("not-an-archive.ptsa", []byte("this is a text file, not a ptest-snap archive\n"))
	put("empty.ptsa", nil)
	put("wrong-version.ptsa", rawArchive{version: archiveVersion + 1, frames: [][2][]byte{recFrame(t, hostileRecord(store.SumChunk([]byte("x"))))}}.bytes(t))
	newer := []byte(`{"format_major":99,"format_minor":0,"id":"from-the-future","engine":"dir","env_id":"e","created_at":"2030-01-01T00:00:00Z","streams":[]}`)
	put("newer-record.ptsa", rawArchive{frames: [][2][]byte{{{frameRecord}, newer}}}.bytes(t))
	put("truncated.ptsa", valid[:len(valid)*2/3])
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 0x10
	put("bit-flipped.ptsa", flipped)

	cf, ch := chunkFrame("real content")
	tf, th := treeFrame(t, &store.Tree{Nodes: []store.Node{{Name: "f", Type: store.NodeFile, Mode: 0o644, Size: 12, Content: []store.Hash{ch}}}})
	bad := bytes.Clone(cf[1])
	bad[len(bad)-1] ^= 1 // the chunk's bytes no longer match its hash
	put("bad-chunk-hash.ptsa", rawArchive{frames: [][2][]byte{recFrame(t, hostileRecord(th)), tf, {{frameChunk}, bad}}}.bytes(t))
	put("checksum-mismatch.ptsa", rawArchive{frames: [][2][]byte{recFrame(t, hostileRecord(th)), tf, cf}, badSum: true}.bytes(t))
	// A tree naming a chunk that no archive of the set contains.
	mtf, mth := treeFrame(t, &store.Tree{Nodes: []store.Node{{Name: "f", Type: store.NodeFile, Mode: 0o644, Size: 7, Content: []store.Hash{store.SumChunk([]byte("missing"))}}}})
	put("missing-chunk.ptsa", rawArchive{frames: [][2][]byte{recFrame(t, hostileRecord(mth)), mtf}}.bytes(t))
	hostileID := hostileRecord(th)
	hostileID.ID = "../../escape"
	put("hostile-id.ptsa", rawArchive{frames: [][2][]byte{recFrame(t, hostileID), tf, cf}}.bytes(t))

	// A chunk frame declaring 1 TiB, followed by a few bytes.
	var over bytes.Buffer
	aw, err := newArchiveWriter(&over)
	require.NoError(t, err)
	require.NoError(t, aw.frame(frameRecord, nil, recFrame(t, hostileRecord(th))[1]))
	hdr := binary.AppendUvarint([]byte{frameChunk}, 1<<40)
	_, err = aw.zw.Write(append(hdr, bytes.Repeat([]byte{0xAB}, 64)...))
	require.NoError(t, err)
	require.NoError(t, aw.zw.Close())
	put("oversized-length.ptsa", over.Bytes())

	// A tree whose only node is named "..", encoded by hand (the store's
	// encoder refuses it): magic, version, 1 node, name, symlink, mode,
	// uid, gid, mtime, size, target, no xattrs.
	enc := []byte{'T', 1, 1, 2, '.', '.', byte(store.NodeSymlink), 0xff, 0x03, 0, 0, 0, 0, 4, '/', 'e', 't', 'c', 0}
	ntf, nth := rawTreeFrame(enc)
	put("path-traversal-name.ptsa", rawArchive{frames: [][2][]byte{recFrame(t, hostileRecord(nth)), ntf}}.bytes(t))

	put("path-traversal-link.ptsa", linkArchive(t, store.Node{Name: "x", Type: store.NodeHardlink, Mode: 0o644, LinkTarget: "../../etc/passwd"}))
	put("absolute-link.ptsa", linkArchive(t, store.Node{Name: "x", Type: store.NodeHardlink, Mode: 0o644, LinkTarget: "/etc/passwd"}))
	put("symlink-escape.ptsa", linkArchive(t,
		store.Node{Name: "s", Type: store.NodeSymlink, Mode: 0o777, LinkTarget: "/etc"},
		store.Node{Name: "x", Type: store.NodeHardlink, Mode: 0o644, LinkTarget: "s/passwd"}))
}

func TestImportAcceptsHardlinkToAFile(t *testing.T) {
	// The same shape as the symlink escape, minus the symlink: accepted.
	m := lcOpen(t)
	b := linkArchive(t, store.Node{Name: "x", Type: store.NodeHardlink, Mode: 0o644, LinkTarget: "f"})
	rep, err := m.Import(context.Background(), bytes.NewReader(b), ImportOptions{})
	require.NoError(t, err)
	require.Len(t, rep.Snapshots, 1)
	assert.Equal(t, map[string]string{"rootfs:f": "file body", "rootfs:x": "=>f"}, lcReadAll(t, m, rep.Snapshots[0]))
}

func TestExportErrors(t *testing.T) {
	m := lcOpen(t)
	_, err := m.Export(context.Background(), nil, io.Discard, nil)
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = m.Export(context.Background(), []string{"missing"}, io.Discard, nil)
	require.ErrorIs(t, err, ErrNotFound)
	lcWrite(t, m, lcSnap{ID: "w", Streams: lcFiles("f", "x")})
	pr, pw := io.Pipe()
	pr.CloseWithError(errors.New("reader went away"))
	_, err = m.Export(context.Background(), []string{"w"}, pw, nil)
	require.ErrorContains(t, err, "reader went away")
}

// Export writes each tree after its chunks and subtrees, so an import can
// store every tree as it arrives (nothing held back).
func TestExportIsPostOrder(t *testing.T) {
	m := lcOpen(t)
	lcWrite(t, m, lcSnap{ID: "po", Streams: map[string]map[string]string{
		"rootfs": {"a/b/c": "1", "a/d": "2", "e": "3", "f/": ""}, "volume:v": {"x": "4"}}})
	ar, err := openArchive(bytes.NewReader(lcExport(t, m, "po")))
	require.NoError(t, err)
	defer ar.close()
	seen := map[store.Hash]bool{}
	trees := 0
	for {
		kind, payload, err := ar.next()
		require.NoError(t, err)
		if kind == frameEnd {
			break
		}
		if kind == frameRecord {
			continue
		}
		var h store.Hash
		copy(h[:], payload[:32])
		if kind == frameTree {
			trees++
			tr, err := store.DecodeTree(payload[32:])
			require.NoError(t, err)
			for _, n := range tr.Nodes {
				for _, c := range n.Content {
					assert.True(t, seen[c], "chunk before its tree")
				}
				if n.Type == store.NodeDir {
					assert.True(t, seen[n.Subtree], "subtree before its tree")
				}
			}
		}
		seen[h] = true
	}
	assert.Equal(t, 5, trees, "rootfs, a, a/b, f (empty) and the volume's root, each once")
}
