package fstree

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// record is one captured entry with its body, as a host would keep it.
type record struct {
	stream  string
	e       pluginapi.Entry
	body    []byte
	hasBody bool
}

// memWriter is a CaptureWriter that keeps everything in memory.
type memWriter struct {
	meta    []pluginapi.Metadata
	streams []string
	recs    []record
	// failAfter, if > 0, makes WriteEntry fail once that many entries
	// were received.
	failAfter int
}

var errWriterStop = errors.New("writer stopped on purpose")

func (w *memWriter) WriteMetadata(_ context.Context, m pluginapi.Metadata) error {
	w.meta = append(w.meta, m)
	return nil
}

func (w *memWriter) BeginStream(_ context.Context, name string) error {
	w.streams = append(w.streams, name)
	return nil
}

func (w *memWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	if w.failAfter > 0 && len(w.recs) >= w.failAfter {
		return errWriterStop
	}
	r := record{stream: w.streams[len(w.streams)-1], e: *e}
	if body != nil {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if int64(len(b)) != e.Size {
			return errors.New("body length differs from entry size")
		}
		r.body, r.hasBody = b, true
	}
	w.recs = append(w.recs, r)
	return nil
}

// memReader is a RestoreReader over recorded entries.
type memReader struct {
	recs []record
	i    int
}

func (r *memReader) Next(context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if r.i >= len(r.recs) {
		return "", nil, nil, io.EOF
	}
	rec := r.recs[r.i]
	r.i++
	var body io.Reader
	if rec.hasBody {
		body = bytes.NewReader(rec.body)
	}
	e := rec.e
	return rec.stream, &e, body, nil
}

func capture(t *testing.T, root string, opts CaptureOptions) *memWriter {
	t.Helper()
	if opts.Stream == "" {
		opts.Stream = "rootfs"
	}
	w := &memWriter{}
	require.NoError(t, Capture(context.Background(), root, opts, w))
	return w
}

func restore(t *testing.T, recs []record, target string, opts ApplyOptions) error {
	t.Helper()
	a, err := NewApplier(target, opts)
	if err != nil {
		return err
	}
	return ApplyAll(context.Background(), &memReader{recs: recs}, map[string]*Applier{"rootfs": a})
}

// comparable strips what legitimately differs between two captures of
// equal trees (ctime, inode) and keeps the rest.
func comparable(recs []record) []record {
	out := make([]record, len(recs))
	for i, r := range recs {
		r.e.CtimeNs, r.e.Inode = 0, 0
		if len(r.e.Xattrs) == 0 {
			r.e.Xattrs = nil
		}
		out[i] = r
	}
	return out
}

func paths(recs []record) []string {
	var p []string
	for _, r := range recs {
		p = append(p, r.e.Path)
	}
	return p
}

func find(t *testing.T, recs []record, p string) record {
	t.Helper()
	for _, r := range recs {
		if r.e.Path == p {
			return r
		}
	}
	t.Fatalf("no entry %q", p)
	return record{}
}

func writeFile(t *testing.T, p string, data string, mode uint32) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
	chmod(t, p, uint32(mode))
}

// chmod takes Unix mode bits (os.Chmod wants os.ModeSetuid and friends).
func chmod(t *testing.T, p string, mode uint32) {
	t.Helper()
	require.NoError(t, unix.Chmod(p, mode))
}

// setMtimes gives every entry under root (not root) a distinct mtime with
// nanoseconds, deepest first so setting a child does not move its parent.
func setMtimes(t *testing.T, root string, base int64) {
	t.Helper()
	var all []string
	require.NoError(t, filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if p != root {
			all = append(all, p)
		}
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(all)))
	for i, p := range all {
		ns := base + int64(i)*1_000_003_007
		ts := []unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
		require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// xattrsSupported reports whether dir's file system keeps user.* xattrs.
func xattrsSupported(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, "xattr-probe")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	defer os.Remove(p)
	return unix.Setxattr(p, "user.probe", []byte("1"), 0) == nil
}

func isRoot() bool { return os.Geteuid() == 0 }

// withParent returns opts with parent as its parent index: as Parent, or
// with prints as ParentFingerprints (what an engine gets from the host
// when it declares pluginapi.CapParentFingerprints).
func withParent(t *testing.T, opts CaptureOptions, parent pluginapi.ParentIndex, prints bool) CaptureOptions {
	t.Helper()
	if !prints {
		opts.Parent = parent
		return opts
	}
	opts.Parent = nil
	opts.ParentFingerprints = map[string]*pluginapi.ParentFingerprints{}
	for stream, entries := range parent {
		p, err := pluginapi.NewParentFingerprints(entries)
		require.NoError(t, err)
		opts.ParentFingerprints[stream] = p
	}
	return opts
}
