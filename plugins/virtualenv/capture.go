package virtualenv

import (
	"context"
	"fmt"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/pluginapi/fstree"
)

// Capture writes the venv's metadata, then its files as the stream "venv":
// every file, directory and symlink (verbatim, never followed), honouring
// the request's excludes, parent index and IndexOnly.
func (*Engine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	venv, err := venvPath(req.Target)
	if err != nil {
		return err
	}
	opts := fstree.RequestOptions(StreamName, req)
	// The metadata (pyvenv.cfg, every distribution's METADATA: ~6 ms
	// for venv-full) is collected while the walk lists the first
	// directories, not before it starts.
	opts.Prelude = func(ctx context.Context) error {
		m, err := collectMetadata(venv, req)
		if err != nil {
			return fmt.Errorf("capture virtualenv %s: %w", venv, err)
		}
		md, err := m.encode()
		if err != nil {
			return err
		}
		return w.WriteMetadata(ctx, md)
	}
	return fstree.Capture(ctx, venv, opts, w)
}
