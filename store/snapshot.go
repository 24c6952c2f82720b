package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// The snapshot record format. A reader refuses a record of a newer major
// version (ErrNewerFormat); a newer minor version only adds fields, which an
// older reader ignores. Minor 1 added Snapshot.Excludes.
//
// Major 2 changed what a record's chunks may hold, in ways a format-1
// reader would take for corruption, so it refuses the record instead:
// packs take chunks of up to 256 KiB (packMaxChunk; 64 KiB before), a large
// directory's tree and change index may be a root and fragments
// (tree_split.go), and change-index chunks may carry directory and symlink
// records (index chunk version 2) and fragment roots (version 3). Every
// format-1 record, tree and index chunk stays readable. (Format 1.2, the
// 256 KiB packs alone, was on main briefly and is read as format 1.)
const (
	FormatMajor = 2
	FormatMinor = 0
)

// maxRecordSize bounds a snapshot record (metadata included).
const maxRecordSize = 16 << 20

// Stream is one named root of a snapshot.
type Stream struct {
	Name string `json:"name"`
	Root Hash   `json:"root"`
}

// SnapshotStats are the figures of a snapshot's creation.
type SnapshotStats struct {
	Files        int64         `json:"files"`
	Dirs         int64         `json:"dirs"`
	LogicalBytes int64         `json:"logical_bytes"` // sum of file sizes
	NewBytes     int64         `json:"new_bytes"`     // uncompressed bytes of chunks this snapshot added
	StoredBytes  int64         `json:"stored_bytes"`  // what those new chunks take on disk
	Duration     time.Duration `json:"duration_ns"`   // wall time of the capture
}

// Snapshot is the durable record of a snapshot.
type Snapshot struct {
	FormatMajor     int               `json:"format_major"`
	FormatMinor     int               `json:"format_minor"`
	ID              string            `json:"id"`
	Name            string            `json:"name,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Engine          string            `json:"engine"`
	EngineVersion   string            `json:"engine_version,omitempty"`
	EnvID           string            `json:"env_id"`
	Target          string            `json:"target,omitempty"`
	Parent          string            `json:"parent,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	MetadataVersion int               `json:"metadata_version,omitempty"`
	Metadata        json.RawMessage   `json:"metadata,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	Ports           []int             `json:"ports,omitempty"`
	// Excludes are the glob patterns the snapshot was captured with: the
	// paths they match are not part of it, so an in-place restore neither
	// writes nor deletes them. Records before format 1.1 have none.
	Excludes []string      `json:"excludes,omitempty"`
	Streams  []Stream      `json:"streams"`
	Stats    SnapshotStats `json:"stats"`
}

// validate checks what the store relies on: an id usable as a key, unique
// stream names, roots present.
func (s *Snapshot) validate() error {
	if s.ID == "" || len(s.ID) > 256 || bytes.IndexByte([]byte(s.ID), 0) >= 0 {
		return fmt.Errorf("%w: snapshot record: bad id %q", ErrCorrupt, s.ID)
	}
	if len(s.Name) > 1024 || bytes.IndexByte([]byte(s.Name), 0) >= 0 {
		return fmt.Errorf("%w: snapshot %s: bad name", ErrCorrupt, s.ID)
	}
	if bytes.IndexByte([]byte(s.Engine), 0) >= 0 || bytes.IndexByte([]byte(s.EnvID), 0) >= 0 {
		return fmt.Errorf("%w: snapshot %s: NUL in engine or env id", ErrCorrupt, s.ID)
	}
	seen := map[string]bool{}
	for _, st := range s.Streams {
		if seen[st.Name] {
			return fmt.Errorf("%w: snapshot %s: stream %q twice", ErrCorrupt, s.ID, st.Name)
		}
		seen[st.Name] = true
		if st.Root.IsZero() {
			return fmt.Errorf("%w: snapshot %s: stream %q has no root", ErrCorrupt, s.ID, st.Name)
		}
	}
	return nil
}

// EncodeSnapshot returns the record's encoding (JSON, so that a human and
// an older reader can still look at it). A zero format version is filled in
// with the current one.
func EncodeSnapshot(s *Snapshot) ([]byte, error) {
	c := *s
	if c.FormatMajor == 0 {
		c.FormatMajor, c.FormatMinor = FormatMajor, FormatMinor
	}
	if c.FormatMajor > FormatMajor {
		return nil, fmt.Errorf("encode snapshot %s: format %d.%d: %w", s.ID, c.FormatMajor, c.FormatMinor, ErrNewerFormat)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot %s: %w", s.ID, err)
	}
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("encode snapshot %s: record of %d bytes is too large", s.ID, len(b))
	}
	return b, nil
}

// DecodeSnapshot decodes a record. It refuses a newer major format with an
// error wrapping ErrNewerFormat, and anything malformed (including trailing
// data) with an error wrapping ErrCorrupt.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("%w: snapshot record of %d bytes", ErrCorrupt, len(b))
	}
	var ver struct {
		Major *int   `json:"format_major"`
		Minor int    `json:"format_minor"`
		ID    string `json:"id"`
	}
	if err := json.Unmarshal(b, &ver); err != nil {
		return nil, fmt.Errorf("%w: snapshot record: %v", ErrCorrupt, err)
	}
	if ver.Major == nil || *ver.Major < 1 {
		return nil, fmt.Errorf("%w: snapshot record %q: no format version", ErrCorrupt, ver.ID)
	}
	if *ver.Major > FormatMajor {
		return nil, fmt.Errorf("snapshot %s has format %d.%d, this build reads %d.x: %w",
			ver.ID, *ver.Major, ver.Minor, FormatMajor, ErrNewerFormat)
	}
	// json.Unmarshal also rejects trailing data after the object.
	s := &Snapshot{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%w: snapshot record %q: %v", ErrCorrupt, ver.ID, err)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}
