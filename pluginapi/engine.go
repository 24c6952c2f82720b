package pluginapi

import (
	"context"
	"errors"
	"io"
)

// ProtocolVersion is the version of the engine protocol. The host and the
// plugin must agree on it during the go-plugin handshake; a plugin built for
// another version is refused before any RPC is made.
const ProtocolVersion = 1

// MaxFrameSize is the largest data frame an engine may send or receive.
// Bodies larger than this travel as several frames.
const MaxFrameSize = 1 << 20

// Capability names something an engine can do beyond Capture and Restore.
type Capability string

// Capabilities the host understands.
const (
	// CapRestoreInPlace: the engine can restore over an existing target,
	// keeping entries the host marks Unchanged and deleting the rest.
	CapRestoreInPlace Capability = "restore-in-place"
	// CapRestoreNewTarget: the engine can restore to a target other than the
	// one captured (a new path, a new container).
	CapRestoreNewTarget Capability = "restore-new-target"
	// CapParentIndex: the engine uses CaptureRequest.Parent to skip reading
	// unchanged files.
	CapParentIndex Capability = "parent-index"
	// CapIndexOnly: the engine honours CaptureRequest.IndexOnly (entries
	// without bodies), which the host uses to plan in-place restores.
	CapIndexOnly Capability = "index-only"
	// CapRestoreSparse: in an in-place restore with RestoreRequest.Sparse,
	// the engine takes a stream of only what changes (entries to write,
	// entries marked Delete) and leaves everything the stream does not
	// name alone. The host sends a sparse stream only to an engine that
	// declares it; others get every entry, the unchanged ones marked
	// Unchanged.
	CapRestoreSparse Capability = "restore-sparse"
	// CapParentFingerprints: the engine takes the parent index as
	// fingerprints (CaptureRequest.ParentFingerprints) and looks entries
	// up there rather than in CaptureRequest.Parent. The host then sends
	// every parent stream so, and no paths.
	CapParentFingerprints Capability = "parent-fingerprints"
)

// Info describes an engine.
type Info struct {
	Name            string
	Version         string
	ProtocolVersion int
	Capabilities    []Capability
}

// Has reports whether the engine declares capability c.
func (i Info) Has(c Capability) bool {
	for _, have := range i.Capabilities {
		if have == c {
			return true
		}
	}
	return false
}

// EntryType is the kind of a file-system entry.
type EntryType uint8

// Entry types. The zero value is invalid on purpose.
const (
	TypeFile EntryType = iota + 1
	TypeDir
	TypeSymlink
	// TypeHardlink is a further name for a regular file sent earlier in the
	// same stream; LinkTarget holds that earlier entry's Path.
	TypeHardlink
)

// String returns the type's name.
func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeHardlink:
		return "hardlink"
	}
	return "invalid"
}

// Entry is one file-system entry of a named stream.
//
// Paths are slash-separated and relative to the stream's root ("" is not
// allowed; the root itself is not sent as an entry). They never start with
// "/" and never contain "." or ".." elements; both sides refuse such paths
// (see ValidatePath). Within a stream entries come in depth-first pre-order
// with siblings sorted by name (byte order), so a directory always precedes
// its contents.
type Entry struct {
	Path string
	Type EntryType
	// Mode holds the permission bits and setuid, setgid and sticky
	// (07777), not the type bits.
	Mode    uint32
	UID     uint32
	GID     uint32
	MtimeNs int64
	// CtimeNs and Inode are filled on capture for the change index; they are
	// not stored in trees and are zero on restore.
	CtimeNs int64
	Inode   uint64
	// Size is the body's length for files; 0 otherwise.
	Size int64
	// LinkTarget is the symlink's target, verbatim, or the earlier path a
	// hard link names.
	LinkTarget string
	// Xattrs are extended attributes, if any, by name.
	Xattrs map[string][]byte
	// Unchanged, on capture: the entry matches CaptureRequest.Parent (same
	// size, mtime, ctime and inode) and its body is not sent; the host reuses
	// the parent's content. On an in-place restore: the target already holds
	// this entry exactly (content and metadata); the engine leaves it alone
	// and no body is sent.
	Unchanged bool
	// Delete, only in a sparse in-place restore (RestoreRequest.Sparse):
	// the snapshot lacks this path, which the target has (Type is what the
	// target held); the engine removes it and, for a directory, everything
	// beneath it, without following symlinks. No body is sent.
	Delete bool
	// XattrsFromParent, on capture, only on a regular file without
	// Xattrs and only when CaptureRequest.ParentXattrs is set: the engine
	// did not read the file's xattrs. On an Unchanged file the host takes
	// the parent's: the equal ctime that made the file Unchanged says they
	// did not change, and skipping the listxattr of every unchanged file
	// is a tenth of a second capture's system calls. In an IndexOnly
	// capture (never Unchanged) it may be set on any regular file: the
	// host then knows nothing of its xattrs but what the file's ctime
	// says (an in-place restore keeps such a file only when its
	// statistics, ctime included, are those it recorded with the
	// snapshot's xattrs, and rewrites it otherwise).
	XattrsFromParent bool
	// SubtreeFiles, SubtreeDirs and SubtreeBytes, on capture, only on a
	// directory marked Unchanged (CaptureRequest.UnchangedDirs): the files
	// (regular files and symlinks), directories and file bytes beneath it,
	// none of which is sent.
	SubtreeFiles, SubtreeDirs, SubtreeBytes int64
}

// IndexEntry is what the change index remembers of a captured file, so the
// next capture of the same environment can skip it without reading it.
type IndexEntry struct {
	Size    int64
	MtimeNs int64
	CtimeNs int64
	Inode   uint64
	// Type is zero for a file's record. With CaptureRequest.UnchangedDirs
	// the index also holds the parent's directories (TypeDir) and symlinks
	// (TypeSymlink), with CtimeNs and Inode only: a directory whose ctime
	// and inode are the parent's has the same names, mode, owner, mtime
	// and xattrs, since changing any of them sets its ctime.
	Type EntryType
}

// ParentIndex maps stream name → entry path → what the parent snapshot saw.
type ParentIndex map[string]map[string]IndexEntry

// Lookup returns the parent's record of path in stream, if any.
func (p ParentIndex) Lookup(stream, path string) (IndexEntry, bool) {
	if p == nil {
		return IndexEntry{}, false
	}
	e, ok := p[stream][path]
	return e, ok
}

// Identity names the environment a target is, so the host can find the
// parent snapshot of the same environment wherever the target is reached
// from (a symlinked path, a container's name or ID).
type Identity struct {
	// EnvID is stable for the life of the environment: the venv's real
	// path, the container's ID, ...
	EnvID string
	// Target is the canonical form of the target the user gave.
	Target string
}

// CaptureRequest asks an engine to capture a target.
type CaptureRequest struct {
	Target   string
	Excludes []string
	// Env and Ports are user-given configuration recorded in the metadata
	// (the original report's env vars and allocated ports).
	Env   map[string]string
	Ports []int
	// Options are engine-specific settings (key=value).
	Options map[string]string
	// Parent is the change index of the parent snapshot, or nil.
	Parent ParentIndex
	// ParentPacked, if set, is the parent's change index in its packed
	// form, per stream, given instead of Parent to a Plugin (see
	// ParentFor); the plugin's engine gets it as Parent.
	ParentPacked map[string]*PackedIndex
	// ParentFingerprints, on the engine's side, is the parent index of each
	// stream as fingerprints, set instead of Parent for an engine that
	// declares CapParentFingerprints (the host never sets it: Plugin
	// sends Parent, ParentPacked or ParentPrinted so).
	ParentFingerprints map[string]*ParentFingerprints
	// ParentPrinted, on the host's side, is the parent's change index
	// already fingerprinted as the host read it from its store, given
	// instead of Parent and ParentPacked to a Plugin that takes
	// fingerprints (TakesParentFingerprints); Plugin sends it as it is.
	ParentPrinted *PrintedParent
	// IndexOnly asks for entries without bodies (every file's body is
	// omitted, and no file is marked Unchanged). The host uses it to
	// compare a target with a snapshot before an in-place restore, giving
	// with UnchangedDirs the snapshot's own change index as Parent: a
	// directory whose subtree is as captured may then come as one entry
	// marked Unchanged, as in a capture.
	IndexOnly bool
	// ParentXattrs: the host takes the xattrs of an Unchanged entry that
	// sets XattrsFromParent from the parent snapshot; with IndexOnly, the
	// engine may leave every regular file's xattrs unread and mark it so
	// (see Entry.XattrsFromParent). Engines that do not know it send
	// xattrs as before.
	ParentXattrs bool
	// UnchangedDirs: the host accepts a directory entry marked Unchanged
	// for the directory and everything beneath it as in the parent (see
	// Entry.SubtreeFiles); Parent then holds the parent's directories and
	// symlinks too (IndexEntry.Type). Engines that do not know it ignore
	// those records and send every entry as before.
	UnchangedDirs bool
}

// Metadata is what an engine records about an environment besides its
// files: versioned, engine-specific JSON.
type Metadata struct {
	// Version of the JSON's schema, owned by the engine.
	Version int
	JSON    []byte
}

// CaptureWriter receives a capture. Calls are made from one goroutine in
// this order: WriteMetadata once, then for each stream BeginStream followed
// by its entries.
type CaptureWriter interface {
	WriteMetadata(ctx context.Context, m Metadata) error
	BeginStream(ctx context.Context, name string) error
	// WriteEntry receives one entry. For a file that is not Unchanged (and
	// not IndexOnly), body yields exactly e.Size bytes and is consumed before
	// WriteEntry returns; otherwise body is nil.
	WriteEntry(ctx context.Context, e *Entry, body io.Reader) error
}

// RestoreRequest asks an engine to restore a snapshot.
type RestoreRequest struct {
	// Target is where to restore: a path, a container name. Empty means the
	// engine's default (for example a generated container name).
	Target string
	// OriginalTarget is the target the snapshot was captured from.
	OriginalTarget string
	// InPlace restores over an existing target: entries marked Unchanged
	// are kept as they are, others rewritten, and anything in the target
	// that the snapshot lacks is deleted.
	InPlace bool
	// Replace allows replacing an existing environment of the same name
	// (for example stop and remove the original container).
	Replace bool
	Options map[string]string
	// Metadata is what the engine returned at capture.
	Metadata Metadata
	// Streams lists the snapshot's stream names, in order.
	Streams []string
	// Excludes are the glob patterns the snapshot was captured with
	// (CaptureRequest.Excludes). In place, paths matching them are neither
	// written nor deleted: they are not part of the snapshot.
	Excludes []string
	// Sparse (in place, only to an engine declaring CapRestoreSparse): the
	// stream holds only what changes — entries to write, entries marked
	// Delete, and, marked Unchanged, the directories along their paths
	// (so each entry's parent precedes it and a directory whose contents
	// change gets its mtime back). The engine leaves everything the stream
	// does not name as it is and deletes nothing else: the host found it
	// equal to the snapshot.
	Sparse bool
}

// RestoreReader yields the entries of a restore, stream by stream, in the
// same order as captured.
type RestoreReader interface {
	// Next returns the next entry and the stream it belongs to. For a file
	// that is not Unchanged, body yields exactly e.Size bytes and is valid
	// until the next call to Next. It returns io.EOF after the last entry.
	Next(ctx context.Context) (stream string, e *Entry, body io.Reader, err error)
}

// ReadyReader is a RestoreReader that can tell whether Next would return
// at once. A plugin's Restore sends the entries batched; before a call to
// Next that would wait (an in-place restore whose plan waits for the
// target's listing), it sends what it has batched, so the engine works on
// it meanwhile instead of when the batch fills.
type ReadyReader interface {
	RestoreReader
	// Ready reports whether an entry (or the end) is waiting for Next.
	Ready() bool
}

// RestoreResult says where the environment now is.
type RestoreResult struct {
	// Target is where the environment was restored (a path, a container
	// name or ID).
	Target string
	// Messages are things the user must know (a remapped port, a renamed
	// container, ...).
	Messages []string
	// Written, if not nil, holds the statistics of every regular file the
	// restore wrote, by stream and path, as they are after the restore
	// (taken after the file's last change). The host records them with
	// what it kept, so the next in-place restore trusts those files
	// without listing the target again now. nil: not reported (the host
	// lists the target); an engine reports all of them or none.
	Written ParentIndex
}

// Engine is what an engine implements. The same interface is served over
// go-plugin (Serve) and returned by the host (Client.Engine), so the core
// drives an in-process engine and a plugin alike.
type Engine interface {
	Info(ctx context.Context) (Info, error)
	Identify(ctx context.Context, target string, options map[string]string) (Identity, error)
	Capture(ctx context.Context, req *CaptureRequest, w CaptureWriter) error
	Restore(ctx context.Context, req *RestoreRequest, r RestoreReader) (*RestoreResult, error)
}

// Errors an engine returns (wrapped) so the host can branch on them; they
// keep their identity across the gRPC boundary.
var (
	// ErrTargetNotFound: the target does not exist.
	ErrTargetNotFound = errors.New("target not found")
	// ErrInvalidTarget: the target exists but is not what the engine
	// captures (not a venv, ...).
	ErrInvalidTarget = errors.New("invalid target")
	// ErrTargetExists: a restore would overwrite something without
	// InPlace or Replace.
	ErrTargetExists = errors.New("target exists")
	// ErrUnsafePath: an entry path is absolute, has "..", or would write
	// through a symlink.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrUnavailable: what the engine needs is not reachable (the Docker
	// engine, a base interpreter).
	ErrUnavailable = errors.New("unavailable")
	// ErrPermissionDenied: what the engine needs is there but refuses this
	// user (the Docker engine's socket, a file), which a user fixes
	// differently from a missing one.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnsupported: the engine cannot do what was asked.
	ErrUnsupported = errors.New("unsupported")
)
