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
	m, err := collectMetadata(venv, req)
	if err != nil {
		return fmt.Errorf("capture virtualenv %s: %w", venv, err)
	}
	md, err := m.encode()
	if err != nil {
		return err
	}
	if err := w.WriteMetadata(ctx, md); err != nil {
		return err
	}
	return fstree.Capture(ctx, venv, fstree.RequestOptions(StreamName, req), w)
}
