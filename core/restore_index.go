package core

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pypj/ptest-snap/store"
)

// A restore index remembers, for one target of one engine, the file
// statistics (size, mtime, ctime, inode) the target had right after the
// last restore, and which snapshot it then equalled — but for the files the
// snapshot's own change index has with those statistics, which every
// in-place restore reads anyway (see restoreIndexMagic). The next in-place
// restore trusts a file whose statistics are still those as holding that
// snapshot's content, without reading it — the same rule a capture applies
// with its parent's change index.
//
// It lives in the store's directory, beside Badger (the store has no API
// for it yet), one file per target, replaced atomically by rename. It
// references no chunks, so GC ignores it; a lost or stale one only costs
// rewriting files that were in fact unchanged.
type restoreIndex struct {
	Engine     string
	Target     string
	SnapshotID string
	Files      store.ChangeIndex
}

const restoreIndexDir = "restore-index"

func (m *Manager) restoreIndexPath(engine, target string) string {
	sum := sha256.Sum256([]byte(engine + "\x00" + target))
	return filepath.Join(m.store.Dir(), restoreIndexDir, hex.EncodeToString(sum[:16]))
}

// loadRestoreIndex returns the restore index of a target, or nil if there
// is none (or it cannot be read: it is only an optimization).
func (m *Manager) loadRestoreIndex(ctx context.Context, engine, target string) *restoreIndex {
	data, err := os.ReadFile(m.restoreIndexPath(engine, target))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("restore index unreadable", "target", target, "err", err)
		}
		return nil
	}
	ri, err := decodeRestoreIndex(data)
	if err != nil {
		// An index written by an older version (gob) reads as not there:
		// it only costs rewriting what it would have vouched for.
		m.log.Debug("restore index unreadable", "target", target, "err", err)
		return nil
	}
	if ri.Engine != engine || ri.Target != target {
		return nil
	}
	return ri
}

// saveRestoreIndex writes a target's restore index.
func (m *Manager) saveRestoreIndex(ctx context.Context, ri *restoreIndex) error {
	p := m.restoreIndexPath(ri.Engine, ri.Target)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(encodeRestoreIndex(ri))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write restore index: %w", err)
	}
	return os.Rename(tmp.Name(), p)
}

// dropRestoreIndex forgets a target's restore index (before a restore
// changes it, so a failed restore leaves none that could be trusted).
func (m *Manager) dropRestoreIndex(engine, target string) {
	if err := os.Remove(m.restoreIndexPath(engine, target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Warn("remove restore index", "target", target, "err", err)
	}
}

// restoreIndexMagic starts a restore index file; the digit is the format's
// version. Version 3 has the same layout as 2 but leaves out the files the
// snapshot's own change index vouches for (inplacePlanner.keptIndex): a
// version that trusts only the restore index when it is of the snapshot
// restored would take every file left out for changed and rewrite it
// (~330 MB of venv-full), so a new magic makes it read none and fall back
// to the change index. Version 2, complete, is still read.
const restoreIndexMagic = "ptest-snap restore index 3\n"

// restoreIndexMagicV2 starts a complete restore index of version 2.
const restoreIndexMagicV2 = "ptest-snap restore index 2\n"

// errBadRestoreIndex: a restore index file that does not decode.
var errBadRestoreIndex = errors.New("bad restore index")

// encodeRestoreIndex lays a restore index out flat: the magic, the engine,
// target and snapshot ID, the number of streams, then per stream its name,
// its number of files and per file its path, size, mtime, ctime and inode.
// Strings are a uvarint length and the bytes; numbers are varints. It is
// several times cheaper to write and read than gob on a large target.
func encodeRestoreIndex(ri *restoreIndex) []byte {
	n := len(restoreIndexMagic) + 64 + len(ri.Engine) + len(ri.Target) + len(ri.SnapshotID)
	for stream, files := range ri.Files {
		n += len(stream) + 2*binary.MaxVarintLen64
		for p := range files {
			n += len(p) + 24
		}
	}
	b := make([]byte, 0, n)
	b = append(b, restoreIndexMagic...)
	putString := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	putString(ri.Engine)
	putString(ri.Target)
	putString(ri.SnapshotID)
	b = binary.AppendUvarint(b, uint64(len(ri.Files)))
	for stream, files := range ri.Files {
		putString(stream)
		b = binary.AppendUvarint(b, uint64(len(files)))
		for p, r := range files {
			putString(p)
			b = binary.AppendVarint(b, r.Size)
			b = binary.AppendVarint(b, r.MtimeNs)
			b = binary.AppendVarint(b, r.CtimeNs)
			b = binary.AppendUvarint(b, r.Inode)
		}
	}
	return b
}

// decodeRestoreIndex reads what encodeRestoreIndex wrote; anything else
// fails with errBadRestoreIndex. Its strings are substrings of one copy of
// data: a string allocated per path was a third of the ~25 ms of CPU that
// decoding venv-full's index took at the start of every in-place restore.
func decodeRestoreIndex(data []byte) (*restoreIndex, error) {
	d := indexDecoder{b: data, all: string(data)}
	if len(d.b) < len(restoreIndexMagic) || string(d.b[:len(restoreIndexMagic)]) != restoreIndexMagic && string(d.b[:len(restoreIndexMagicV2)]) != restoreIndexMagicV2 {
		return nil, fmt.Errorf("%w: no magic", errBadRestoreIndex)
	}
	d.b = d.b[len(restoreIndexMagic):]
	ri := &restoreIndex{Engine: d.string(), Target: d.string(), SnapshotID: d.string()}
	// Every stream takes at least 2 bytes and every file at least 5, so
	// the counts are bounded by what is left before anything is allocated.
	nstreams := d.count(2)
	ri.Files = make(store.ChangeIndex, nstreams)
	for range nstreams {
		stream := d.string()
		nfiles := d.count(5)
		if d.err != nil {
			break
		}
		if _, dup := ri.Files[stream]; dup {
			d.fail("stream %q twice", stream)
			break
		}
		files := make(map[string]store.IndexRecord, nfiles)
		for range nfiles {
			p := d.string()
			r := store.IndexRecord{Size: d.varint(), MtimeNs: d.varint(), CtimeNs: d.varint(), Inode: d.uvarint()}
			if d.err != nil {
				break
			}
			files[p] = r
		}
		ri.Files[stream] = files
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the end", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return ri, nil
}

// indexDecoder reads a restore index's fields; after the first error every
// read returns zero and err stays the first error.
type indexDecoder struct {
	b   []byte
	all string // the whole input as one string, which b is a suffix of
	err error
}

func (d *indexDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadRestoreIndex, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *indexDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *indexDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items each encoded in at least minSize bytes.
func (d *indexDecoder) count(minSize int) int {
	v := d.uvarint()
	if v > uint64(len(d.b)/minSize) {
		d.fail("count %d larger than the data", v)
		return 0
	}
	return int(v)
}

func (d *indexDecoder) string() string {
	l := d.uvarint()
	if d.err != nil {
		return ""
	}
	if l > uint64(len(d.b)) {
		d.fail("string of %d bytes past the end", l)
		return ""
	}
	off := len(d.all) - len(d.b)
	d.b = d.b[l:]
	return d.all[off : off+int(l)]
}
