package store

// This file is the agreed API of the store, written first so that core/ can be
// built against it while store/ is implemented. The store's implementer moves
// each piece into the file named by its role (hash.go, tree.go, snapshot.go,
// writer.go, gc.go, verify.go, lock.go, events.go, ...), replaces the bodies,
// and deletes this file. Signatures may grow (more fields, more methods); a
// change that breaks a caller is made together with the caller.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"
)

// Sentinel errors; every error the store returns wraps one of these where it
// applies, so callers can branch with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrCorrupt     = errors.New("corrupt data")
	ErrExists      = errors.New("already exists")
	ErrBusy        = errors.New("store is in use by another process")
	ErrNewerFormat = errors.New("written by a newer version of ptest-snap")
	ErrClosed      = errors.New("store is closed")
)

var errNotImplemented = errors.New("not implemented yet")

// Hash is the BLAKE3-256 of a chunk's uncompressed bytes.
type Hash [32]byte

// String returns the lower-case hex form.
func (h Hash) String() string { return "" }

// IsZero reports whether h is the zero hash (no content).
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses the hex form.
func ParseHash(s string) (Hash, error) { return Hash{}, errNotImplemented }

// Options configure Open.
type Options struct {
	// Dir is the store's directory, created if missing.
	Dir string
	// LockTimeout is how long Open waits for another process holding the
	// store before failing with ErrBusy. Zero means do not wait.
	LockTimeout time.Duration
	// OnWait, if set, is called once when Open has to wait, with a
	// description of the holder (pid, command, since when).
	OnWait func(holder string)
	// CompressionLevel overrides the measured default; 0 keeps it.
	CompressionLevel int
}

// Store is an open content-addressed store. It is safe for concurrent use.
type Store struct{}

// Open opens (creating if needed) the store in opts.Dir.
func Open(ctx context.Context, opts Options) (*Store, error) { return nil, errNotImplemented }

// Close flushes and closes the store and releases its lock.
func (s *Store) Close() error { return errNotImplemented }

// Dir returns the store's directory.
func (s *Store) Dir() string { return "" }

// GetChunk returns a chunk's bytes, verified against h; a mismatch is an
// error wrapping ErrCorrupt naming the chunk; a missing chunk ErrNotFound.
func (s *Store) GetChunk(ctx context.Context, h Hash) ([]byte, error) { return nil, errNotImplemented }

// HasChunk reports whether the chunk is stored.
func (s *Store) HasChunk(ctx context.Context, h Hash) (bool, error) { return false, errNotImplemented }

// NodeType is the type of a tree node.
type NodeType uint8

// Node types.
const (
	NodeFile NodeType = iota + 1
	NodeDir
	NodeSymlink
	NodeHardlink
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Node is one entry of a directory: only what a restore needs (no inode, no
// ctime), so an unchanged directory hashes the same in every snapshot.
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

// Tree is one directory, nodes sorted by name.
type Tree struct {
	Nodes []Node
}

// EncodeTree returns the canonical encoding of t.
func EncodeTree(t *Tree) ([]byte, error) { return nil, errNotImplemented }

// DecodeTree decodes a tree, refusing anything not canonical.
func DecodeTree(b []byte) (*Tree, error) { return nil, errNotImplemented }

// GetTree reads and decodes a tree, verified.
func (s *Store) GetTree(ctx context.Context, h Hash) (*Tree, error) { return nil, errNotImplemented }

// Chunker splits a stream into content-defined chunks.
type Chunker struct{}

// NewChunker returns a chunker reading r.
func NewChunker(r io.Reader) *Chunker { return &Chunker{} }

// Next returns the next chunk (valid until the next call) or io.EOF.
func (c *Chunker) Next() ([]byte, error) { return nil, errNotImplemented }

// SumChunk returns the hash of data.
func SumChunk(data []byte) Hash { return Hash{} }

// Stream is one named root of a snapshot.
type Stream struct {
	Name string
	Root Hash
}

// SnapshotStats are the figures of a snapshot's creation.
type SnapshotStats struct {
	Files        int64
	Dirs         int64
	LogicalBytes int64         // sum of file sizes
	NewBytes     int64         // uncompressed bytes of chunks this snapshot added
	StoredBytes  int64         // what those new chunks take on disk
	Duration     time.Duration // wall time of the capture
}

// Snapshot is the durable record of a snapshot.
type Snapshot struct {
	FormatMajor     int
	FormatMinor     int
	ID              string
	Name            string
	Labels          map[string]string
	Engine          string
	EngineVersion   string
	EnvID           string
	Target          string
	Parent          string
	CreatedAt       time.Time
	MetadataVersion int
	Metadata        json.RawMessage
	Env             map[string]string
	Ports           []int
	Streams         []Stream
	Stats           SnapshotStats
}

// EncodeSnapshot and DecodeSnapshot are the record's codec; DecodeSnapshot
// refuses a newer major format with ErrNewerFormat.
func EncodeSnapshot(s *Snapshot) ([]byte, error) { return nil, errNotImplemented }

// DecodeSnapshot decodes a record.
func DecodeSnapshot(b []byte) (*Snapshot, error) { return nil, errNotImplemented }

// IndexRecord is what the change index keeps of one captured file.
type IndexRecord struct {
	Size    int64
	MtimeNs int64
	CtimeNs int64
	Inode   uint64
}

// ChangeIndex maps stream → path → IndexRecord.
type ChangeIndex map[string]map[string]IndexRecord

// Writer writes one snapshot: chunks and trees, then Commit makes the record
// visible. Chunks a live Writer has put or found are protected from GC until
// Commit or Abort. A Writer is safe for concurrent use.
type Writer struct{}

// NewWriter starts writing a snapshot.
func (s *Store) NewWriter(ctx context.Context) (*Writer, error) { return nil, errNotImplemented }

// PutChunk stores data (hashing and compressing it) unless already present,
// and returns its hash. data may be reused by the caller after return.
func (w *Writer) PutChunk(ctx context.Context, data []byte) (Hash, error) {
	return Hash{}, errNotImplemented
}

// PutTree stores a tree and returns its hash.
func (w *Writer) PutTree(ctx context.Context, t *Tree) (Hash, error) { return Hash{}, errNotImplemented }

// WriterStats are the figures of what a Writer added.
type WriterStats struct {
	NewChunks   int64
	NewBytes    int64
	StoredBytes int64
}

// Stats returns what the Writer has added so far.
func (w *Writer) Stats() WriterStats { return WriterStats{} }

// Commit makes every chunk durable, then writes the record, its indexes and
// the change index atomically. A record whose Name is taken fails with
// ErrExists and nothing becomes visible.
func (w *Writer) Commit(ctx context.Context, snap *Snapshot, idx ChangeIndex) error {
	return errNotImplemented
}

// Abort drops the Writer; its chunks become garbage for the next GC.
func (w *Writer) Abort() {}

// Snapshot returns the record with the exact id.
func (s *Store) Snapshot(ctx context.Context, id string) (*Snapshot, error) {
	return nil, errNotImplemented
}

// Snapshots returns every record, oldest first.
func (s *Store) Snapshots(ctx context.Context) ([]*Snapshot, error) { return nil, errNotImplemented }

// SnapshotsByEnv returns the records of one environment of one engine,
// newest first, from the env/time index.
func (s *Store) SnapshotsByEnv(ctx context.Context, engine, envID string) ([]*Snapshot, error) {
	return nil, errNotImplemented
}

// SnapshotByName returns the record with the given name.
func (s *Store) SnapshotByName(ctx context.Context, name string) (*Snapshot, error) {
	return nil, errNotImplemented
}

// IDsWithPrefix returns the IDs starting with prefix.
func (s *Store) IDsWithPrefix(ctx context.Context, prefix string) ([]string, error) {
	return nil, errNotImplemented
}

// ChangeIndex returns the change index stored with a snapshot (ErrNotFound
// if it has none).
func (s *Store) ChangeIndex(ctx context.Context, id string) (ChangeIndex, error) {
	return nil, errNotImplemented
}

// UpdateSnapshot rewrites mutable fields of a record (name, labels).
func (s *Store) UpdateSnapshot(ctx context.Context, snap *Snapshot) error { return errNotImplemented }

// DeleteSnapshot removes a record and its indexes; its chunks go at the next GC.
func (s *Store) DeleteSnapshot(ctx context.Context, id string) error { return errNotImplemented }

// GCStats report a garbage collection.
type GCStats struct {
	ChunksKept     int64
	ChunksDeleted  int64
	BytesReclaimed int64 // stored bytes of deleted chunks
	DiskBefore     int64
	DiskAfter      int64
	Duration       time.Duration
}

// GC deletes every chunk no snapshot (and no live Writer) references, then
// runs Badger's value-log GC so the disk space comes back.
func (s *Store) GC(ctx context.Context) (GCStats, error) { return GCStats{}, errNotImplemented }

// Problem is one finding of Verify.
type Problem struct {
	SnapshotID string
	Stream     string
	Path       string
	Chunk      Hash
	Err        error // wraps ErrNotFound or ErrCorrupt
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Snapshots int
	Trees     int64
	Chunks    int64
	Bytes     int64
	Problems  []Problem
}

// Verify walks the given snapshots (all if ids is empty), re-hashes every
// tree and chunk once, and reports each missing or corrupt one with the
// snapshot and path that need it. progress, if set, is called with bytes
// checked so far.
func (s *Store) Verify(ctx context.Context, ids []string, progress func(bytes int64)) (*VerifyReport, error) {
	return nil, errNotImplemented
}

// Usage is the store's size figures.
type Usage struct {
	Chunks      int64
	ChunkBytes  int64 // uncompressed
	StoredBytes int64 // compressed, as kept
	DiskBytes   int64 // the directory's size on disk
}

// Usage returns the store's size figures.
func (s *Store) Usage(ctx context.Context) (Usage, error) { return Usage{}, errNotImplemented }

// ChunkStoredSize returns the stored (compressed) size of a chunk.
func (s *Store) ChunkStoredSize(ctx context.Context, h Hash) (int64, error) {
	return 0, errNotImplemented
}

// EventLog is an append-only log of JSON lines kept in the store's directory,
// outside Badger, so another process can read it and follow it while this
// one holds the store.
type EventLog struct{}

// Events returns the store's event log.
func (s *Store) Events() *EventLog { return &EventLog{} }

// Append adds one event (a JSON document, no newline) to the log.
func (l *EventLog) Append(ctx context.Context, event []byte) error { return errNotImplemented }

// OpenEventLog opens the event log of the store in dir for reading without
// taking the store's lock.
func OpenEventLog(dir string) (*EventLog, error) { return nil, errNotImplemented }

// Read calls fn with every event from offset on; with follow it keeps
// waiting for new ones until ctx ends. It returns the offset reached.
func (l *EventLog) Read(ctx context.Context, offset int64, follow bool, fn func(event []byte) error) (int64, error) {
	return 0, errNotImplemented
}
