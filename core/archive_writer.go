package core

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/pypj/ptest-snap/store"
)

// The archive format (".ptsa"): one self-contained, streamable file.
//
//	header   16 bytes, not compressed:
//	         magic "PTSNAPAR" | format version (uint16 BE) |
//	         compression (1 byte, 1 = zstd) | 5 zero bytes
//	body     a zstd stream of frames, each
//	         kind (1 byte) | payload length (uvarint) | payload
//	  'R'    a snapshot record (store.EncodeSnapshot's JSON); every record
//	         comes before any tree or chunk, so an importer can refuse a
//	         name clash or a newer record before reading any data
//	  'T'    a tree: its hash (32 bytes) | its canonical encoding
//	  'C'    a chunk: its hash (32 bytes) | its bytes
//	  'E'    the trailer, last: record, tree and chunk counts (uvarints) |
//	         BLAKE3-256 of the header and of every frame before the
//	         trailer, as written (uncompressed)
//
// Each tree and chunk appears once however many snapshots or files use it.
// A tree comes after everything it references (post-order), so an importer
// can store each tree as it arrives (the store accepts a tree only once
// its chunks and subtrees are stored). The importer also accepts any other
// order, holding back trees whose children have not arrived yet.
const (
	archiveMagic       = "PTSNAPAR"
	archiveVersion     = 1
	archiveHeaderSize  = 16
	archiveCompZstd    = 1
	frameRecord        = 'R'
	frameTree          = 'T'
	frameChunk         = 'C'
	frameEnd           = 'E'
	maxArchiveRecord   = 16 << 20 // store's record limit
	maxArchiveTree     = 64 << 20
	maxArchiveChunk    = 16 << 20 // 4× the chunker's largest chunk
	maxArchiveTrailer  = 3*binary.MaxVarintLen64 + 32
	maxArchiveRecords  = 1 << 16
	maxPendingTrees    = 1 << 20 // trees held back (out-of-order archives)
	archiveFrameHeader = 1 + binary.MaxVarintLen64
)

// ArchiveExtension is the file extension of an export archive.
const ArchiveExtension = ".ptsa"

// ExportProgress reports an export's progress.
type ExportProgress struct {
	Snapshots int
	Trees     int64
	Chunks    int64
	// Bytes is the uncompressed bytes written so far.
	Bytes int64
	// TotalBytes estimates Bytes at the end, for a progress bar's total:
	// the file bytes of the snapshots exported, counting for a snapshot
	// whose parent is exported too only what it added (its NewBytes). It
	// leaves out trees and framing and counts a chunk shared by unrelated
	// snapshots more than once, so Bytes may pass it; zero when unknown.
	TotalBytes int64
}

// ExportReport is the result of an export.
type ExportReport struct {
	Snapshots []*store.Snapshot
	Trees     int64
	Chunks    int64
	// Bytes is the uncompressed stream; Written what went to the writer.
	Bytes   int64
	Written int64
}

// Export writes the snapshots refs name, with every tree and chunk they
// need, to w as one archive. It streams: it holds one tree or chunk at a
// time (plus the set of hashes already written), never a whole snapshot,
// and never seeks, so w may be a pipe. progress, if set, is called after
// each frame.
func (m *Manager) Export(ctx context.Context, refs []string, w io.Writer, progress func(ExportProgress)) (*ExportReport, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("export: %w: no snapshot given", ErrInvalidOptions)
	}
	snaps, err := m.ResolveMany(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	var uniq []*store.Snapshot
	seenID := map[string]bool{}
	for _, s := range snaps {
		if !seenID[s.ID] {
			seenID[s.ID] = true
			uniq = append(uniq, s)
		}
	}
	aw, err := newArchiveWriter(w)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	rep := &ExportReport{Snapshots: uniq}
	total := exportEstimate(uniq)
	report := func() {
		if progress != nil {
			progress(ExportProgress{Snapshots: len(uniq), Trees: aw.trees, Chunks: aw.chunks, Bytes: aw.bytes, TotalBytes: total})
		}
	}
	err = func() error {
		for _, s := range uniq {
			b, err := store.EncodeSnapshot(s)
			if err != nil {
				return err
			}
			if err := aw.frame(frameRecord, nil, b); err != nil {
				return err
			}
		}
		seen := map[store.Hash]bool{}
		for _, s := range uniq {
			for _, st := range s.Streams {
				if err := m.exportTree(ctx, aw, seen, st.Root, report); err != nil {
					return fmt.Errorf("snapshot %s stream %s: %w", s.ID, st.Name, err)
				}
			}
		}
		return aw.close()
	}()
	if err != nil {
		aw.abort()
		return nil, fmt.Errorf("export: %w", err)
	}
	report()
	rep.Trees, rep.Chunks, rep.Bytes, rep.Written = aw.trees, aw.chunks, aw.bytes, aw.out.n
	m.log.Info("export", "snapshots", len(uniq), "trees", rep.Trees, "chunks", rep.Chunks, "bytes", rep.Bytes, "written", rep.Written)
	return rep, nil
}

// exportEstimate is ExportProgress.TotalBytes for snaps, from their
// records' stats (no tree is read).
func exportEstimate(snaps []*store.Snapshot) int64 {
	in := map[string]bool{}
	for _, s := range snaps {
		in[s.ID] = true
	}
	var total int64
	for _, s := range snaps {
		if s.Parent != "" && in[s.Parent] {
			total += s.Stats.NewBytes
		} else {
			total += s.Stats.LogicalBytes
		}
	}
	return total
}

// exportTree writes tree h (if not written yet) after its files' chunks
// and its subtrees.
func (m *Manager) exportTree(ctx context.Context, aw *archiveWriter, seen map[store.Hash]bool, h store.Hash, report func()) error {
	if seen[h] {
		return nil
	}
	seen[h] = true
	if err := ctx.Err(); err != nil {
		return err
	}
	// A large directory is a root and fragments (store/tree_split.go):
	// each fragment goes out as a tree frame of its own, after the
	// nodes' contents and before the root, so an importer stores the
	// same chunks under the same hashes.
	t, raw, parts, err := m.store.GetTreeChunks(ctx, h)
	if err != nil {
		return err
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		for _, c := range n.Content {
			if seen[c] {
				continue
			}
			seen[c] = true
			data, err := m.store.GetChunk(ctx, c)
			if err != nil {
				return fmt.Errorf("chunk %s: %w", c, err)
			}
			if err := aw.frame(frameChunk, c[:], data); err != nil {
				return err
			}
			aw.chunks++
			report()
		}
		if n.Type == store.NodeDir {
			if err := m.exportTree(ctx, aw, seen, n.Subtree, report); err != nil {
				return err
			}
		}
	}
	for _, p := range parts {
		if seen[p.Hash] {
			continue
		}
		seen[p.Hash] = true
		if err := aw.frame(frameTree, p.Hash[:], p.Data); err != nil {
			return err
		}
		aw.trees++
		report()
	}
	if err := aw.frame(frameTree, h[:], raw); err != nil {
		return err
	}
	aw.trees++
	report()
	return nil
}

// countingWriter counts what passes to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// archiveWriter writes the header, frames and trailer, hashing as it goes.
type archiveWriter struct {
	out     *countingWriter
	zw      *zstd.Encoder
	sum     *blake3.Hasher
	records int64
	trees   int64
	chunks  int64
	bytes   int64
	hdr     [archiveFrameHeader]byte
}

func newArchiveWriter(w io.Writer) (*archiveWriter, error) {
	aw := &archiveWriter{out: &countingWriter{w: w}, sum: blake3.New()}
	var h [archiveHeaderSize]byte
	copy(h[:], archiveMagic)
	binary.BigEndian.PutUint16(h[8:], archiveVersion)
	h[10] = archiveCompZstd
	if _, err := aw.out.Write(h[:]); err != nil {
		return nil, err
	}
	aw.sum.Write(h[:])
	aw.bytes = archiveHeaderSize
	zw, err := zstd.NewWriter(aw.out, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, err
	}
	aw.zw = zw
	return aw, nil
}

// frame writes one frame whose payload is prefix followed by body.
func (aw *archiveWriter) frame(kind byte, prefix, body []byte) error {
	aw.hdr[0] = kind
	n := binary.PutUvarint(aw.hdr[1:], uint64(len(prefix)+len(body)))
	hdr := aw.hdr[:1+n]
	for _, p := range [][]byte{hdr, prefix, body} {
		if len(p) == 0 {
			continue
		}
		if _, err := aw.zw.Write(p); err != nil {
			return err
		}
		if kind != frameEnd {
			aw.sum.Write(p)
		}
		aw.bytes += int64(len(p))
	}
	if kind == frameRecord {
		aw.records++
	}
	return nil
}

// close writes the trailer and ends the zstd stream.
func (aw *archiveWriter) close() error {
	var t []byte
	t = binary.AppendUvarint(t, uint64(aw.records))
	t = binary.AppendUvarint(t, uint64(aw.trees))
	t = binary.AppendUvarint(t, uint64(aw.chunks))
	t = aw.sum.Sum(t)
	if err := aw.frame(frameEnd, nil, t); err != nil {
		return err
	}
	return aw.zw.Close()
}

// abort releases the encoder's goroutines without finishing the stream.
func (aw *archiveWriter) abort() {
	aw.zw.Reset(io.Discard)
	_ = aw.zw.Close()
}
