package core

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// targetEntry is what an index-only capture reports of one entry of a
// target, for planning an in-place restore.
type targetEntry struct {
	Type       pluginapi.EntryType
	Mode       uint32
	UID, GID   uint32
	MtimeNs    int64
	CtimeNs    int64
	Inode      uint64
	Size       int64
	LinkTarget string
	Xattrs     []store.Xattr
}

// targetIndex is a target's entries by stream and path.
type targetIndex map[string]map[string]*targetEntry

// files returns the change-index form of the target's regular files.
func (t targetIndex) files() store.ChangeIndex {
	out := make(store.ChangeIndex, len(t))
	for stream, entries := range t {
		m := make(map[string]store.IndexRecord, len(entries))
		for p, e := range entries {
			if e.Type == pluginapi.TypeFile {
				m[p] = store.IndexRecord{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
			}
		}
		out[stream] = m
	}
	return out
}

// targetChildren is, by stream and directory path ("" for the root), the
// names of a target's entries in that directory, in capture order (sorted,
// as the protocol has them): what a sparse in-place restore compares with
// a snapshot's directory to find what to delete.
type targetChildren map[string]map[string][]string

// indexCollector is a pluginapi.CaptureWriter that keeps the entries of an
// index-only capture.
type indexCollector struct {
	idx      targetIndex
	children targetChildren
	stream   map[string]*targetEntry
	kids     map[string][]string
}

func (c *indexCollector) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }

func (c *indexCollector) BeginStream(_ context.Context, name string) error {
	if _, ok := c.idx[name]; ok {
		return fmt.Errorf("%w: stream %q sent twice", ErrEngine, name)
	}
	c.stream = map[string]*targetEntry{}
	c.idx[name] = c.stream
	c.kids = map[string][]string{}
	c.children[name] = c.kids
	return nil
}

func (c *indexCollector) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	if c.stream == nil {
		return fmt.Errorf("%w: entry %q before any stream", ErrEngine, e.Path)
	}
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return fmt.Errorf("%w: %w", ErrEngine, err)
	}
	if body != nil {
		// An engine that ignores IndexOnly: drain so it can go on.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return err
		}
	}
	dir, name := "", e.Path
	if i := strings.LastIndexByte(e.Path, '/'); i >= 0 {
		dir, name = e.Path[:i], e.Path[i+1:]
	}
	c.kids[dir] = append(c.kids[dir], name)
	c.stream[e.Path] = &targetEntry{
		Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID,
		MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode, Size: e.Size,
		LinkTarget: e.LinkTarget, Xattrs: sortedXattrs(e.Xattrs),
	}
	return nil
}

// captureIndex runs an index-only capture of target through eng. excludes
// are the snapshot's (store.Snapshot.Excludes): what they match is not
// listed, so the plan neither rewrites nor deletes it.
func captureIndex(ctx context.Context, eng pluginapi.Engine, target string, options map[string]string, excludes []string) (targetIndex, error) {
	idx, _, err := captureListing(ctx, eng, target, options, excludes)
	return idx, err
}

// captureListing is captureIndex that also returns each directory's
// entries.
func captureListing(ctx context.Context, eng pluginapi.Engine, target string, options map[string]string, excludes []string) (targetIndex, targetChildren, error) {
	c := &indexCollector{idx: targetIndex{}, children: targetChildren{}}
	req := &pluginapi.CaptureRequest{Target: target, Excludes: excludes, Options: options, IndexOnly: true}
	if err := eng.Capture(ctx, req, c); err != nil {
		return nil, nil, err
	}
	return c.idx, c.children, nil
}

// sameXattrs compares two sorted xattr lists.
func sameXattrs(a, b []store.Xattr) bool {
	return slices.EqualFunc(a, b, func(x, y store.Xattr) bool {
		return x.Name == y.Name && string(x.Value) == string(y.Value)
	})
}
