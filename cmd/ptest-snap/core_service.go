package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/pypj/ptest-snap/core"
	"github.com/pypj/ptest-snap/store"
)

// coreService implements service over core.Manager, with engines resolved
// through the plugin host.
type coreService struct {
	m       *core.Manager
	engines *engineHost
}

// openService opens the store through the core, with the plugin host as the
// engine resolver.
func openService(ctx context.Context, o serviceOptions) (service, error) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.Verbose {
		logger = slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	host := newEngineHost(o.Verbose, o.Stderr, o.EnginePins)
	if o.Prelaunch != "" {
		host.prelaunch(ctx, o.Prelaunch)
	}
	m, err := core.Open(ctx, core.Options{
		StoreDir:    o.StoreDir,
		LockTimeout: o.LockTimeout,
		OnWait:      o.OnWait,
		Engines:     host.resolve,
		Logger:      logger,

		MaxSnapshotsPerEnv: o.MaxSnapshotsPerEnv,
		MaxStoreBytes:      o.MaxStoreBytes,
	})
	if err != nil {
		host.close()
		return nil, err
	}
	return &coreService{m: m, engines: host}, nil
}

// Close closes the Manager (which delivers queued events, then closes the
// store) and the plugin host, which kills every engine process it started
// and waits for them: both at once, since neither needs the other any more
// (Badger's close and the engine's exit each took ~10 ms of a second
// create's end, one after the other).
func (s *coreService) Close() error {
	engines := make(chan struct{})
	go func() {
		defer close(engines)
		s.engines.close()
	}()
	err := s.m.Close()
	<-engines
	return err
}

func (s *coreService) Create(ctx context.Context, p createParams, prog *progress) (*snapshotJSON, error) {
	snap, err := s.m.Create(ctx, core.CreateOptions{
		Engine:   p.Engine,
		Target:   p.Target,
		ID:       p.ID,
		Name:     p.Name,
		Labels:   p.Labels,
		Env:      p.Env,
		Ports:    p.Ports,
		Parent:   p.Parent,
		Excludes: p.Excludes,
		Options:  p.Options,
		Progress: func(pr core.Progress) {
			// On create the total is an estimate (the parent's size) when
			// the core knows one; otherwise the bar shows bytes and rate.
			if pr.TotalBytes > 0 {
				prog.setTotal(max(pr.TotalBytes, pr.Bytes))
			}
			prog.set(pr.Bytes)
		},
	})
	if err != nil {
		return nil, err
	}
	out := snapshotFromStore(snap)
	return &out, nil
}

func (s *coreService) Restore(ctx context.Context, p restoreParams, prog *progress) (*restoreJSON, error) {
	start := time.Now()
	res, err := s.m.Restore(ctx, core.RestoreOptions{
		Ref:     p.Ref,
		Target:  p.Target,
		InPlace: p.InPlace,
		Replace: p.Replace,
		Name:    p.Container,
		Options: p.Options,
		Progress: func(pr core.Progress) {
			if pr.TotalBytes > 0 {
				prog.setTotal(pr.TotalBytes)
			}
			prog.set(pr.Bytes)
		},
	})
	if err != nil {
		return nil, err
	}
	out := &restoreJSON{
		Target:          res.Target,
		InPlace:         p.InPlace,
		FilesWritten:    res.Stats.Rewritten,
		FilesUnchanged:  res.Stats.Unchanged,
		BytesWritten:    res.Stats.Bytes,
		DurationSeconds: time.Since(start).Seconds(),
		Messages:        res.Messages,
	}
	if res.Snapshot != nil {
		out.SnapshotID = res.Snapshot.ID
	}
	return out, nil
}

func (s *coreService) List(ctx context.Context, f listFilter) ([]snapshotJSON, error) {
	var labels []string
	for k, v := range f.Labels {
		labels = append(labels, k+"="+v)
	}
	entries, err := s.m.List(ctx, core.ListOptions{
		Engine: f.Engine,
		EnvID:  envIDOf(f.Env),
		Labels: labels,
		Name:   f.Name,
		Since:  f.Since,
		Until:  f.Until,
		Sizes:  f.Sizes,
	})
	if err != nil {
		return nil, err
	}
	out := make([]snapshotJSON, 0, len(entries))
	for _, e := range entries {
		sj := snapshotFromStore(e.Snapshot)
		sj.Metadata, sj.MetadataVersion = nil, 0 // list stays compact; show has it
		if f.Sizes {
			sj.Size = &sizeJSON{LogicalBytes: e.Sizes.LogicalBytes, ExclusiveBytes: e.Sizes.ExclusiveBytes, StoredBytes: e.Sizes.StoredBytes}
		}
		out = append(out, sj)
	}
	return out, nil
}

// envIDOf turns a path the user gave for --env into the env ID engines use
// for directories and venvs (the real absolute path); anything that is not
// an existing path (a container ID) is used as it is.
func envIDOf(env string) string {
	if env == "" {
		return ""
	}
	abs, err := filepath.Abs(env)
	if err != nil {
		return env
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return env
	}
	return real
}

func (s *coreService) Show(ctx context.Context, ref string) (*snapshotJSON, error) {
	res, err := s.m.Show(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := snapshotFromStore(res.Snapshot)
	out.Size = &sizeJSON{LogicalBytes: res.Sizes.LogicalBytes, ExclusiveBytes: res.Sizes.ExclusiveBytes, StoredBytes: res.Sizes.StoredBytes}
	return &out, nil
}

func (s *coreService) Diff(ctx context.Context, a, b string, packagesOnly bool) (*diffJSON, error) {
	d, err := s.m.Diff(ctx, a, b)
	if err != nil {
		return nil, err
	}
	out := &diffJSON{From: d.From.ID, To: d.To.ID, Added: []diffEntryJSON{}, Removed: []diffEntryJSON{}, Changed: []diffEntryJSON{}}
	if !packagesOnly {
		for _, c := range d.Changes {
			e := diffEntryJSON{Stream: c.Stream, Path: c.Path, Type: c.NewType}
			if e.Type == "" {
				e.Type = c.OldType
			}
			before, after := c.OldSize, c.NewSize
			switch c.Kind {
			case core.ChangeAdded:
				e.SizeAfter = &after
				out.Added = append(out.Added, e)
			case core.ChangeRemoved:
				e.SizeBefore = &before
				out.Removed = append(out.Removed, e)
			default:
				e.SizeBefore, e.SizeAfter = &before, &after
				for _, f := range []struct {
					on   bool
					name string
				}{{c.ContentChanged, "content"}, {c.TypeChanged, "type"}, {c.ModeChanged, "mode"},
					{c.LinkChanged, "link"}, {c.MetadataChanged, "metadata"}} {
					if f.on {
						e.What = append(e.What, f.name)
					}
				}
				out.Changed = append(out.Changed, e)
			}
		}
	}
	if p := d.Packages; p != nil {
		pd := &packageDiff{Added: map[string]string{}, Removed: map[string]string{}, Changed: map[string]versionChange{}}
		for _, c := range p.Added {
			pd.Added[c.Name] = c.New
		}
		for _, c := range p.Removed {
			pd.Removed[c.Name] = c.Old
		}
		for _, c := range p.Changed {
			pd.Changed[c.Name] = versionChange{From: c.Old, To: c.New}
		}
		out.Packages = pd
	}
	return out, nil
}

func (s *coreService) Stats(ctx context.Context) (*statsJSON, error) {
	st, err := s.m.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &statsJSON{
		StoreDir:          s.m.Store().Dir(),
		Snapshots:         int64(st.Snapshots),
		Envs:              int64(st.Envs),
		Chunks:            st.Chunks,
		LogicalBytes:      st.LogicalBytes,
		UniqueBytes:       st.UniqueBytes,
		StoredBytes:       st.StoredBytes,
		DiskBytes:         st.DiskBytes,
		DedupRatio:        st.DedupRatio,
		CompressionRatio:  st.CompressionRatio,
		ReclaimableBytes:  st.ReclaimableBytes,
		ReclaimableChunks: st.ReclaimableChunks,
	}, nil
}

func (s *coreService) Delete(ctx context.Context, refs []string, dryRun bool) (*deleteJSON, error) {
	rep, err := s.m.Delete(ctx, core.DeleteOptions{Refs: refs, DryRun: dryRun})
	if err != nil {
		return nil, err
	}
	out := &deleteJSON{DryRun: rep.DryRun, Deleted: []snapshotJSON{}}
	for _, snap := range rep.Snapshots {
		out.Deleted = append(out.Deleted, snapshotFromStore(snap))
	}
	return out, nil
}

func (s *coreService) Cleanup(ctx context.Context, p cleanupParams, prog *progress) (*cleanupJSON, error) {
	rep, err := s.m.Cleanup(ctx, core.CleanupOptions{
		Policy: core.RetentionPolicy{
			KeepLast:    p.KeepLast,
			KeepHourly:  p.KeepHourly,
			KeepDaily:   p.KeepDaily,
			KeepWeekly:  p.KeepWeekly,
			KeepMonthly: p.KeepMonthly,
			KeepYearly:  p.KeepYearly,
			KeepWithin:  p.KeepWithin,
			KeepLabels:  p.KeepLabels,
			OlderThan:   p.OlderThan,
		},
		Engine:     p.Engine,
		EnvID:      envIDOf(p.Env),
		DryRun:     p.DryRun,
		GC:         p.GC,
		GCProgress: gcProgress(prog),
	})
	if err != nil {
		return nil, err
	}
	out := &cleanupJSON{DryRun: rep.DryRun, Kept: []cleanupDecision{}, Removed: []cleanupDecision{}}
	if rep.GC != nil {
		out.GC = gcFromStore(*rep.GC)
	}
	for _, g := range rep.Groups {
		for _, d := range g.Decisions {
			cd := cleanupDecision{ID: d.Snapshot.ID, Name: d.Snapshot.Name, EnvID: d.Snapshot.EnvID,
				CreatedAt: d.Snapshot.CreatedAt, Reasons: d.Reasons}
			if cd.Reasons == nil {
				cd.Reasons = []string{}
			}
			if d.Keep {
				out.Kept = append(out.Kept, cd)
			} else {
				out.Removed = append(out.Removed, cd)
			}
		}
	}
	return out, nil
}

func (s *coreService) GC(ctx context.Context, prog *progress) (*gcJSON, error) {
	st, err := s.m.GCWithOptions(ctx, core.GCOptions{Progress: gcProgress(prog)})
	if err != nil {
		return nil, err
	}
	return gcFromStore(st), nil
}

// gcPhaseLabels name a garbage collection's phases on its bar, with what
// each counts.
var gcPhaseLabels = map[store.GCPhase]string{
	store.GCMark:   "gc 1/4: marking snapshots",
	store.GCSweep:  "gc 2/4: deleting chunks",
	store.GCRepack: "gc 3/4: checking packs",
	store.GCVlog:   "gc 4/4: compacting",
}

// gcProgress shows a garbage collection's progress on prog, one phase at a
// time.
func gcProgress(prog *progress) func(store.GCProgress) {
	return func(p store.GCProgress) {
		label, ok := gcPhaseLabels[p.Phase]
		if !ok {
			label = "gc: " + string(p.Phase)
		}
		prog.phase(label, p.Total)
		prog.set(p.Done)
	}
}

// gcFromStore converts a garbage collection's figures.
func gcFromStore(st store.GCStats) *gcJSON {
	return &gcJSON{
		ChunksKept:      st.ChunksKept,
		ChunksDeleted:   st.ChunksDeleted,
		BytesReclaimed:  st.BytesReclaimed,
		DiskBefore:      st.DiskBefore,
		DiskAfter:       st.DiskAfter,
		DurationSeconds: st.Duration.Seconds(),
	}
}

func (s *coreService) Verify(ctx context.Context, refs []string, prog *progress) (*verifyJSON, error) {
	var ids []string
	if len(refs) > 0 {
		snaps, err := s.m.ResolveMany(ctx, refs)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		for _, snap := range snaps {
			ids = append(ids, snap.ID)
		}
	} else if u, err := s.m.Store().Usage(ctx); err == nil && u.ChunkBytes > 0 {
		// Every chunk is read once: the store's unique bytes are the total.
		prog.setTotal(u.ChunkBytes)
	}
	rep, err := s.m.Store().Verify(ctx, ids, func(n int64) { prog.set(n) })
	if err != nil {
		return nil, err
	}
	out := &verifyJSON{
		Snapshots: rep.Snapshots,
		Trees:     rep.Trees,
		Chunks:    rep.Chunks,
		Bytes:     rep.Bytes,
		Problems:  []problemJSON{},
	}
	for _, p := range rep.Problems {
		kind := "corrupt"
		if errors.Is(p.Err, store.ErrNotFound) {
			kind = "missing"
		}
		pj := problemJSON{SnapshotID: p.SnapshotID, Stream: p.Stream, Path: p.Path, Kind: kind}
		if !p.Chunk.IsZero() {
			pj.Chunk = p.Chunk.String()
		}
		if p.Err != nil {
			pj.Message = strings.TrimPrefix(cleanMessage(p.Err.Error()), "chunk "+pj.Chunk+": ")
		}
		out.Problems = append(out.Problems, pj)
	}
	return out, nil
}

func (s *coreService) Export(ctx context.Context, refs []string, w io.Writer, prog *progress) (*exportJSON, error) {
	rep, err := s.m.Export(ctx, refs, w, func(p core.ExportProgress) {
		// The total is an estimate from the records' stats; the bytes
		// written may pass it (trees, framing), so it only grows.
		if p.TotalBytes > 0 {
			prog.setTotal(max(p.TotalBytes, p.Bytes))
		}
		prog.set(p.Bytes)
	})
	if err != nil {
		return nil, err
	}
	out := &exportJSON{Snapshots: []string{}, Chunks: rep.Chunks, Bytes: rep.Written}
	for _, snap := range rep.Snapshots {
		out.Snapshots = append(out.Snapshots, snap.ID)
	}
	return out, nil
}

func (s *coreService) ExportJSON(ctx context.Context, ref string) (json.RawMessage, error) {
	b, err := s.m.ExportJSON(ctx, ref)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(b), nil
}

func (s *coreService) Import(ctx context.Context, r io.Reader, rename bool, prog *progress) (*importJSON, error) {
	// A snapshot record written by 'export --json' starts with '{'; an
	// archive never does.
	br := bufio.NewReader(r)
	if isJSONRecord(br) {
		return s.importRecord(ctx, br, rename)
	}
	// The bar counts the archive's bytes as they are read (countingReader).
	rep, err := s.m.Import(ctx, br, core.ImportOptions{Rename: rename})
	if err != nil {
		return nil, err
	}
	out := &importJSON{
		Imported:      []importedJSON{},
		Skipped:       rep.Skipped,
		ChunksNew:     rep.NewChunks,
		ChunksSkipped: rep.Chunks - rep.NewChunks,
		BytesNew:      rep.NewBytes,
	}
	if out.Skipped == nil {
		out.Skipped = []string{}
	}
	for _, snap := range rep.Snapshots {
		im := importedJSON{ID: snap.ID, Name: snap.Name}
		for from, to := range rep.Renamed {
			if name, ok := strings.CutPrefix(from, "name:"); ok && to == snap.Name && snap.Name != "" {
				im.RenamedFrom = name
			} else if !ok && to == snap.ID {
				im.RenamedFrom = from
			}
		}
		out.Imported = append(out.Imported, im)
	}
	return out, nil
}

// isJSONRecord reports whether the stream starts (after white space) with
// a JSON object.
func isJSONRecord(br *bufio.Reader) bool {
	for i := 1; i <= 64; i++ {
		b, err := br.Peek(i)
		if err != nil || len(b) < i {
			return false
		}
		switch b[i-1] {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// importRecord re-registers a snapshot record exported with 'export --json'
// (its data must already be in this store).
func (s *coreService) importRecord(ctx context.Context, r io.Reader, rename bool) (*importJSON, error) {
	res, err := s.m.ImportJSON(ctx, r, core.ImportOptions{Rename: rename})
	if err != nil {
		return nil, err
	}
	out := &importJSON{Imported: []importedJSON{}, Skipped: []string{}}
	if res.AlreadyPresent {
		out.Skipped = append(out.Skipped, res.Snapshot.ID)
		return out, nil
	}
	im := importedJSON{ID: res.Snapshot.ID, Name: res.Snapshot.Name}
	if res.Renamed != "" {
		im.Name, im.RenamedFrom = res.Renamed, res.Snapshot.Name
	}
	out.Imported = append(out.Imported, im)
	return out, nil
}

func (s *coreService) AllIDs(ctx context.Context) ([]string, error) {
	return s.m.Store().IDsWithPrefix(ctx, "")
}

// snapshotFromStore converts a record to its JSON shape.
func snapshotFromStore(s *store.Snapshot) snapshotJSON {
	out := snapshotJSON{
		ID:              s.ID,
		Name:            s.Name,
		Labels:          s.Labels,
		Engine:          s.Engine,
		EngineVersion:   s.EngineVersion,
		EnvID:           s.EnvID,
		Target:          s.Target,
		Parent:          s.Parent,
		CreatedAt:       s.CreatedAt,
		Env:             s.Env,
		Ports:           s.Ports,
		Streams:         make([]streamJSON, 0, len(s.Streams)),
		MetadataVersion: s.MetadataVersion,
		Metadata:        s.Metadata,
		FormatVersion:   fmt.Sprintf("%d.%d", s.FormatMajor, s.FormatMinor),
		Stats: statsOfSnapshot{
			Files:           s.Stats.Files,
			Dirs:            s.Stats.Dirs,
			LogicalBytes:    s.Stats.LogicalBytes,
			NewBytes:        s.Stats.NewBytes,
			StoredBytes:     s.Stats.StoredBytes,
			DurationSeconds: s.Stats.Duration.Seconds(),
		},
	}
	for _, st := range s.Streams {
		out.Streams = append(out.Streams, streamJSON{Name: st.Name, Root: st.Root.String()})
	}
	return out
}

// classifyArchive maps the core's archive errors to exit codes.
func classifyArchive(err error) (int, string, bool) {
	switch {
	case errors.Is(err, core.ErrArchiveCorrupt), errors.Is(err, core.ErrArchiveChecksum),
		errors.Is(err, core.ErrArchiveTruncated), errors.Is(err, core.ErrArchiveTooLarge),
		errors.Is(err, core.ErrArchiveIncomplete), errors.Is(err, core.ErrArchiveFormat):
		return exitCorrupt, "the archive is damaged or incomplete; nothing was imported — export it again", true
	}
	return 0, "", false
}

// classifyCore maps the core's own sentinels (those that are not the
// store's or the engine protocol's) to exit codes.
func classifyCore(err error) (int, string, bool) {
	switch {
	case errors.Is(err, core.ErrAmbiguous):
		return exitUsage, "give more characters of the ID, or use the snapshot's name", true
	case errors.Is(err, core.ErrQuotaExceeded):
		return exitQuota, "delete old snapshots (ptest-snap cleanup) and run 'ptest-snap gc', or raise the limit", true
	case errors.Is(err, core.ErrEngineNotFound):
		return exitNotFound, "run 'ptest-snap engines' to see the engines found and where they were looked for", true
	case errors.Is(err, core.ErrEngine):
		return exitEngine, "run with --verbose to see what the engine did", true
	case errors.Is(err, core.ErrNameTaken), errors.Is(err, core.ErrIDTaken):
		return exitFailure, "choose another --name/--id, delete the existing snapshot, or import with --rename", true
	case errors.Is(err, core.ErrInvalidID):
		return exitUsage, "IDs, names and labels use letters, digits, '.', '_' and '-', starting with a letter or digit", true
	case errors.Is(err, core.ErrTargetNotEmpty):
		return exitFailure, "restore with --in-place to reset it, --replace to replace it, or --target to restore elsewhere", true
	case errors.Is(err, core.ErrInvalidOptions):
		return exitUsage, "", true
	}
	return 0, "", false
}
