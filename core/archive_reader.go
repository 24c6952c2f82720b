package core

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// Errors of Import: each way an archive can be refused has its own, so a
// caller (and the hostile-archive tests) can tell them apart. A record of a
// newer format is refused with ErrNewerFormat; a name or ID clash with
// ErrNameTaken or ErrIDTaken.
var (
	// ErrArchiveFormat: not a ptest-snap archive, or malformed framing.
	ErrArchiveFormat = errors.New("not a valid ptest-snap archive")
	// ErrArchiveVersion: the archive format is newer than this build reads.
	ErrArchiveVersion = fmt.Errorf("archive format %w", ErrNewerFormat)
	// ErrArchiveTruncated: the archive ends before its trailer.
	ErrArchiveTruncated = errors.New("archive is truncated")
	// ErrArchiveChecksum: the trailer's checksum (or counts) does not match
	// what was read.
	ErrArchiveChecksum = errors.New("archive checksum mismatch")
	// ErrArchiveCorrupt: a tree or chunk does not match its hash, or the
	// compressed stream is damaged (bit flips).
	ErrArchiveCorrupt = errors.New("archive data is corrupt")
	// ErrArchiveTooLarge: a frame declares a length over the format's limits.
	ErrArchiveTooLarge = errors.New("archive frame too large")
	// ErrArchiveIncomplete: a record needs a tree or chunk that is neither
	// in the archive nor in the store.
	ErrArchiveIncomplete = errors.New("archive is missing data")
	// ErrArchiveUnsafePath: a tree holds a name or link that would restore
	// outside its target ("..", ".", "/" in a name, an absolute or ".."
	// hard-link target). It wraps pluginapi.ErrUnsafePath.
	ErrArchiveUnsafePath = fmt.Errorf("archive holds an %w", pluginapi.ErrUnsafePath)
	// ErrArchiveSymlinkEscape: a hard link's target goes through a symlink
	// (so restoring it would link a file from outside the target). It wraps
	// pluginapi.ErrUnsafePath.
	ErrArchiveSymlinkEscape = fmt.Errorf("archive link through a symlink: %w", pluginapi.ErrUnsafePath)
)

// archiveReader reads and checks an archive's framing: header, bounded
// frames, the running checksum and the trailer. It knows nothing of the
// store, so it can be fuzzed alone.
type archiveReader struct {
	zr  *zstd.Decoder
	br  *bufio.Reader
	sum *blake3.Hasher
	buf bytes.Buffer
	// counts of frames read: records, trees, chunks.
	records, trees, chunks int64
	done                   bool
}

// openArchive reads and checks the header and starts decompressing.
func openArchive(r io.Reader) (*archiveReader, error) {
	var h [archiveHeaderSize]byte
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty input", ErrArchiveTruncated)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			m := min(n, len(archiveMagic))
			if string(h[:m]) == archiveMagic[:m] {
				return nil, fmt.Errorf("%w: header cut after %d bytes", ErrArchiveTruncated, n)
			}
			return nil, fmt.Errorf("%w: too short (%d bytes)", ErrArchiveFormat, n)
		}
		return nil, fmt.Errorf("read archive header: %w", err)
	}
	if string(h[:len(archiveMagic)]) != archiveMagic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrArchiveFormat, h[:len(archiveMagic)])
	}
	if v := binary.BigEndian.Uint16(h[8:]); v != archiveVersion {
		if v > archiveVersion {
			return nil, fmt.Errorf("%w: archive format %d, this build reads %d", ErrArchiveVersion, v, archiveVersion)
		}
		return nil, fmt.Errorf("%w: unknown format version %d", ErrArchiveFormat, v)
	}
	if h[10] != archiveCompZstd {
		return nil, fmt.Errorf("%w: unknown compression %d", ErrArchiveFormat, h[10])
	}
	zr, err := zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(32<<20),
		zstd.WithDecoderMaxMemory(256<<20),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	ar := &archiveReader{zr: zr, br: bufio.NewReaderSize(zr, 256<<10), sum: blake3.New()}
	ar.sum.Write(h[:])
	return ar, nil
}

// close releases the decoder.
func (ar *archiveReader) close() { ar.zr.Close() }

// readErr maps an error of the decompressed stream.
func readErr(err error, what string) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %s", ErrArchiveTruncated, what)
	case errors.Is(err, zstd.ErrCRCMismatch), errors.Is(err, zstd.ErrMagicMismatch),
		errors.Is(err, zstd.ErrBlockTooSmall), errors.Is(err, zstd.ErrReservedBlockType),
		errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded),
		errors.Is(err, zstd.ErrUnknownDictionary), errors.Is(err, zstd.ErrFrameSizeExceeded),
		errors.Is(err, zstd.ErrFrameSizeMismatch), errors.Is(err, zstd.ErrWindowSizeTooSmall):
		return fmt.Errorf("%w: compressed stream: %v (%s)", ErrArchiveCorrupt, err, what)
	}
	// Any other decoder error is damaged input too.
	return fmt.Errorf("%w: compressed stream: %v (%s)", ErrArchiveCorrupt, err, what)
}

// next returns the next frame's kind and payload (valid until the next
// call). At the trailer it checks the checksum, the counts and that nothing
// follows, then returns frameEnd.
func (ar *archiveReader) next() (byte, []byte, error) {
	if ar.done {
		return 0, nil, errors.New("archive: read past the trailer")
	}
	kind, err := ar.br.ReadByte()
	if err != nil {
		return 0, nil, readErr(err, "no trailer")
	}
	length, err := binary.ReadUvarint(ar.br)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, readErr(err, "in a frame header")
		}
		if strings.Contains(err.Error(), "overflow") {
			return 0, nil, fmt.Errorf("%w: frame length overflows", ErrArchiveTooLarge)
		}
		return 0, nil, readErr(err, "in a frame header")
	}
	var limit uint64
	switch kind {
	case frameRecord:
		limit = maxArchiveRecord
	case frameTree:
		limit = maxArchiveTree + 32
	case frameChunk:
		limit = maxArchiveChunk + 32
	case frameEnd:
		limit = maxArchiveTrailer
	default:
		return 0, nil, fmt.Errorf("%w: unknown frame kind 0x%02x", ErrArchiveFormat, kind)
	}
	if length > limit {
		return 0, nil, fmt.Errorf("%w: %c frame declares %d bytes, the limit is %d", ErrArchiveTooLarge, kind, length, limit)
	}
	if (kind == frameTree || kind == frameChunk) && length < 32 {
		return 0, nil, fmt.Errorf("%w: %c frame of %d bytes has no hash", ErrArchiveFormat, kind, length)
	}
	// Grow the buffer as bytes arrive, not from the declared length, so a
	// short hostile file cannot make us allocate its claim.
	ar.buf.Reset()
	if n, err := io.CopyN(&ar.buf, ar.br, int64(length)); err != nil {
		return 0, nil, readErr(err, fmt.Sprintf("%c frame cut at %d of %d bytes", kind, n, length))
	}
	payload := ar.buf.Bytes()
	if kind != frameEnd {
		var hdr [archiveFrameHeader]byte
		hdr[0] = kind
		n := binary.PutUvarint(hdr[1:], length)
		ar.sum.Write(hdr[:1+n])
		ar.sum.Write(payload)
		switch kind {
		case frameRecord:
			ar.records++
			if ar.records > maxArchiveRecords {
				return 0, nil, fmt.Errorf("%w: more than %d records", ErrArchiveTooLarge, maxArchiveRecords)
			}
		case frameTree:
			ar.trees++
		case frameChunk:
			ar.chunks++
		}
		return kind, payload, nil
	}
	if err := ar.checkTrailer(payload); err != nil {
		return 0, nil, err
	}
	ar.done = true
	return frameEnd, nil, nil
}

// checkTrailer verifies the counts and the checksum, then that the stream
// ends.
func (ar *archiveReader) checkTrailer(t []byte) error {
	r := bytes.NewReader(t)
	var counts [3]uint64
	for i := range counts {
		v, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("%w: malformed trailer", ErrArchiveFormat)
		}
		counts[i] = v
	}
	if r.Len() != 32 {
		return fmt.Errorf("%w: malformed trailer", ErrArchiveFormat)
	}
	want := t[len(t)-32:]
	got := ar.sum.Sum(nil)
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: content hashes to %x, the trailer says %x", ErrArchiveChecksum, got[:8], want[:8])
	}
	if counts != [3]uint64{uint64(ar.records), uint64(ar.trees), uint64(ar.chunks)} {
		return fmt.Errorf("%w: trailer counts %v, read %d records, %d trees, %d chunks", ErrArchiveChecksum, counts, ar.records, ar.trees, ar.chunks)
	}
	if _, err := ar.br.ReadByte(); err == nil {
		return fmt.Errorf("%w: data after the trailer", ErrArchiveFormat)
	} else if !errors.Is(err, io.EOF) {
		return readErr(err, "after the trailer")
	}
	return nil
}

// ImportOptions configure Import.
type ImportOptions struct {
	// Rename gives an imported snapshot whose name is taken a free name
	// ("<name>-imported", "<name>-imported-2", ...), and one whose ID is
	// taken by a different snapshot a new ID, instead of refusing.
	Rename bool
	// Progress, if set, is called after each tree or chunk.
	Progress func(ImportProgress)
}

// ImportProgress reports an import's progress.
type ImportProgress struct {
	Trees, Chunks int64
	Bytes         int64 // tree and chunk bytes read
}

// ImportReport says what an import did.
type ImportReport struct {
	// Snapshots are the records made visible, as stored (renamed ones
	// carry their new name or ID).
	Snapshots []*store.Snapshot
	// Skipped are IDs already in the store with the same content.
	Skipped []string
	// Renamed maps an archive's "id" or "name:<name>" to what it became.
	Renamed map[string]string
	Trees   int64
	Chunks  int64
	// NewChunks and NewBytes are what the store did not have yet.
	NewChunks int64
	NewBytes  int64
	// Bytes is the tree and chunk bytes read.
	Bytes int64
}

// Import reads an archive written by Export and adds its snapshots. Every
// tree and chunk is verified against its hash and written through a
// store.Writer (protected from gc, invisible); the records are committed
// only after the trailer's checksum matched and every tree and chunk they
// reference is present, so a refused import makes nothing visible. What it
// wrote before refusing is unreferenced and goes at the next gc.
//
// Refusals, each its own error: ErrArchiveFormat, ErrArchiveVersion,
// ErrArchiveTruncated, ErrArchiveChecksum, ErrArchiveCorrupt,
// ErrArchiveTooLarge, ErrArchiveIncomplete, ErrArchiveUnsafePath,
// ErrArchiveSymlinkEscape, ErrNewerFormat (a record), ErrNameTaken and
// ErrIDTaken (unless Rename), ErrInvalidID.
func (m *Manager) Import(ctx context.Context, r io.Reader, opts ImportOptions) (*ImportReport, error) {
	start := time.Now()
	rep, err := m.importArchive(ctx, r, opts)
	lc := m.lc()
	if err != nil {
		lc.emit(ctx, Event{Type: EventImportFailed, Err: err, Error: err.Error(), Duration: time.Since(start)})
		return nil, fmt.Errorf("import: %w", err)
	}
	for _, s := range rep.Snapshots {
		ev := Event{Type: EventSnapshotImported, Duration: time.Since(start)}
		fillFromSnapshot(&ev, s)
		lc.emit(ctx, ev)
	}
	return rep, nil
}

func (m *Manager) importArchive(ctx context.Context, r io.Reader, opts ImportOptions) (*ImportReport, error) {
	ar, err := openArchive(r)
	if err != nil {
		return nil, err
	}
	defer ar.close()
	rep := &ImportReport{Renamed: map[string]string{}}
	var recs []*store.Snapshot
	var w *store.Writer
	defer func() {
		if w != nil {
			w.Abort()
		}
	}()
	// received holds the chunks read; putTrees the trees stored; pending
	// the trees read before their children (an archive not in post-order),
	// stored once everything has arrived.
	received := map[store.Hash]bool{}
	putTrees := map[store.Hash]bool{}
	pending := map[store.Hash]*heldTree{}
	// Trees are stored as they came (byte for byte, so under the hash
	// the records name): a tree of one chunk, or a large directory's
	// root after its fragments (store/tree_split.go).
	putTree := func(h store.Hash, t *heldTree) error {
		got, err := w.PutTreeBytes(ctx, t.body)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: tree %s: %v", ErrArchiveIncomplete, h, err)
			}
			if errors.Is(err, store.ErrCorrupt) {
				return fmt.Errorf("%w: tree %s: %v", ErrArchiveCorrupt, h, err)
			}
			return err
		}
		if got != h {
			return fmt.Errorf("%w: tree %s is not canonical", ErrArchiveCorrupt, h)
		}
		putTrees[h] = true
		return nil
	}
	hasHardlinks := false
	for {
		kind, payload, err := ar.next()
		if err != nil {
			return nil, err
		}
		if kind == frameEnd {
			break
		}
		if kind == frameRecord {
			if w != nil {
				return nil, fmt.Errorf("%w: a record after data", ErrArchiveFormat)
			}
			rec, err := store.DecodeSnapshot(payload)
			if err != nil {
				if errors.Is(err, store.ErrNewerFormat) {
					return nil, err
				}
				return nil, fmt.Errorf("%w: record %d: %v", ErrArchiveFormat, len(recs)+1, err)
			}
			if err := ValidateID(rec.ID); err != nil {
				return nil, err
			}
			if rec.Name != "" {
				if err := ValidateName(rec.Name); err != nil {
					return nil, err
				}
			}
			for _, o := range recs {
				if o.ID == rec.ID || (rec.Name != "" && o.Name == rec.Name) {
					return nil, fmt.Errorf("%w: snapshot %s twice", ErrArchiveFormat, rec.ID)
				}
			}
			recs = append(recs, rec)
			continue
		}
		if w == nil {
			// Records are complete: refuse clashes before reading any data.
			if len(recs) == 0 {
				return nil, fmt.Errorf("%w: no snapshot record", ErrArchiveFormat)
			}
			if err := m.resolveImportClashes(ctx, recs, opts.Rename, rep); err != nil {
				return nil, err
			}
			if w, err = m.store.NewWriter(ctx); err != nil {
				return nil, err
			}
		}
		var h store.Hash
		copy(h[:], payload[:32])
		body := payload[32:]
		rep.Bytes += int64(len(body))
		switch kind {
		case frameTree:
			if store.SumChunk(body) != h {
				return nil, fmt.Errorf("%w: tree %s does not match its hash", ErrArchiveCorrupt, h)
			}
			ht := &heldTree{body: body}
			var t *store.Tree
			ht.frags, err = store.TreeFragments(body)
			if err == nil && ht.frags == nil {
				t, err = store.DecodeTree(body)
				ht.t = t
			}
			if err != nil {
				if errors.Is(err, store.ErrBadName) {
					return nil, fmt.Errorf("%w: tree %s: %v", ErrArchiveUnsafePath, h, err)
				}
				return nil, fmt.Errorf("%w: tree %s: %v", ErrArchiveCorrupt, h, err)
			}
			ready := true
			for _, f := range ht.frags {
				ready = ready && putTrees[f]
			}
			for i := range ht.nodes() {
				n := &t.Nodes[i]
				if n.Type == store.NodeHardlink {
					hasHardlinks = true
					if err := pluginapi.ValidatePath(n.LinkTarget); err != nil {
						return nil, fmt.Errorf("%w: tree %s: hard link %q: %v", ErrArchiveUnsafePath, h, n.Name, err)
					}
				}
				for _, c := range n.Content {
					ready = ready && received[c]
				}
				if n.Type == store.NodeDir {
					ready = ready && putTrees[n.Subtree]
				}
			}
			if ready {
				if err := putTree(h, ht); err != nil {
					return nil, err
				}
			} else if len(pending) >= maxPendingTrees {
				return nil, fmt.Errorf("%w: more than %d trees before their contents", ErrArchiveTooLarge, maxPendingTrees)
			} else {
				// The frame's bytes are the reader's buffer, reused.
				ht.body = bytes.Clone(ht.body)
				pending[h] = ht
			}
			rep.Trees++
		case frameChunk:
			received[h] = true
			before := w.Stats()
			got, err := w.PutChunk(ctx, body)
			if err != nil {
				return nil, err
			}
			if got != h {
				return nil, fmt.Errorf("%w: chunk %s does not match its hash", ErrArchiveCorrupt, h)
			}
			if w.Stats().NewChunks > before.NewChunks {
				rep.NewChunks++
				rep.NewBytes += int64(len(body))
			}
			rep.Chunks++
		}
		if opts.Progress != nil {
			opts.Progress(ImportProgress{Trees: rep.Trees, Chunks: rep.Chunks, Bytes: rep.Bytes})
		}
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: no snapshot record", ErrArchiveFormat)
	}
	if w == nil {
		if err := m.resolveImportClashes(ctx, recs, opts.Rename, rep); err != nil {
			return nil, err
		}
		if w, err = m.store.NewWriter(ctx); err != nil {
			return nil, err
		}
	}
	// Trees held back: store each after its subtrees.
	var putPending func(h store.Hash) error
	putPending = func(h store.Hash) error {
		t, ok := pending[h]
		if !ok {
			return nil
		}
		delete(pending, h)
		nodes := t.nodes()
		for i := range nodes {
			if nodes[i].Type == store.NodeDir {
				if err := putPending(nodes[i].Subtree); err != nil {
					return err
				}
			}
		}
		for _, f := range t.frags {
			if err := putPending(f); err != nil {
				return err
			}
		}
		return putTree(h, t)
	}
	held := make([]store.Hash, 0, len(pending))
	for h := range pending {
		held = append(held, h)
	}
	sort.Slice(held, func(i, j int) bool { return bytes.Compare(held[i][:], held[j][:]) < 0 })
	for _, h := range held {
		if err := putPending(h); err != nil {
			return nil, err
		}
	}
	// Every root must be here or already stored.
	for _, rec := range recs {
		for _, st := range rec.Streams {
			if putTrees[st.Root] {
				continue
			}
			ok, err := m.store.HasChunk(ctx, st.Root)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("%w: snapshot %s stream %s: root tree %s is neither in the archive nor in the store", ErrArchiveIncomplete, rec.ID, st.Name, st.Root)
			}
		}
	}
	if hasHardlinks {
		for _, rec := range recs {
			if err := m.checkHardlinks(ctx, rec); err != nil {
				return nil, err
			}
		}
	}
	// Commit: each record through its own Writer (the data Writer keeps
	// every chunk protected until all are committed). A clash appearing
	// meanwhile (a concurrent create) undoes the ones already committed.
	var committed []*store.Snapshot
	for _, rec := range recs {
		if contains(rep.Skipped, rec.ID) {
			continue
		}
		cw, err := m.store.NewWriter(ctx)
		if err != nil {
			m.undoImport(committed)
			return nil, err
		}
		if err := cw.Commit(ctx, rec, nil); err != nil {
			cw.Abort()
			m.undoImport(committed)
			if errors.Is(err, store.ErrExists) {
				// Taken since the check (a concurrent create or import).
				if strings.Contains(err.Error(), "snapshot name") {
					return nil, fmt.Errorf("%w: %v", ErrNameTaken, err)
				}
				return nil, fmt.Errorf("%w: %v", ErrIDTaken, err)
			}
			return nil, err
		}
		committed = append(committed, rec)
	}
	rep.Snapshots = committed
	m.log.Info("import", "snapshots", len(committed), "skipped", len(rep.Skipped), "trees", rep.Trees,
		"chunks", rep.Chunks, "new_chunks", rep.NewChunks, "new_bytes", rep.NewBytes)
	return rep, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// undoImport deletes records an import committed before failing.
func (m *Manager) undoImport(snaps []*store.Snapshot) {
	for _, s := range snaps {
		if err := m.store.DeleteSnapshot(context.Background(), s.ID); err != nil {
			m.log.Error("import: undo failed", "snapshot", s.ID, "error", err)
		}
	}
}

// resolveImportClashes checks each record's ID and name against the store:
// the same snapshot already there is skipped; a different one with the
// same ID or name is refused, or renamed with rename.
func (m *Manager) resolveImportClashes(ctx context.Context, recs []*store.Snapshot, rename bool, rep *ImportReport) error {
	takenNames := map[string]bool{}
	for _, rec := range recs {
		cur, err := m.store.Snapshot(ctx, rec.ID)
		switch {
		case err == nil && sameContent(cur, rec):
			rep.Skipped = append(rep.Skipped, rec.ID)
			continue
		case err == nil:
			if !rename {
				return fmt.Errorf("%w: %s is already a different snapshot in this store (import with rename)", ErrIDTaken, rec.ID)
			}
			old := rec.ID
			rec.ID = NewID(rec.CreatedAt)
			rep.Renamed[old] = rec.ID
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if rec.Name == "" {
			continue
		}
		free := func(name string) (bool, error) {
			if takenNames[name] {
				return false, nil
			}
			_, err := m.store.SnapshotByName(ctx, name)
			if errors.Is(err, store.ErrNotFound) {
				return true, nil
			}
			return false, err
		}
		ok, err := free(rec.Name)
		if err != nil {
			return err
		}
		if !ok {
			if !rename {
				return fmt.Errorf("%w: %q (import with rename)", ErrNameTaken, rec.Name)
			}
			old := rec.Name
			for i := 1; !ok; i++ {
				rec.Name = old + "-imported"
				if i > 1 {
					rec.Name = fmt.Sprintf("%s-imported-%d", old, i)
				}
				if ok, err = free(rec.Name); err != nil {
					return err
				}
			}
			rep.Renamed["name:"+old] = rec.Name
		}
		takenNames[rec.Name] = true
	}
	return nil
}

// sameContent reports whether two records are the same snapshot.
func sameContent(a, b *store.Snapshot) bool {
	if a.ID != b.ID || a.Engine != b.Engine || a.EnvID != b.EnvID || !a.CreatedAt.Equal(b.CreatedAt) || len(a.Streams) != len(b.Streams) {
		return false
	}
	for i := range a.Streams {
		if a.Streams[i] != b.Streams[i] {
			return false
		}
	}
	return true
}

// checkHardlinks refuses a hard link whose target is not a regular file of
// the same stream reached through directories only: a target through a
// symlink would make the restore link a file from outside its target.
func (m *Manager) checkHardlinks(ctx context.Context, rec *store.Snapshot) error {
	for _, st := range rec.Streams {
		types := map[string]store.NodeType{}
		var links [][2]string // path, target
		var walk func(h store.Hash, prefix string) error
		walk = func(h store.Hash, prefix string) error {
			t, err := m.store.GetTree(ctx, h)
			if err != nil {
				return err
			}
			for i := range t.Nodes {
				n := &t.Nodes[i]
				p := prefix + n.Name
				types[p] = n.Type
				switch n.Type {
				case store.NodeHardlink:
					links = append(links, [2]string{p, n.LinkTarget})
				case store.NodeDir:
					if err := walk(n.Subtree, p+"/"); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if err := walk(st.Root, ""); err != nil {
			return err
		}
		for _, l := range links {
			elems := strings.Split(l[1], "/")
			for i := range elems {
				p := strings.Join(elems[:i+1], "/")
				typ, ok := types[p]
				if !ok {
					return fmt.Errorf("%w: snapshot %s: hard link %s: target %s is not in the stream", ErrArchiveUnsafePath, rec.ID, l[0], l[1])
				}
				if typ == store.NodeSymlink {
					return fmt.Errorf("%w: snapshot %s: hard link %s: target %s goes through symlink %s", ErrArchiveSymlinkEscape, rec.ID, l[0], l[1], p)
				}
				last := i == len(elems)-1
				if !last && typ != store.NodeDir || last && typ != store.NodeFile {
					return fmt.Errorf("%w: snapshot %s: hard link %s: target %s is not a file", ErrArchiveUnsafePath, rec.ID, l[0], l[1])
				}
			}
		}
	}
	return nil
}

// heldTree is a tree frame of an archive: its bytes and either the tree
// (stored as one chunk) or, for a large directory's root, its fragments.
type heldTree struct {
	body  []byte
	t     *store.Tree
	frags []store.Hash
}

// nodes returns the tree's nodes (none for a root: its fragments hold
// them).
func (t *heldTree) nodes() []store.Node {
	if t.t == nil {
		return nil
	}
	return t.t.Nodes
}
