package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// imageLoader turns the "image" stream back into an image: it writes the
// `docker save` archive again — plain files as they are, each split layer
// spliced back into its byte-identical tar — straight into `docker load`
// (no temporary file). If the engine already has the image (by ID, the
// config's digest) it is not loaded (skip), unless force.
type imageLoader struct {
	cli  *client.Client
	meta *Metadata
	// force loads the image even when the engine has it.
	force   bool
	started bool
	skip    bool

	pw   *io.PipeWriter
	tw   *tar.Writer
	done chan error

	// received are the layer tars written so far; manifest is the
	// archive's manifest.json (canSkipBase reads both).
	received map[string]bool
	manifest []byte
	// baseSkipped: the "image-base" stream was not read.
	baseSkipped bool
	// loadedID is the image ID the engine reported loading ("" if none).
	loadedID string

	// The layer being spliced: its path, tar size, bytes written so far,
	// and the piece expected next.
	cur      string
	size     int64
	written  int64
	nextIdx  int
	nextHead bool
}

// loadedIDPrefix starts the line `docker load` reports an untagged image
// with (the archive is saved by ID, so it has no tag).
const loadedIDPrefix = "Loaded image ID: "

// manifestName is the save archive's manifest; manifestMax bounds what
// the loader keeps of it.
const (
	manifestName = "manifest.json"
	manifestMax  = 1 << 20
)

// canSkipBase reports whether the image can be loaded from what was
// written so far: every layer tar the manifest lists but the archive lacks
// must be one the engine has (`docker load` does not open a layer's file
// when the engine has its chain ID). The layers the engine has are the
// bottom ones shared with the container's original image, when it is
// still there. Called at the start of the "image-base" stream.
func (l *imageLoader) canSkipBase(ctx context.Context) (bool, error) {
	if !l.started || l.skip || l.force || l.manifest == nil {
		return false, nil
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(l.manifest, &manifest); err != nil || len(manifest) != 1 {
		return false, nil // not a layout this engine writes: read on
	}
	layers, diffIDs := manifest[0].Layers, l.meta.Image.DiffIDs
	if len(layers) != len(diffIDs) {
		return false, nil
	}
	need := 0 // layers[:need] must be in the engine
	for i, p := range layers {
		if !l.received[p] {
			need = i + 1
		}
	}
	if need == 0 {
		return true, nil
	}
	orig := l.meta.DockerInfo.ImageID
	if orig == "" {
		return false, nil
	}
	img, err := l.cli.ImageInspect(ctx, orig)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, engineErr("inspect image "+orig, err)
	}
	if img.RootFS.Type != "layers" || len(img.RootFS.Layers) < need {
		return false, nil
	}
	for i := range need {
		if img.RootFS.Layers[i] != diffIDs[i] {
			return false, nil
		}
	}
	l.baseSkipped = true
	return true, nil
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
	if ok && !l.force {
		l.skip = true
		return nil
	}
	pr, pw := io.Pipe()
	l.pw, l.tw, l.done = pw, tar.NewWriter(pw), make(chan error, 1)
	go func() {
		resp, err := l.cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
		if err == nil {
			err = readJSONMessages(resp.Body, func(m jsonMessage) {
				if id, ok := strings.CutPrefix(strings.TrimSpace(m.Stream), loadedIDPrefix); ok {
					l.loadedID = id // read after done
				}
			})
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
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return err
	}
	layer, i, head, isPiece := parsePiece(e.Path)
	if l.cur != "" && !(isPiece && layer == l.cur) {
		if err := l.endLayer(); err != nil {
			return err
		}
	}
	switch {
	case e.Type == pluginapi.TypeDir:
		// Not written: a split layer's directory is a file in the
		// archive, and `docker load` creates parents itself.
		return nil
	case e.Type == pluginapi.TypeFile && isPiece && l.cur == "" && i == 0 && head:
		return l.beginLayer(layer, e, body)
	case e.Type == pluginapi.TypeFile && isPiece && l.cur != "":
		if i != l.nextIdx || head != l.nextHead {
			return fmt.Errorf("layer piece %q out of order", e.Path)
		}
		if _, err := io.Copy(l, io.LimitReader(body, e.Size)); err != nil {
			return err
		}
		if head {
			l.nextHead = false
		} else {
			l.nextIdx, l.nextHead = i+1, true
		}
		return nil
	case e.Type == pluginapi.TypeFile && e.Path == manifestName && e.Size <= manifestMax:
		b := make([]byte, e.Size)
		if _, err := io.ReadFull(body, b); err != nil {
			return err
		}
		l.manifest = b
		return writeEntryTar(l.tw, e, bytes.NewReader(b))
	case e.Type == pluginapi.TypeFile, e.Type == pluginapi.TypeSymlink:
		return writeEntryTar(l.tw, e, body)
	}
	return fmt.Errorf("unexpected entry %q (%s) in the image stream", e.Path, e.Type)
}

// beginLayer starts splicing the layer whose first head is e.
func (l *imageLoader) beginLayer(layer string, e *pluginapi.Entry, body io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(body, e.Size)); err != nil {
		return err
	}
	size, meta, err := parseFirstHead(buf.Bytes())
	if err != nil {
		return fmt.Errorf("layer %s: %w", layer, err)
	}
	if err := l.tw.WriteHeader(&tar.Header{Name: layer, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	l.cur, l.size, l.written, l.nextIdx, l.nextHead = layer, size, 0, 0, false
	if l.received == nil {
		l.received = map[string]bool{}
	}
	l.received[layer] = true
	_, err = l.Write(meta)
	return err
}

// Write appends spliced bytes to the current layer tar.
func (l *imageLoader) Write(p []byte) (int, error) {
	if l.written+int64(len(p)) > l.size {
		return 0, fmt.Errorf("layer %s is longer than its first piece says", l.cur)
	}
	n, err := l.tw.Write(p)
	l.written += int64(n)
	return n, err
}

// endLayer checks that the layer being spliced is complete: every byte,
// ending with a head.
func (l *imageLoader) endLayer() error {
	if l.cur == "" {
		return nil
	}
	if l.written != l.size || l.nextHead {
		return fmt.Errorf("layer %s ended after %d of %d bytes", l.cur, l.written, l.size)
	}
	l.cur = ""
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
	if err := l.tw.Close(); err != nil {
		return false, l.fail(err)
	}
	l.pw.Close()
	l.pw = nil
	if err := <-l.done; err != nil {
		if l.baseSkipped {
			// The base image went away between canSkipBase and the load.
			return false, engineErr("load image (its base layers were expected in the engine; skip-present-image=false loads them from the snapshot)", err)
		}
		return false, engineErr("load image", err)
	}
	if l.loadedID == l.meta.Image.ID {
		return true, nil // the engine said so: no inspect needed
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
