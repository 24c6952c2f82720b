package main

import (
	"context"
	"encoding/json"
	"io"
	"time"
)

// service is everything the commands need from the core, in the CLI's own
// terms. core_service.go implements it over core.Manager; keeping the seam
// here means a change in the core's Go API touches one file, and the JSON
// the CLI prints (the types below) stays stable whatever the core's structs
// become.
type service interface {
	Create(ctx context.Context, p createParams, prog *progress) (*snapshotJSON, error)
	Restore(ctx context.Context, p restoreParams, prog *progress) (*restoreJSON, error)
	List(ctx context.Context, f listFilter) ([]snapshotJSON, error)
	Show(ctx context.Context, ref string) (*snapshotJSON, error)
	Diff(ctx context.Context, a, b string, packagesOnly bool) (*diffJSON, error)
	Stats(ctx context.Context) (*statsJSON, error)
	Delete(ctx context.Context, refs []string, dryRun bool) (*deleteJSON, error)
	Cleanup(ctx context.Context, p cleanupParams, prog *progress) (*cleanupJSON, error)
	GC(ctx context.Context, prog *progress) (*gcJSON, error)
	Verify(ctx context.Context, refs []string, prog *progress) (*verifyJSON, error)
	Export(ctx context.Context, refs []string, w io.Writer, prog *progress) (*exportJSON, error)
	ExportJSON(ctx context.Context, ref string) (json.RawMessage, error)
	Import(ctx context.Context, r io.Reader, rename bool, prog *progress) (*importJSON, error)
	// AllIDs returns every snapshot ID in the store, to shorten IDs in
	// tables to prefixes that stay unique.
	AllIDs(ctx context.Context) ([]string, error)
	Close() error
}

// serviceOptions open a service.
type serviceOptions struct {
	StoreDir    string
	LockTimeout time.Duration
	OnWait      func(holder string)
	// Quotas (0: no limit).
	MaxSnapshotsPerEnv int
	MaxStoreBytes      int64
	// EnginePins are the SHA-256 sums engines must have, by name.
	EnginePins map[string][]byte
	Verbose    bool
	Stderr     io.Writer
	// Prelaunch names an engine the command will need: it is started
	// while the store opens (engineHost.prelaunch).
	Prelaunch string
}

// createParams are the create command's inputs.
type createParams struct {
	Engine   string
	Target   string
	Name     string
	ID       string
	Labels   map[string]string
	Env      map[string]string
	Ports    []int
	Parent   string // "auto" (default), "none", or a snapshot reference
	Excludes []string
	Options  map[string]string
}

// restoreParams are the restore command's inputs.
type restoreParams struct {
	Ref       string
	Target    string
	InPlace   bool
	Container string
	Replace   bool
	Options   map[string]string
}

// listFilter selects snapshots to list; zero fields match everything.
type listFilter struct {
	Env    string
	Engine string
	Name   string
	Labels map[string]string
	Since  time.Time
	Until  time.Time
	// Sizes asks for each snapshot's exclusive bytes (a walk of every
	// snapshot's trees).
	Sizes bool
}

// cleanupParams are the cleanup command's rules.
type cleanupParams struct {
	OlderThan   time.Duration
	KeepLast    int
	KeepHourly  int
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	KeepWithin  time.Duration
	// KeepLabels are "key=value" or "key" (any value).
	KeepLabels []string
	Env        string
	Engine     string
	DryRun     bool
	// GC collects garbage after deleting.
	GC bool
}

// The types below are the documented JSON output (see jsonhelp.go). Fields
// are only ever added, never renamed or removed.

// snapshotJSON is one snapshot record.
type snapshotJSON struct {
	ID              string            `json:"id"`
	Name            string            `json:"name,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Engine          string            `json:"engine"`
	EngineVersion   string            `json:"engine_version,omitempty"`
	EnvID           string            `json:"env_id"`
	Target          string            `json:"target"`
	Parent          string            `json:"parent,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	Env             map[string]string `json:"env,omitempty"`
	Ports           []int             `json:"ports,omitempty"`
	Streams         []streamJSON      `json:"streams"`
	Stats           statsOfSnapshot   `json:"stats"`
	Size            *sizeJSON         `json:"size,omitempty"`
	MetadataVersion int               `json:"metadata_version,omitempty"`
	Metadata        json.RawMessage   `json:"metadata,omitempty"`
	FormatVersion   string            `json:"format_version,omitempty"`
}

// streamJSON is one named root of a snapshot.
type streamJSON struct {
	Name string `json:"name"`
	Root string `json:"root"`
}

// statsOfSnapshot are the figures of a snapshot's creation.
type statsOfSnapshot struct {
	Files           int64   `json:"files"`
	Dirs            int64   `json:"dirs"`
	LogicalBytes    int64   `json:"logical_bytes"`
	NewBytes        int64   `json:"new_bytes"`
	StoredBytes     int64   `json:"stored_bytes"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// sizeJSON are a snapshot's size figures as the store stands now.
type sizeJSON struct {
	LogicalBytes   int64 `json:"logical_bytes"`
	ExclusiveBytes int64 `json:"exclusive_bytes"`
	StoredBytes    int64 `json:"stored_bytes"`
}

// listJSON is the list command's document.
type listJSON struct {
	Snapshots []snapshotJSON `json:"snapshots"`
}

// restoreJSON is the restore command's document.
type restoreJSON struct {
	SnapshotID      string   `json:"snapshot_id"`
	Target          string   `json:"target"`
	InPlace         bool     `json:"in_place"`
	FilesWritten    int64    `json:"files_written"`
	FilesUnchanged  int64    `json:"files_unchanged"`
	FilesDeleted    int64    `json:"files_deleted,omitempty"`
	BytesWritten    int64    `json:"bytes_written"`
	DurationSeconds float64  `json:"duration_seconds"`
	Messages        []string `json:"messages,omitempty"`
}

// diffJSON is the diff command's document.
type diffJSON struct {
	From     string          `json:"from"`
	To       string          `json:"to"`
	Added    []diffEntryJSON `json:"added"`
	Removed  []diffEntryJSON `json:"removed"`
	Changed  []diffEntryJSON `json:"changed"`
	Packages *packageDiff    `json:"packages,omitempty"`
}

// diffEntryJSON is one path that differs. SizeBefore is set for removed and
// changed entries, SizeAfter for added and changed ones.
type diffEntryJSON struct {
	Stream     string `json:"stream,omitempty"`
	Path       string `json:"path"`
	Type       string `json:"type"`
	SizeBefore *int64 `json:"size_before,omitempty"`
	SizeAfter  *int64 `json:"size_after,omitempty"`
	// What changed, for changed entries: content, type, mode, link,
	// metadata (owner, times, xattrs).
	What []string `json:"what,omitempty"`
}

// packageDiff compares the package lists of two snapshots.
type packageDiff struct {
	Added   map[string]string        `json:"added"`
	Removed map[string]string        `json:"removed"`
	Changed map[string]versionChange `json:"changed"`
}

// versionChange is one package whose version differs.
type versionChange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// statsJSON is the stats command's document.
type statsJSON struct {
	StoreDir          string  `json:"store_dir"`
	Snapshots         int64   `json:"snapshots"`
	Envs              int64   `json:"envs"`
	Chunks            int64   `json:"chunks"`
	LogicalBytes      int64   `json:"logical_bytes"`
	UniqueBytes       int64   `json:"unique_bytes"`
	StoredBytes       int64   `json:"stored_bytes"`
	DiskBytes         int64   `json:"disk_bytes"`
	DedupRatio        float64 `json:"dedup_ratio"`
	CompressionRatio  float64 `json:"compression_ratio"`
	ReclaimableBytes  int64   `json:"reclaimable_bytes"`
	ReclaimableChunks int64   `json:"reclaimable_chunks"`
}

// deleteJSON is the delete command's document.
type deleteJSON struct {
	DryRun  bool           `json:"dry_run"`
	Deleted []snapshotJSON `json:"deleted"`
}

// cleanupJSON is the cleanup command's document: every snapshot the rules
// looked at, kept or removed, with the reasons.
type cleanupJSON struct {
	DryRun  bool              `json:"dry_run"`
	Kept    []cleanupDecision `json:"kept"`
	Removed []cleanupDecision `json:"removed"`
	// GC is set when --gc ran a garbage collection.
	GC *gcJSON `json:"gc,omitempty"`
}

// cleanupDecision is one snapshot's fate and why.
type cleanupDecision struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	EnvID     string    `json:"env_id"`
	CreatedAt time.Time `json:"created_at"`
	Reasons   []string  `json:"reasons"`
}

// gcJSON is the gc command's document.
type gcJSON struct {
	ChunksKept      int64   `json:"chunks_kept"`
	ChunksDeleted   int64   `json:"chunks_deleted"`
	BytesReclaimed  int64   `json:"bytes_reclaimed"`
	DiskBefore      int64   `json:"disk_before"`
	DiskAfter       int64   `json:"disk_after"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// verifyJSON is the verify command's document.
type verifyJSON struct {
	OK        bool          `json:"ok"`
	Snapshots int           `json:"snapshots"`
	Trees     int64         `json:"trees"`
	Chunks    int64         `json:"chunks"`
	Bytes     int64         `json:"bytes"`
	Problems  []problemJSON `json:"problems"`
}

// problemJSON is one missing or corrupt piece, with what needs it.
type problemJSON struct {
	SnapshotID string `json:"snapshot_id"`
	Stream     string `json:"stream,omitempty"`
	Path       string `json:"path,omitempty"`
	Chunk      string `json:"chunk,omitempty"`
	Kind       string `json:"kind"` // "missing" or "corrupt"
	Message    string `json:"message"`
}

// exportJSON is the export command's document (printed on stdout only when
// the archive goes to a file).
type exportJSON struct {
	File      string   `json:"file"`
	Snapshots []string `json:"snapshots"`
	Chunks    int64    `json:"chunks"`
	Bytes     int64    `json:"bytes"`
}

// importJSON is the import command's document.
type importJSON struct {
	Imported []importedJSON `json:"imported"`
	// Skipped are IDs the store already had with the same content.
	Skipped       []string `json:"skipped"`
	ChunksNew     int64    `json:"chunks_new"`
	ChunksSkipped int64    `json:"chunks_skipped"`
	BytesNew      int64    `json:"bytes_new"`
}

// importedJSON is one snapshot an import added.
type importedJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	RenamedFrom string `json:"renamed_from,omitempty"`
}
