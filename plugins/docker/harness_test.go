package docker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/pypj/ptest-snap/pluginapi"
)

// This file is a small in-memory host for the tests: it collects a capture
// the way the core would receive it (metadata, streams, entries, bodies),
// resolves entries marked Unchanged from the parent capture, counts the new
// bytes a content-defined-chunking store would keep, and replays a capture
// as a RestoreReader. The Docker engine itself is always the real one.

// captured is one entry with its body.
type captured struct {
	stream string
	entry  pluginapi.Entry
	body   []byte
	// unchanged: the engine marked it Unchanged (body from the parent).
	unchanged bool
}

// capture is everything an engine sent.
type capture struct {
	meta    pluginapi.Metadata
	streams []string
	entries []captured
	// sentBytes: body bytes the engine sent; unchangedEntries: entries it
	// marked Unchanged (their bytes came from the parent).
	sentBytes        int64
	unchangedEntries int
}

// index returns the capture's change index, as the host keeps it.
func (c *capture) index() pluginapi.ParentIndex {
	idx := pluginapi.ParentIndex{}
	for _, ce := range c.entries {
		if idx[ce.stream] == nil {
			idx[ce.stream] = map[string]pluginapi.IndexEntry{}
		}
		e := ce.entry
		idx[ce.stream][e.Path] = pluginapi.IndexEntry{Size: e.Size, MtimeNs: e.MtimeNs, CtimeNs: e.CtimeNs, Inode: e.Inode}
	}
	return idx
}

// chunkSet is a host-side stand-in for the store's dedup: bodies are split
// by a gear-hash content-defined chunker (min 16 KiB, avg ~64 KiB, max
// 256 KiB) and a chunk's bytes count as new only the first time its
// SHA-256 is seen.
type chunkSet struct {
	seen     map[[32]byte]bool
	newBytes int64
}

func newChunkSet() *chunkSet { return &chunkSet{seen: map[[32]byte]bool{}} }

var gear = func() (g [256]uint64) {
	x := uint64(0x9e3779b97f4a7c15)
	for i := range g {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		g[i] = x
	}
	return
}()

func (cs *chunkSet) add(b []byte) {
	const minSize, maxSize, mask = 16 << 10, 256 << 10, (1 << 16) - 1
	for len(b) > 0 {
		n := len(b)
		if n > minSize {
			var h uint64
			cut := min(n, maxSize)
			for i := minSize; i < min(n, maxSize); i++ {
				h = h<<1 + gear[b[i]]
				if h&mask == 0 {
					cut = i + 1
					break
				}
			}
			n = cut
		}
		sum := sha256.Sum256(b[:n])
		if !cs.seen[sum] {
			cs.seen[sum] = true
			cs.newBytes += int64(n)
		}
		b = b[n:]
	}
}

// memWriter is a CaptureWriter collecting into a capture.
type memWriter struct {
	c      *capture
	parent *capture
	chunks *chunkSet
	cur    string
}

func (w *memWriter) WriteMetadata(ctx context.Context, m pluginapi.Metadata) error {
	w.c.meta = m
	return nil
}

func (w *memWriter) BeginStream(ctx context.Context, name string) error {
	for _, s := range w.c.streams {
		if s == name {
			return fmt.Errorf("stream %q begun twice", name)
		}
	}
	w.c.streams = append(w.c.streams, name)
	w.cur = name
	return nil
}

func (w *memWriter) WriteEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if w.cur == "" {
		return fmt.Errorf("entry %q before any stream", e.Path)
	}
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return err
	}
	if n := len(w.c.entries); n > 0 {
		if last := w.c.entries[n-1]; last.stream == w.cur && !preorderLess(last.entry.Path, e.Path) {
			return fmt.Errorf("stream %s: %q after %q is out of order", w.cur, e.Path, last.entry.Path)
		}
	}
	ce := captured{stream: w.cur, entry: *e}
	switch {
	case e.Unchanged:
		if w.parent == nil {
			return fmt.Errorf("%q marked unchanged without a parent", e.Path)
		}
		var found bool
		for _, pe := range w.parent.entries {
			if pe.stream == w.cur && pe.entry.Path == e.Path {
				ce.body, found = pe.body, true
			}
		}
		if !found {
			return fmt.Errorf("%q marked unchanged but the parent lacks it", e.Path)
		}
		ce.entry.Unchanged = false
		ce.unchanged = true
		w.c.unchangedEntries++
	case e.Type == pluginapi.TypeFile:
		var buf bytes.Buffer
		n, err := io.Copy(&buf, body)
		if err != nil {
			return err
		}
		if n != e.Size {
			return fmt.Errorf("%q: body %d bytes, entry says %d", e.Path, n, e.Size)
		}
		ce.body = buf.Bytes()
		w.c.sentBytes += n
		if w.chunks != nil {
			w.chunks.add(ce.body)
		}
	}
	w.c.entries = append(w.c.entries, ce)
	return nil
}

// reader replays a capture.
type reader struct {
	c *capture
	i int
}

func (r *reader) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if r.i >= len(r.c.entries) {
		return "", nil, nil, io.EOF
	}
	ce := r.c.entries[r.i]
	r.i++
	e := ce.entry
	var body io.Reader
	if e.Type == pluginapi.TypeFile {
		body = bytes.NewReader(ce.body)
	}
	return ce.stream, &e, body, nil
}

// layerStats counts the image streams' split layers that were sent as
// Unchanged (every piece) and those that were sent.
func (c *capture) layerStats() (unchanged, sent int) {
	all := map[string]bool{}
	var order []string
	for _, ce := range c.entries {
		if ce.stream != imageStream && ce.stream != baseStream || ce.entry.Type != pluginapi.TypeFile {
			continue
		}
		layer, _, _, ok := parsePiece(ce.entry.Path)
		if !ok {
			continue
		}
		if _, seen := all[layer]; !seen {
			all[layer] = true
			order = append(order, layer)
		}
		all[layer] = all[layer] && ce.unchanged
	}
	for _, l := range order {
		if all[l] {
			unchanged++
		} else {
			sent++
		}
	}
	return unchanged, sent
}

// restoreRequest is the request the host would build from a capture.
func (c *capture) restoreRequest(target string) *pluginapi.RestoreRequest {
	return &pluginapi.RestoreRequest{Target: target, Metadata: c.meta, Streams: c.streams, Options: map[string]string{}}
}
