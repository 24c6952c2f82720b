package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pypj/ptest-snap/store"
)

// The snapshot record as JSON in the shape of the original report's format
// (snapshot_id, env_id, path, status, created_at, config, resource_usage,
// allocated_ports, virtualenv_info / docker_info), for tools that read that
// format, plus a "ptest_snap" object holding our own record verbatim.
//
// Such a file carries no file data. ImportJSON therefore accepts it only
// when this store already holds every tree and chunk the record names (a
// record deleted before gc, or data brought in by an archive): it
// re-registers the record, it cannot recreate an environment. A file
// without our "ptest_snap" object (one written by the original Python tool)
// is refused with ErrReportNoData: there is nothing to restore from.

// ReportFormat names our object inside the JSON.
const ReportFormat = "ptest-snap-record"

// ReportFormatVersion is the version of the JSON shape; ImportJSON refuses a
// newer one.
const ReportFormatVersion = 1

// reportTimeLayout is ISO 8601 with an explicit UTC offset, which Python's
// datetime.fromisoformat reads on every version (it reads "Z" only since
// 3.11).
const reportTimeLayout = "2006-01-02T15:04:05.999999+00:00"

// Errors of ImportJSON.
var (
	// ErrReportFormat: not a snapshot JSON file of the expected shape.
	ErrReportFormat = errors.New("invalid snapshot JSON")
	// ErrReportNoData: the JSON names no ptest-snap record (it comes from
	// the original tool), so there is nothing to restore from.
	ErrReportNoData = errors.New("snapshot JSON carries no ptest-snap record")
	// ErrReportDataMissing: the record's trees or chunks are not in this
	// store; import an archive (Export/Import) instead.
	ErrReportDataMissing = errors.New("snapshot data is not in this store")
)

// SnapshotReport is the JSON shape.
type SnapshotReport struct {
	SnapshotID     string            `json:"snapshot_id"`
	EnvID          string            `json:"env_id"`
	Path           string            `json:"path"`
	Status         string            `json:"status"`
	CreatedAt      string            `json:"created_at"`
	Config         map[string]any    `json:"config"`
	ResourceUsage  map[string]any    `json:"resource_usage"`
	AllocatedPorts []int             `json:"allocated_ports"`
	VirtualenvInfo json.RawMessage   `json:"virtualenv_info,omitempty"`
	DockerInfo     json.RawMessage   `json:"docker_info,omitempty"`
	Name           string            `json:"name,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Engine         string            `json:"engine,omitempty"`
	PtestSnap      *reportOwn        `json:"ptest_snap,omitempty"`
}

// reportOwn is our own part of the JSON.
type reportOwn struct {
	Format        string          `json:"format"`
	FormatVersion int             `json:"format_version"`
	Record        json.RawMessage `json:"record"`
}

// NewSnapshotReport builds the JSON shape of a record.
func NewSnapshotReport(s *store.Snapshot) (*SnapshotReport, error) {
	rec, err := store.EncodeSnapshot(s)
	if err != nil {
		return nil, err
	}
	r := &SnapshotReport{
		SnapshotID: s.ID, EnvID: s.EnvID, Path: s.Target, Status: "active",
		CreatedAt: s.CreatedAt.UTC().Format(reportTimeLayout),
		Config: map[string]any{
			"engine": s.Engine, "engine_version": s.EngineVersion, "env_vars": orEmptyMap(s.Env),
			"parent": s.Parent,
		},
		ResourceUsage: map[string]any{
			"files": s.Stats.Files, "dirs": s.Stats.Dirs, "logical_bytes": s.Stats.LogicalBytes,
			"new_bytes": s.Stats.NewBytes, "stored_bytes": s.Stats.StoredBytes,
			"duration_ms": s.Stats.Duration.Milliseconds(),
		},
		AllocatedPorts: s.Ports,
		Name:           s.Name, Labels: s.Labels, Engine: s.Engine,
		PtestSnap: &reportOwn{Format: ReportFormat, FormatVersion: ReportFormatVersion, Record: rec},
	}
	if r.AllocatedPorts == nil {
		r.AllocatedPorts = []int{}
	}
	var meta map[string]json.RawMessage
	if len(s.Metadata) > 0 && json.Unmarshal(s.Metadata, &meta) == nil {
		if di, ok := meta["docker_info"]; ok {
			r.DockerInfo = di
		}
		if _, ok := meta["venv_path"]; ok || s.Engine == "virtualenv" {
			vi := map[string]json.RawMessage{}
			for _, k := range []string{"venv_path", "python_path", "pip_path", "active", PackagesField, "python_version"} {
				if v, ok := meta[k]; ok {
					vi[k] = v
				}
			}
			b, err := json.Marshal(vi)
			if err != nil {
				return nil, err
			}
			r.VirtualenvInfo = b
		}
		if len(r.AllocatedPorts) == 0 {
			if v, ok := meta["allocated_ports"]; ok {
				_ = json.Unmarshal(v, &r.AllocatedPorts)
			}
		}
	}
	return r, nil
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// ExportJSON returns the record of the snapshot ref names as JSON in the
// original report's shape (indented).
func (m *Manager) ExportJSON(ctx context.Context, ref string) ([]byte, error) {
	s, err := m.Resolve(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("export json: %w", err)
	}
	r, err := NewSnapshotReport(s)
	if err != nil {
		return nil, fmt.Errorf("export json %s: %w", s.ID, err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("export json %s: %w", s.ID, err)
	}
	return append(b, '\n'), nil
}

// maxReportSize bounds a JSON file read by ImportJSON.
const maxReportSize = 32 << 20

// ParseSnapshotReport validates a snapshot JSON file and returns it with
// the ptest-snap record it carries. Errors: ErrReportFormat (malformed,
// fields missing or inconsistent), ErrReportNoData (no record),
// ErrNewerFormat (a newer JSON or record format).
func ParseSnapshotReport(b []byte) (*SnapshotReport, *store.Snapshot, error) {
	if len(b) > maxReportSize {
		return nil, nil, fmt.Errorf("%w: %d bytes is over the %d limit", ErrReportFormat, len(b), maxReportSize)
	}
	var r SnapshotReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrReportFormat, err)
	}
	if r.SnapshotID == "" {
		return nil, nil, fmt.Errorf("%w: no snapshot_id", ErrReportFormat)
	}
	if r.EnvID == "" {
		return nil, nil, fmt.Errorf("%w: no env_id", ErrReportFormat)
	}
	if r.CreatedAt == "" {
		return nil, nil, fmt.Errorf("%w: no created_at", ErrReportFormat)
	}
	if _, err := parseReportTime(r.CreatedAt); err != nil {
		return nil, nil, fmt.Errorf("%w: created_at %q: %v", ErrReportFormat, r.CreatedAt, err)
	}
	if r.PtestSnap == nil {
		return &r, nil, fmt.Errorf("%w: %s (written by the original tool?); import an archive instead", ErrReportNoData, r.SnapshotID)
	}
	if r.PtestSnap.Format != ReportFormat {
		return nil, nil, fmt.Errorf("%w: ptest_snap.format %q", ErrReportFormat, r.PtestSnap.Format)
	}
	if r.PtestSnap.FormatVersion > ReportFormatVersion {
		return nil, nil, fmt.Errorf("snapshot JSON format %d, this build reads %d: %w", r.PtestSnap.FormatVersion, ReportFormatVersion, ErrNewerFormat)
	}
	if r.PtestSnap.FormatVersion < 1 {
		return nil, nil, fmt.Errorf("%w: ptest_snap.format_version %d", ErrReportFormat, r.PtestSnap.FormatVersion)
	}
	rec, err := store.DecodeSnapshot(r.PtestSnap.Record)
	if err != nil {
		if errors.Is(err, store.ErrNewerFormat) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: record: %v", ErrReportFormat, err)
	}
	if rec.ID != r.SnapshotID || rec.EnvID != r.EnvID {
		return nil, nil, fmt.Errorf("%w: snapshot_id/env_id %s/%s do not match the record's %s/%s", ErrReportFormat, r.SnapshotID, r.EnvID, rec.ID, rec.EnvID)
	}
	if err := ValidateID(rec.ID); err != nil {
		return nil, nil, err
	}
	if rec.Name != "" {
		if err := ValidateName(rec.Name); err != nil {
			return nil, nil, err
		}
	}
	return &r, rec, nil
}

// parseReportTime reads created_at as we write it, as RFC 3339, or as the
// original tool's naive ISO time (taken as UTC).
func parseReportTime(s string) (time.Time, error) {
	for _, layout := range []string{reportTimeLayout, time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not an ISO 8601 time")
}

// ImportJSONResult says what ImportJSON did.
type ImportJSONResult struct {
	Snapshot *store.Snapshot
	// AlreadyPresent: the same snapshot was already in the store.
	AlreadyPresent bool
	// Renamed is the new name when the record's name was taken (Rename).
	Renamed string
}

// ImportJSON reads a snapshot JSON file (ExportJSON's output), validates
// it and re-registers its record, provided this store holds every tree
// and chunk it names (see the package note above); otherwise it fails with
// ErrReportDataMissing and changes nothing.
func (m *Manager) ImportJSON(ctx context.Context, r io.Reader, opts ImportOptions) (*ImportJSONResult, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxReportSize+1))
	if err != nil {
		return nil, fmt.Errorf("import json: %w", err)
	}
	_, rec, err := ParseSnapshotReport(b)
	if err != nil {
		return nil, fmt.Errorf("import json: %w", err)
	}
	rep := &ImportReport{Renamed: map[string]string{}}
	if err := m.resolveImportClashes(ctx, []*store.Snapshot{rec}, opts.Rename, rep); err != nil {
		return nil, fmt.Errorf("import json: %w", err)
	}
	res := &ImportJSONResult{Snapshot: rec, Renamed: rep.Renamed["name:"+rec.Name]}
	if len(rep.Skipped) > 0 {
		res.AlreadyPresent = true
		return res, nil
	}
	w, err := m.store.NewWriter(ctx)
	if err != nil {
		return nil, fmt.Errorf("import json: %w", err)
	}
	// Re-putting each root tree makes the Writer check, and protect from
	// gc until the commit, every chunk and subtree under it.
	if err := m.pinData(ctx, w, rec); err != nil {
		w.Abort()
		return nil, fmt.Errorf("import json: %w", err)
	}
	if err := w.Commit(ctx, rec, nil); err != nil {
		w.Abort()
		if errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("import json: %w: %v", ErrNameTaken, err)
		}
		return nil, fmt.Errorf("import json: %w", err)
	}
	ev := Event{Type: EventSnapshotImported}
	fillFromSnapshot(&ev, rec)
	m.lc().emit(ctx, ev)
	return res, nil
}

// pinData checks that every tree and chunk of rec is stored, protecting
// them through w.
func (m *Manager) pinData(ctx context.Context, w *store.Writer, rec *store.Snapshot) error {
	for _, st := range rec.Streams {
		err := w.ReferenceTree(ctx, st.Root)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: snapshot %s stream %s: %v (import an archive instead)", ErrReportDataMissing, rec.ID, st.Name, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
