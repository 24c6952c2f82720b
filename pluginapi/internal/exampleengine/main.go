// Command exampleengine is the 20-line engine of pluginapi/README.md, kept
// here so it keeps compiling.
package main

import (
	"context"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/pluginapi/fstree"
)

type engine struct{}

func (engine) Info(context.Context) (pluginapi.Info, error) {
	return pluginapi.Info{Name: "mytree", Version: "0.1.0", ProtocolVersion: pluginapi.ProtocolVersion}, nil
}
func (engine) Identify(_ context.Context, target string, _ map[string]string) (pluginapi.Identity, error) {
	return pluginapi.Identity{EnvID: target, Target: target}, nil
}
func (engine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if err := w.WriteMetadata(ctx, pluginapi.Metadata{Version: 1, JSON: []byte(`{}`)}); err != nil {
		return err
	}
	return fstree.Capture(ctx, req.Target, fstree.CaptureOptions{Stream: "rootfs", Parent: req.Parent}, w)
}
func (engine) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	return nil, pluginapi.ErrUnsupported // see plugins/dir for a full restore with fstree
}

func main() { pluginapi.Serve(engine{}) } // handshake, gRPC, health, batching: all done
