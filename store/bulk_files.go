package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/pypj/ptest-snap/compress"
	"golang.org/x/sys/unix"
)

// Bulk files.
//
// The store's bulk bytes — packs ('p' values) and chunks stored alone above
// packMaxChunk — are kept in plain files under bulk/, one file per value,
// written with write() and read with pread(); Badger keeps the index: the
// value under the 'p' or 'c' key is a locator (bulkLoc) naming the file.
//
// Why not Badger's value log: it is a shared memory mapping that values are
// memcpy'd into and that is msync'd and truncated on rotation; on the
// project's (paravirtualised) machine the page faults and the TLB
// shootdowns of msync (folio_mkclean) cost ~0.8-0.9 s of CPU for the
// ~108 MB of an initial create of venv-full, against ~0.3 s for write()
// and fdatasync of the same bytes to files (and a restore read the value
// log through the mapping: a page fault per 4 KiB).
//
// Why one file per value rather than append-only segments: GC gives a
// value's space back by unlinking its file once the key pointing to it is
// deleted, with no compaction; a pack that is partly live is rewritten
// whole by repack as before. A venv-full snapshot is ~250 files (129 packs,
// ~110 large chunks). Measured on this machine, 400 files of 270 KiB
// against 14 segments of 8 MiB (108 MB, best and worst of 3, CPU / wall):
//
//	write + fdatasync each at once               0.54-0.60 s / 1.96-2.76 s
//	write + sync_file_range(WRITE), fdatasync
//	  at the batch's commit                      0.34-0.40 s / 0.60-0.74 s
//	write, fdatasync at the batch's commit       0.32-0.50 s / 1.34-1.62 s
//	write, one syncfs                            0.28-0.36 s / 1.08-2.26 s
//	8 MiB segments, write + fdatasync            0.25-0.31 s / 0.66-1.21 s
//
// so files start their writeback as soon as they are written
// (sync_file_range) and are fdatasync'd, with one fsync of the directory,
// when the chunk queue writes the batch holding their keys: the ~0.06 s a
// segment layout might save is not worth a compacting GC. syncfs would
// wait for every other writer of the file system.
//
// Durability and crash safety: a file is fdatasync'd and its directory
// entry made durable (fsync of bulk/) before the Badger transaction that
// commits the keys pointing to it, so a key — and hence a snapshot record,
// written after the keys are synced — never points to bytes that a crash
// could lose. A file written but never referenced (a crash before its key
// was committed, a key that lost a race to a second copy, a deletion whose
// unlink a crash interrupted) is an orphan: GC removes the files no key
// names (removeOrphans), except those this process is still writing
// (bulkFiles.pending), whose keys are not committed yet.
//
// File names are random (bulkID), never content hashes: a file GC is
// deleting can never be re-created under its name by a concurrent writer.
//
// Stores written before (values inline in Badger) stay readable: a
// locator starts with bulkMarker, which neither compress's methods nor a
// pack reference (refMarker) use. The store format is 2 since (StoreFormat),
// so older binaries refuse a store that may hold locators.

// bulkMinLen: an encoded pack or large chunk shorter than this stays
// inline in Badger (a pack sealed small at a commit, a large chunk of
// zeros): a file of a few bytes would cost a 4 KiB block and a file
// descriptor held until its batch is written, where a Badger value costs
// neither.
const bulkMinLen = 16 << 10

// bulkDirName is the directory of bulk files inside the store directory.
const bulkDirName = "bulk"

// bulkMarker starts a value that is a locator of a bulk file.
const bulkMarker = 0x81

// metaFile is the user meta of a chunk or pack entry whose value is a
// bulk locator, so GC finds the files to delete without reading values.
const metaFile = 2

type bulkID [16]byte

// String is the hex form: the file's name.
func (id bulkID) String() string { return hex.EncodeToString(id[:]) }

// bulkLoc locates a stored value in a bulk file: the n bytes at off of
// file id, whose compress header says raw bytes (kept so that sizes need
// no file read).
type bulkLoc struct {
	id     bulkID
	off, n int64
	raw    int64
}

func (l bulkLoc) encode() []byte {
	b := append(make([]byte, 0, 1+len(l.id)+3*binary.MaxVarintLen64), bulkMarker)
	b = append(b, l.id[:]...)
	b = binary.AppendUvarint(b, uint64(l.off))
	b = binary.AppendUvarint(b, uint64(l.n))
	return binary.AppendUvarint(b, uint64(l.raw))
}

func isBulkLoc(v []byte) bool { return len(v) > 0 && v[0] == bulkMarker }

func decodeBulkLoc(v []byte) (bulkLoc, error) {
	var l bulkLoc
	if len(v) < 1+len(l.id)+3 || v[0] != bulkMarker {
		return l, fmt.Errorf("%w: bad bulk locator", ErrCorrupt)
	}
	copy(l.id[:], v[1:])
	rest := v[1+len(l.id):]
	var vals [3]uint64
	for i := range vals {
		x, k := binary.Uvarint(rest)
		if k <= 0 || x > 1<<40 {
			return l, fmt.Errorf("%w: bad bulk locator", ErrCorrupt)
		}
		vals[i], rest = x, rest[k:]
	}
	if len(rest) != 0 || vals[1] == 0 {
		return l, fmt.Errorf("%w: bad bulk locator", ErrCorrupt)
	}
	l.off, l.n, l.raw = int64(vals[0]), int64(vals[1]), int64(vals[2])
	return l, nil
}

// valueSizes returns what a stored value (inline or a locator) holds: its
// stored length and, from its compress header, its raw length.
func valueSizes(v []byte) (stored, raw int64, err error) {
	if isBulkLoc(v) {
		l, err := decodeBulkLoc(v)
		return l.n, l.raw, err
	}
	h, err := compress.ParseHeader(v)
	if err != nil {
		return int64(len(v)), 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return int64(len(v)), int64(h.RawLen), nil
}

// bulkFiles writes, reads and removes the bulk files of one store.
type bulkFiles struct {
	dir string

	mu sync.Mutex
	// pending are the files this process has created whose keys are not
	// committed to Badger yet: GC must not take them for orphans.
	pending map[bulkID]struct{}
}

func (b *bulkFiles) init(storeDir string) {
	b.dir = filepath.Join(storeDir, bulkDirName)
	b.pending = map[bulkID]struct{}{}
}

// makeBulkDir creates the bulk directory of a store if it is missing.
func makeBulkDir(storeDir string) error {
	dir := filepath.Join(storeDir, bulkDirName)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bulk files: %w", err)
	}
	// The new directory's entry durable before any file in it counts.
	return syncDir(storeDir)
}

func (b *bulkFiles) path(id bulkID) string { return filepath.Join(b.dir, id.String()) }

// bulkFile is a file created by create, open until sync.
type bulkFile struct {
	id bulkID
	fd int
}

// create writes enc (an encoded value) to a new file, starts its
// writeback and returns it open with its locator; the caller syncs it
// (syncFiles) before committing the locator, and the file stays pending
// until done is called.
func (b *bulkFiles) create(enc []byte) (bulkFile, []byte, error) {
	var id bulkID
	_, _ = rand.Read(id[:])
	raw := int64(0)
	if h, err := compress.ParseHeader(enc); err == nil {
		raw = int64(h.RawLen)
	}
	b.mu.Lock()
	b.pending[id] = struct{}{}
	b.mu.Unlock()
	p := b.path(id)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		b.done(id)
		return bulkFile{fd: -1}, nil, fmt.Errorf("create %s: %w", p, err)
	}
	for rest := enc; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			_ = unix.Close(fd)
			return bulkFile{fd: -1}, nil, fmt.Errorf("write %s: %w", p, err)
		}
		rest = rest[n:]
	}
	// Start the writeback now, so the fdatasync at the batch's commit
	// finds little left to write (see above).
	_ = unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	loc := bulkLoc{id: id, n: int64(len(enc)), raw: raw}
	return bulkFile{id: id, fd: fd}, loc.encode(), nil
}

// syncFiles makes files durable and closes them, then makes their
// directory entries durable; files with fd < 0 are skipped. Every file is
// closed whatever fails.
func (b *bulkFiles) syncFiles(files []bulkFile) error {
	var err error
	n := 0
	for _, f := range files {
		if f.fd < 0 {
			continue
		}
		n++
		if err == nil {
			if e := unix.Fdatasync(f.fd); e != nil {
				err = fmt.Errorf("sync %s: %w", b.path(f.id), e)
			}
		}
		_ = unix.Close(f.fd)
	}
	if err != nil || n == 0 {
		return err
	}
	return syncDir(b.dir)
}

// done ends a file's pending state: its key is committed (or never will
// be, and it is an orphan for GC).
func (b *bulkFiles) done(id bulkID) {
	b.mu.Lock()
	delete(b.pending, id)
	b.mu.Unlock()
}

// errBulkMissing is a located file that is not there: GC may have deleted
// the value since its locator was read, or the store lost it
// (Store.valueFunc tells which).
var errBulkMissing = errors.New("missing")

// read returns the value l locates, in a pooled buffer when it is large
// (buf, to be recycled with putValueBuf; nil otherwise). A missing file is
// errBulkMissing, a short one ErrCorrupt; both name the file.
func (b *bulkFiles) read(l bulkLoc) (v []byte, buf *[]byte, err error) {
	p := b.path(l.id)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil, fmt.Errorf("bulk file %s: %w", p, errBulkMissing)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bulk file %s: %w", p, err)
	}
	defer unix.Close(fd)
	if buf = getValueBuf(int(l.n)); buf != nil {
		v = *buf
	} else {
		v = make([]byte, l.n)
	}
	got := 0
	for got < len(v) {
		n, err := unix.Pread(fd, v[got:], l.off+int64(got))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			err = fmt.Errorf("bulk file %s: %w", p, err)
		} else if n == 0 {
			err = fmt.Errorf("bulk file %s: %w: %d bytes, the index says %d", p, ErrCorrupt, l.off+int64(got), l.off+l.n)
		}
		if err != nil {
			if buf != nil {
				putValueBuf(buf)
			}
			return nil, nil, err
		}
		got += n
	}
	return v, buf, nil
}

// remove deletes a file whose key is deleted; a missing file is fine.
func (b *bulkFiles) remove(id bulkID) error {
	if err := os.Remove(b.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// list returns the files in the directory with their sizes on disk;
// names that are not bulk ids are left alone.
func (b *bulkFiles) list() (map[bulkID]int64, error) {
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, err
	}
	out := make(map[bulkID]int64, len(ents))
	for _, e := range ents {
		var id bulkID
		if n, err := hex.Decode(id[:], []byte(e.Name())); err != nil || n != len(id) || len(e.Name()) != 2*len(id) {
			continue
		}
		var size int64
		if info, err := e.Info(); err == nil {
			size = info.Size()
		}
		out[id] = size
	}
	return out, nil
}

// pendingSet returns a copy of the pending files.
func (b *bulkFiles) pendingSet() map[bulkID]struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[bulkID]struct{}, len(b.pending))
	for id := range b.pending {
		out[id] = struct{}{}
	}
	return out
}

// syncDir fsyncs a directory, making its entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if e := d.Close(); err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
