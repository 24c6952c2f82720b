package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// imageLoader turns the "image" stream back into an image: each layer's
// headers and members are spliced back into the byte-identical layer tar
// and written, with the config and a manifest, as one archive straight
// into `docker load` (no temporary file). If the engine already has the
// image (by ID, the config's digest), the stream is read and dropped.
type imageLoader struct {
	cli     *client.Client
	meta    *Metadata
	started bool
	skip    bool

	pw     *io.PipeWriter
	tw     *tar.Writer
	done   chan error
	layers map[string]string // hex → diff ID, of the layers expected
	loaded map[string]bool   // hex → layer written

	// The layer being spliced.
	cur     string
	split   *layerSplit
	next    int
	written int64
	sum     hash.Hash
}

// present reports whether the engine has the snapshot's image.
func (l *imageLoader) present(ctx context.Context) (bool, error) {
	_, err := l.cli.ImageInspect(ctx, l.meta.Image.ID)
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, engineErr("inspect image "+l.meta.Image.ID, err)
}

func (l *imageLoader) start(ctx context.Context) error {
	l.started = true
	ok, err := l.present(ctx)
	if err != nil {
		return err
	}
	if ok {
		l.skip = true
		return nil
	}
	l.layers, l.loaded = map[string]string{}, map[string]bool{}
	for _, d := range l.meta.Image.DiffIDs {
		l.layers[strings.TrimPrefix(d, "sha256:")] = d
	}
	pr, pw := io.Pipe()
	l.pw, l.tw, l.done = pw, tar.NewWriter(pw), make(chan error, 1)
	go func() {
		resp, err := l.cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
		if err == nil {
			err = readJSONMessages(resp.Body, nil)
			resp.Body.Close()
		}
		// Unblock the writer if the engine stopped reading early.
		pr.CloseWithError(fmt.Errorf("image load ended: %v", err))
		l.done <- err
	}()
	return nil
}

// entry adds one entry of the "image" stream.
func (l *imageLoader) entry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if !l.started {
		if err := l.start(ctx); err != nil {
			return err
		}
	}
	if e.Unchanged {
		return fmt.Errorf("docker: image entry %q marked unchanged: in-place restore %w", e.Path, pluginapi.ErrUnsupported)
	}
	if l.skip {
		if body != nil {
			_, err := io.Copy(io.Discard, body)
			return err
		}
		return nil
	}
	if err := l.add(e, body); err != nil {
		return l.fail(fmt.Errorf("docker: load image: %w", err))
	}
	return nil
}

func (l *imageLoader) add(e *pluginapi.Entry, body io.Reader) error {
	switch {
	case e.Path == imageManifestPath:
		// Regenerated from the metadata's diff IDs at the end, so the
		// archive names only what this engine checked.
		_, err := io.Copy(io.Discard, body)
		return err
	case e.Path == imageConfigPath:
		return writeEntryTar(l.tw, e, body)
	case e.Type == pluginapi.TypeDir:
		return nil
	}
	rest, ok := strings.CutPrefix(e.Path, imageLayersDir+"/")
	hexID, name, ok2 := strings.Cut(rest, "/")
	diffID := l.layers[hexID]
	if !ok || !ok2 || diffID == "" || e.Type != pluginapi.TypeFile {
		return fmt.Errorf("unexpected entry %q in the image stream", e.Path)
	}
	if name == "headers" {
		return l.beginLayer(diffID, e, body)
	}
	idx, ok := strings.CutPrefix(name, "members/")
	n, err := strconv.Atoi(idx)
	if !ok || err != nil || e.Path != memberPath(diffID, n) {
		return fmt.Errorf("unexpected entry %q in the image stream", e.Path)
	}
	if l.cur != diffID || l.split == nil || n != l.next || n >= len(l.split.members) {
		return fmt.Errorf("layer member %q out of order", e.Path)
	}
	if _, err := io.Copy(l, io.LimitReader(body, e.Size)); err != nil {
		return err
	}
	l.next++
	return l.writeMeta(l.next)
}

// Write appends spliced bytes to the current layer tar, hashing them.
func (l *imageLoader) Write(p []byte) (int, error) {
	if l.written+int64(len(p)) > l.split.size {
		return 0, fmt.Errorf("layer %s is longer than its headers say", l.cur)
	}
	l.sum.Write(p)
	n, err := l.tw.Write(p)
	l.written += int64(n)
	return n, err
}

func (l *imageLoader) beginLayer(diffID string, e *pluginapi.Entry, body io.Reader) error {
	if err := l.endLayer(); err != nil {
		return err
	}
	if l.loaded[diffID] {
		return fmt.Errorf("layer %s sent twice", diffID)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(body, e.Size)); err != nil {
		return err
	}
	ls, err := parseHeadersFile(buf.Bytes())
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	if err := l.tw.WriteHeader(&tar.Header{Name: layerTarPath(diffID), Mode: 0o644, Size: ls.size, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	l.cur, l.split, l.next, l.written, l.sum = diffID, ls, 0, 0, sha256.New()
	return l.writeMeta(0)
}

// writeMeta writes the bytes before member i (or the tail) and, after the
// tail, checks the layer's digest.
func (l *imageLoader) writeMeta(i int) error {
	if _, err := l.Write(l.split.metas[i]); err != nil {
		return err
	}
	if i < len(l.split.members) {
		return nil
	}
	if l.written != l.split.size {
		return fmt.Errorf("layer %s: %d bytes, want %d", l.cur, l.written, l.split.size)
	}
	if got := "sha256:" + hex.EncodeToString(l.sum.Sum(nil)); got != l.cur {
		return fmt.Errorf("layer %s reassembled to %s", l.cur, got)
	}
	l.loaded[l.cur] = true
	l.cur, l.split = "", nil
	return nil
}

// endLayer checks that no layer is left half written.
func (l *imageLoader) endLayer() error {
	if l.split != nil {
		return fmt.Errorf("layer %s ended after %d of %d members", l.cur, l.next, len(l.split.members))
	}
	return nil
}

// fail aborts the load and returns err (or the engine's reason, if it
// stopped first).
func (l *imageLoader) fail(err error) error {
	if l.pw == nil {
		return err
	}
	l.pw.CloseWithError(err)
	if lerr := <-l.done; lerr != nil {
		err = fmt.Errorf("%w (engine: %v)", err, lerr)
	}
	l.pw = nil
	return err
}

// finish completes the load; the image must exist afterwards.
func (l *imageLoader) finish(ctx context.Context) (loaded bool, err error) {
	if !l.started {
		if err := l.start(ctx); err != nil {
			return false, err
		}
		if !l.skip {
			return false, l.fail(fmt.Errorf("docker: snapshot has no image stream and the engine lacks image %s", l.meta.Image.ID))
		}
	}
	if l.skip {
		return false, nil
	}
	if err := l.endLayer(); err != nil {
		return false, l.fail(err)
	}
	for _, d := range l.meta.Image.DiffIDs {
		if !l.loaded[d] {
			return false, l.fail(fmt.Errorf("docker: layer %s missing from the image stream", d))
		}
	}
	manifest, err := loadManifest(l.meta.Image.DiffIDs)
	if err != nil {
		return false, l.fail(err)
	}
	if err := l.tw.WriteHeader(&tar.Header{Name: imageManifestPath, Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg}); err != nil {
		return false, l.fail(err)
	}
	if _, err := l.tw.Write(manifest); err != nil {
		return false, l.fail(err)
	}
	if err := l.tw.Close(); err != nil {
		return false, l.fail(err)
	}
	l.pw.Close()
	l.pw = nil
	if err := <-l.done; err != nil {
		return false, engineErr("load image", err)
	}
	ok, err := l.present(ctx)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("docker: image %s is missing after load", l.meta.Image.ID)
	}
	return true, nil
}

// abort stops a load in progress (on an error elsewhere).
func (l *imageLoader) abort() {
	if l.pw != nil {
		_ = l.fail(fmt.Errorf("restore aborted"))
	}
}
