package virtualenv

import (
	"context"
	"fmt"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/pluginapi/fstree"
)

// Capture writes the venv's metadata, then its files as the stream "venv":
// every file, directory and symlink (verbatim, never followed), honouring
// the request's excludes, parent index and IndexOnly. An IndexOnly capture
// writes metadata that carries only its version (see indexOnlyMetadata).
func (*Engine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	venv, err := venvPath(req.Target)
	if err != nil {
		return err
	}
	opts := fstree.RequestOptions(StreamName, req)
	if req.IndexOnly {
		opts.Prelude = func(ctx context.Context) error { return w.WriteMetadata(ctx, indexOnlyMetadata) }
		return fstree.Capture(ctx, venv, opts, w)
	}
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

// indexOnlyMetadata is what an IndexOnly capture writes as its metadata.
// The host lists a target that way only to compare it with a snapshot
// before an in-place restore, and reads nothing of the metadata; collecting
// it opens every distribution's METADATA (94 in venv-full; 4-7 ms when all
// are cached), and the listing's first entries wait for it (the Prelude
// runs before BeginStream), so the whole restore did. Five minutes after
// they were last read, 1 to 14 of the 94 were no longer cached (fincore of
// three copies), each then a read from the disk.
var indexOnlyMetadata = pluginapi.Metadata{Version: MetadataVersion, JSON: []byte("{}")}
