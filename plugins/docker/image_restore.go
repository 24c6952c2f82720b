package docker

import (
	"archive/tar"
	"context"
	"fmt"
	"io"

	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// imageLoader turns the "image" stream back into an image: the entries are
// written as a tar straight into `docker load` (no temporary file). If the
// engine already has the image (by ID, which is the config's digest), the
// stream is read and dropped instead.
type imageLoader struct {
	cli     *client.Client
	meta    *Metadata
	started bool
	skip    bool

	pw   *io.PipeWriter
	tw   *tar.Writer
	done chan error
	want map[string]bool
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
	l.want = map[string]bool{imageConfigPath: true, imageLayersDir: true}
	for _, d := range l.meta.Image.DiffIDs {
		l.want[layerPath(d)] = true
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
	if l.skip || e.Path == imageManifestPath {
		// The manifest is regenerated from the metadata's diff IDs, so the
		// archive names only the files this engine checked.
		if body != nil {
			_, err := io.Copy(io.Discard, body)
			return err
		}
		return nil
	}
	if !l.want[e.Path] {
		return fmt.Errorf("docker: unexpected entry %q in the image stream", e.Path)
	}
	if err := writeEntryTar(l.tw, e, body); err != nil {
		return l.fail(fmt.Errorf("docker: load image: %w", err))
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
