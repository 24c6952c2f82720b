package virtualenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// memCapture is the host side of a capture kept in memory: the metadata and
// every entry with its body, so a test can replay it as a restore.
type memCapture struct {
	md      pluginapi.Metadata
	streams []string
	entries []memEntry
}

type memEntry struct {
	stream string
	e      pluginapi.Entry
	body   []byte
}

func (c *memCapture) WriteMetadata(_ context.Context, m pluginapi.Metadata) error {
	c.md = m
	return nil
}

func (c *memCapture) BeginStream(_ context.Context, name string) error {
	c.streams = append(c.streams, name)
	return nil
}

func (c *memCapture) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return err
	}
	me := memEntry{stream: c.streams[len(c.streams)-1], e: *e}
	if body != nil {
		data, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if int64(len(data)) != e.Size {
			return fmt.Errorf("%s: body is %d bytes, entry says %d", e.Path, len(data), e.Size)
		}
		me.body = data
	}
	c.entries = append(c.entries, me)
	return nil
}

// byPath indexes the entries of stream by path.
func (c *memCapture) byPath() map[string]memEntry {
	m := make(map[string]memEntry, len(c.entries))
	for _, e := range c.entries {
		m[e.e.Path] = e
	}
	return m
}

// parentIndex returns the change index a host would keep of this capture.
func (c *memCapture) parentIndex() pluginapi.ParentIndex {
	idx := pluginapi.ParentIndex{}
	for _, e := range c.entries {
		if e.e.Type != pluginapi.TypeFile {
			continue
		}
		if idx[e.stream] == nil {
			idx[e.stream] = map[string]pluginapi.IndexEntry{}
		}
		idx[e.stream][e.e.Path] = pluginapi.IndexEntry{Size: e.e.Size, MtimeNs: e.e.MtimeNs, CtimeNs: e.e.CtimeNs, Inode: e.e.Inode}
	}
	return idx
}

// replay is a RestoreReader over a memCapture. unchanged holds the paths
// the host found identical in the target (in-place planning).
type replay struct {
	c         *memCapture
	unchanged map[string]bool
	// sparse: unchanged entries other than directories are not sent, as
	// in a sparse in-place restore (RestoreRequest.Sparse).
	sparse bool
	i      int
}

func (r *replay) Next(context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if r.i >= len(r.c.entries) {
		return "", nil, nil, io.EOF
	}
	me := r.c.entries[r.i]
	r.i++
	e := me.e
	e.CtimeNs, e.Inode = 0, 0
	if r.sparse && r.unchanged[e.Path] && e.Type != pluginapi.TypeDir {
		return r.Next(context.Background())
	}
	if r.unchanged[e.Path] {
		e.Unchanged = true
		return me.stream, &e, nil, nil
	}
	if e.Type == pluginapi.TypeFile {
		return me.stream, &e, bytes.NewReader(me.body), nil
	}
	return me.stream, &e, nil, nil
}

// sameEntry is the host's in-place test: the target already holds e (the
// same type, mode, owner, mtime, size and link target; core also proves a
// file's content through its change indexes).
func sameEntry(a, b pluginapi.Entry) bool {
	return a.Type == b.Type && a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID &&
		a.Size == b.Size && a.LinkTarget == b.LinkTarget &&
		(a.Type == pluginapi.TypeHardlink || a.MtimeNs == b.MtimeNs)
}

// capture runs the engine's capture of target into memory.
func capture(t *testing.T, target string, mutate func(*pluginapi.CaptureRequest)) *memCapture {
	t.Helper()
	req := &pluginapi.CaptureRequest{Target: target}
	if mutate != nil {
		mutate(req)
	}
	c := &memCapture{}
	require.NoError(t, New().Capture(context.Background(), req, c))
	return c
}

// restore replays snap into target. In place, it first plans like the host:
// an index-only capture of the target marks the entries already there.
func restore(t *testing.T, snap *memCapture, target string, inPlace bool, options map[string]string) (*pluginapi.RestoreResult, error) {
	t.Helper()
	return restoreWith(t, snap, target, inPlace, false, options)
}

// restoreWith is restore, in place with a sparse stream when sparse (the
// target must hold nothing the snapshot lacks: no deletions are sent).
func restoreWith(t *testing.T, snap *memCapture, target string, inPlace, sparse bool, options map[string]string) (*pluginapi.RestoreResult, error) {
	t.Helper()
	rp := &replay{c: snap, unchanged: map[string]bool{}, sparse: sparse}
	if inPlace {
		have := capture(t, target, func(r *pluginapi.CaptureRequest) { r.IndexOnly = true }).byPath()
		for _, me := range snap.entries {
			if h, ok := have[me.e.Path]; ok && sameEntry(h.e, me.e) {
				rp.unchanged[me.e.Path] = true
			}
		}
	}
	req := &pluginapi.RestoreRequest{
		Target:         target,
		OriginalTarget: snap.mustMeta(t).VenvPath,
		InPlace:        inPlace,
		Sparse:         sparse,
		Options:        options,
		Metadata:       snap.md,
		Streams:        snap.streams,
	}
	return New().Restore(context.Background(), req, rp)
}

func (c *memCapture) mustMeta(t *testing.T) *VenvMetadata {
	t.Helper()
	m, err := decodeMetadata(c.md)
	require.NoError(t, err)
	return m
}

// treeSummary describes a capture by path: type, mode, size, link target
// and content hash; with mtimes when withMtime.
func treeSummary(c *memCapture, withMtime bool) map[string]string {
	out := make(map[string]string, len(c.entries))
	for _, me := range c.entries {
		e := me.e
		s := fmt.Sprintf("%s %04o %d %s", e.Type, e.Mode, e.Size, e.LinkTarget)
		if me.body != nil {
			sum := sha256.Sum256(me.body)
			s += " " + hex.EncodeToString(sum[:8])
		}
		if withMtime && e.Type != pluginapi.TypeDir {
			s += fmt.Sprintf(" %d", e.MtimeNs)
		}
		out[e.Path] = s
	}
	return out
}

// run runs a command and returns its combined output, failing the test on
// error.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PIP_NO_INDEX=1", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PYTHONDONTWRITEBYTECODE=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// pipList returns `pip list` of the venv as normalised name → version.
func pipList(t *testing.T, venv string) map[string]string {
	t.Helper()
	out := run(t, "", filepath.Join(venv, "bin", "pip"), "list", "--format=freeze", "--disable-pip-version-check")
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, version, ok := strings.Cut(line, "=="); ok {
			got[normalizeName(name)] = version
		} else if name, _, ok := strings.Cut(line, " @ "); ok {
			got[normalizeName(name)] = "?"
		}
	}
	return got
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fmtSscan scans whitespace-separated words of s into ptrs.
func fmtSscan(s string, ptrs ...*string) (int, error) {
	return fmt.Sscan(s, toAny(ptrs)...)
}

func toAny(ptrs []*string) []any {
	out := make([]any, len(ptrs))
	for i, p := range ptrs {
		out[i] = p
	}
	return out
}
