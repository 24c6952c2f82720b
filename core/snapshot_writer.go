package core

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// snapshotWriter is the host's pluginapi.CaptureWriter: it checks every
// entry an engine sends, stores bodies through the fileSaver, builds trees
// with the treeBuilder, reuses the parent's content for unchanged files and
// records the change index and stats. All methods run on the engine's one
// calling goroutine.
type snapshotWriter struct {
	// ctx is the pipeline's own context: the engine's calls may pass a
	// context that ends when its Capture returns, while trees and chunks
	// are still being stored.
	ctx    context.Context
	fail   *failure
	saver  *fileSaver
	trees  *treeBuilder
	parent *treeLookup // nil without a parent
	// parentDirs are the parent's change index chunks by directory, for
	// the directories the engine reports unchanged; nil if not offered
	// (CaptureRequest.UnchangedDirs).
	parentDirs store.ParentIndexDirs

	metadata    *pluginapi.Metadata
	streamNames map[string]bool
	stream      string
	// filePaths are the current stream's file paths, in the order they came:
	// a hard link must name one sent before it. The tree builder refuses
	// entries out of sorted pre-order (pluginapi.ComparePaths), so the
	// list is sorted and a link's target is found by binary search. A map
	// of the paths cost ~1 % of the CLI's CPU of a create of venv-full
	// (perf: mapassign_faststr in writeFile, the map growing to 38,546
	// paths). The change index is built by trees.
	filePaths []string
	// indexRoots is each stream's change index root, once finished.
	indexRoots map[string]store.Hash

	files, dirs, bytes, reused int64

	progress     func(Progress)
	lastProgress time.Time
	// totalFiles and totalBytes estimate the capture's size for progress
	// (the parent's); zero when unknown.
	totalFiles, totalBytes int64
}

func newSnapshotWriter(ctx context.Context, w *store.Writer, parent *treeLookup, workers int, progress func(Progress)) *snapshotWriter {
	fail := &failure{}
	return &snapshotWriter{
		ctx:         ctx,
		fail:        fail,
		saver:       newFileSaver(ctx, w, fail, workers),
		trees:       newTreeBuilder(w, fail),
		parent:      parent,
		streamNames: map[string]bool{},
		progress:    progress,
	}
}

// WriteMetadata records the engine's metadata.
func (sw *snapshotWriter) WriteMetadata(ctx context.Context, m pluginapi.Metadata) error {
	if sw.metadata != nil {
		return fmt.Errorf("%w: metadata sent twice", ErrEngine)
	}
	if len(m.JSON) > 0 && !json.Valid(m.JSON) {
		return fmt.Errorf("%w: metadata is not valid JSON", ErrEngine)
	}
	sw.metadata = &m
	return nil
}

// BeginStream starts a named stream.
func (sw *snapshotWriter) BeginStream(ctx context.Context, name string) error {
	if err := sw.fail.get(); err != nil {
		return err
	}
	if name == "" || len(name) > 256 {
		return fmt.Errorf("%w: bad stream name %q", ErrEngine, name)
	}
	if sw.streamNames[name] {
		return fmt.Errorf("%w: stream %q sent twice", ErrEngine, name)
	}
	sw.streamNames[name] = true
	sw.stream = name
	// Presized from the parent's size, when known: growing it to
	// venv-full's 38,546 files cost 40 ms of rehashing.
	sw.filePaths = make([]string, 0, sw.totalFiles)
	sw.trees.beginStream(sw.ctx, name)
	return nil
}

// WriteEntry checks and stores one entry.
func (sw *snapshotWriter) WriteEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if err := sw.fail.get(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if sw.stream == "" {
		return fmt.Errorf("%w: entry %q before any stream", ErrEngine, e.Path)
	}
	if err := sw.writeEntry(ctx, e, body); err != nil {
		// The failure kept is the one with the entry's path: the create
		// may report it rather than this return (the engine sees this
		// one and stops; the host then returns the failure kept).
		err = fmt.Errorf("stream %q: entry %q: %w", sw.stream, e.Path, err)
		sw.fail.set(err)
		return err
	}
	sw.report(e.Path, false)
	return nil
}

func (sw *snapshotWriter) writeEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return fmt.Errorf("%w: %w", ErrEngine, err)
	}
	if e.Mode&^uint32(0o7777) != 0 {
		return fmt.Errorf("%w: mode %o has bits beyond 07777", ErrEngine, e.Mode)
	}
	if e.Size < 0 {
		return fmt.Errorf("%w: negative size", ErrEngine)
	}
	if e.XattrsFromParent && (e.Type != pluginapi.TypeFile || !e.Unchanged || len(e.Xattrs) > 0) {
		return fmt.Errorf("%w: xattrs taken from the parent, but not an unchanged file without xattrs", ErrEngine)
	}
	n := store.Node{
		Name:    baseOf(e.Path),
		Mode:    e.Mode,
		UID:     e.UID,
		GID:     e.GID,
		MtimeNs: e.MtimeNs,
		Xattrs:  sortedXattrs(e.Xattrs),
	}
	switch e.Type {
	case pluginapi.TypeDir:
		n.Type = store.NodeDir
		if e.Unchanged {
			return sw.writeUnchangedDir(ctx, e, n)
		}
		// The subtree hash is filled in when the directory is finalized.
		sw.dirs++
		d, _, err := sw.trees.add(sw.ctx, e.Path, n, false)
		if err != nil {
			return err
		}
		sw.trees.addMeta(d, n.Name, store.IndexDir, e.CtimeNs, e.Inode)
		return nil
	case pluginapi.TypeSymlink:
		if e.LinkTarget == "" {
			return fmt.Errorf("%w: symlink without a target", ErrEngine)
		}
		n.Type = store.NodeSymlink
		n.LinkTarget = e.LinkTarget
		sw.files++
		d, _, err := sw.trees.add(sw.ctx, e.Path, n, false)
		if err != nil {
			return err
		}
		sw.trees.addMeta(d, n.Name, store.IndexSymlink, e.CtimeNs, e.Inode)
		return nil
	case pluginapi.TypeHardlink:
		if err := pluginapi.ValidatePath(e.LinkTarget); err != nil {
			return fmt.Errorf("%w: hard link target: %w", ErrEngine, err)
		}
		if _, ok := slices.BinarySearchFunc(sw.filePaths, e.LinkTarget, pluginapi.ComparePaths); !ok {
			return fmt.Errorf("%w: hard link to %q, which is not a file sent before it", ErrEngine, e.LinkTarget)
		}
		n.Type = store.NodeHardlink
		n.LinkTarget = e.LinkTarget
		sw.files++
		_, _, err := sw.trees.add(sw.ctx, e.Path, n, false)
		return err
	case pluginapi.TypeFile:
		return sw.writeFile(ctx, e, body, n)
	}
	return fmt.Errorf("%w: invalid entry type %d", ErrEngine, e.Type)
}

// writeUnchangedDir takes a directory the engine reports unchanged with
// everything beneath it (CaptureRequest.UnchangedDirs) from the parent: its
// tree and its change index chunk, without an entry of its own beneath it.
func (sw *snapshotWriter) writeUnchangedDir(ctx context.Context, e *pluginapi.Entry, n store.Node) error {
	if sw.parent == nil || sw.parentDirs == nil {
		return fmt.Errorf("%w: directory marked unchanged, but unchanged directories were not offered", ErrEngine)
	}
	pn, err := sw.parent.node(ctx, sw.stream, e.Path)
	if err != nil {
		return fmt.Errorf("parent snapshot: %w", err)
	}
	if pn == nil || pn.Type != store.NodeDir || pn.Mode != n.Mode || pn.UID != n.UID || pn.GID != n.GID || pn.MtimeNs != n.MtimeNs {
		return fmt.Errorf("%w: directory marked unchanged, but the parent snapshot has no such directory there", ErrEngine)
	}
	// The parent's trees ahead are of directories the engine no longer
	// sends: the few still to come are read when asked for.
	sw.parent.stopPrefetch()
	n.Subtree, n.Xattrs = pn.Subtree, pn.Xattrs
	d, err := sw.trees.addUnchangedDir(sw.ctx, e.Path, n, sw.parentDirs[sw.stream][e.Path])
	if err != nil {
		return err
	}
	sw.trees.addMeta(d, n.Name, store.IndexDir, e.CtimeNs, e.Inode)
	sw.dirs += 1 + e.SubtreeDirs
	sw.files += e.SubtreeFiles
	sw.bytes += e.SubtreeBytes
	sw.reused += e.SubtreeBytes
	return nil
}

func (sw *snapshotWriter) writeFile(ctx context.Context, e *pluginapi.Entry, body io.Reader, n store.Node) error {
	n.Type = store.NodeFile
	n.Size = e.Size
	sw.files++
	sw.bytes += e.Size
	rec := store.IndexRecord{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}

	if e.Unchanged {
		if sw.parent == nil {
			return fmt.Errorf("%w: marked unchanged but there is no parent snapshot", ErrEngine)
		}
		pn, err := sw.parent.node(ctx, sw.stream, e.Path)
		if err != nil {
			return fmt.Errorf("parent snapshot: %w", err)
		}
		if pn == nil || pn.Type != store.NodeFile || pn.Size != e.Size {
			return fmt.Errorf("%w: marked unchanged but the parent snapshot has no file of size %d there", ErrEngine, e.Size)
		}
		n.Content = pn.Content
		if e.XattrsFromParent {
			// The engine did not read them (CaptureRequest.ParentXattrs);
			// the ctime it matched says they are the parent's.
			n.Xattrs = pn.Xattrs
		}
		sw.reused += e.Size
		_, _, err = sw.addFile(e.Path, n, rec, false)
		return err
	}
	if body == nil {
		if e.Size != 0 {
			return fmt.Errorf("%w: file of %d bytes sent without a body", ErrEngine, e.Size)
		}
		_, _, err := sw.addFile(e.Path, n, rec, false)
		return err
	}
	d, slot, err := sw.addFile(e.Path, n, rec, true)
	if err != nil {
		return err
	}
	return sw.saver.save(sw.ctx, body, e.Size, chunkKind(n.Name), func(content []store.Hash) {
		sw.trees.fileDone(sw.ctx, d, slot, content)
	})
}

// addFile places file node n (for entry path p) in its directory's tree
// with its change index record rec, as trees.add does, and remembers its
// path for the hard links that may name it.
func (sw *snapshotWriter) addFile(p string, n store.Node, rec store.IndexRecord, pendingContent bool) (*dirNode, int, error) {
	d, slot, err := sw.trees.add(sw.ctx, p, n, pendingContent)
	if err != nil {
		return nil, 0, err
	}
	sw.trees.addIndex(d, n.Name, rec)
	sw.filePaths = append(sw.filePaths, p)
	return d, slot, nil
}

// finish waits for every chunk and tree and returns the streams' roots.
// It must be called once, after the engine's Capture returned.
func (sw *snapshotWriter) finish(ctx context.Context, captureErr error) ([]store.Stream, error) {
	if captureErr == nil {
		sw.trees.endStream(ctx)
	} else {
		sw.fail.set(captureErr)
	}
	sw.saver.close()
	if err := sw.fail.get(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sw.report("", true)
	streams, index, err := sw.trees.roots()
	sw.indexRoots = index
	return streams, err
}

func (sw *snapshotWriter) report(path string, done bool) {
	if sw.progress == nil {
		return
	}
	now := time.Now()
	if !done && now.Sub(sw.lastProgress) < 200*time.Millisecond {
		return
	}
	sw.lastProgress = now
	p := Progress{Op: "create", Stream: sw.stream, Path: path, Files: sw.files + sw.dirs, Bytes: sw.bytes, BytesNew: sw.saver.w.Stats().NewBytes, Done: done}
	if sw.totalBytes > 0 || sw.totalFiles > 0 {
		// An estimate: never below what is done, exact at the end.
		p.TotalFiles, p.TotalBytes = max(sw.totalFiles, p.Files), max(sw.totalBytes, p.Bytes)
		if done {
			p.TotalFiles, p.TotalBytes = p.Files, p.Bytes
		}
	}
	sw.progress(p)
}

// sortedXattrs turns an xattr map into the store's sorted list.
func sortedXattrs(m map[string][]byte) []store.Xattr {
	if len(m) == 0 {
		return nil
	}
	out := make([]store.Xattr, 0, len(m))
	for k, v := range m {
		out = append(out, store.Xattr{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
