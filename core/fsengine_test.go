package core

import (
	"context"
	"encoding/json"
	"path/filepath"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/pluginapi/fstree"
)

// newDirEngine returns the directory engine the tests drive in-process.
// TODO(pipeline): switch to plugins/dir's dir.New() once it lands; this is
// the same fstree calls the directory engine makes.
func newDirEngine() pluginapi.Engine { return fsEngine{} }

type fsEngine struct{}

func (fsEngine) Info(context.Context) (pluginapi.Info, error) {
	return pluginapi.Info{Name: "dir", Version: "test", ProtocolVersion: pluginapi.ProtocolVersion, Capabilities: []pluginapi.Capability{
		pluginapi.CapRestoreInPlace, pluginapi.CapRestoreNewTarget, pluginapi.CapParentIndex, pluginapi.CapIndexOnly}}, nil
}

func (fsEngine) Identify(_ context.Context, target string, _ map[string]string) (pluginapi.Identity, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return pluginapi.Identity{}, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	return pluginapi.Identity{EnvID: abs, Target: abs}, nil
}

func (fsEngine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	meta, _ := json.Marshal(map[string]string{"path": req.Target})
	if err := w.WriteMetadata(ctx, pluginapi.Metadata{Version: 1, JSON: meta}); err != nil {
		return err
	}
	return fstree.Capture(ctx, req.Target, fstree.CaptureOptions{Stream: "rootfs", Excludes: req.Excludes, Parent: req.Parent, IndexOnly: req.IndexOnly}, w)
}

func (fsEngine) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	a, err := fstree.NewApplier(req.Target, fstree.ApplyOptions{InPlace: req.InPlace})
	if err != nil {
		return nil, err
	}
	if err := fstree.ApplyAll(ctx, r, map[string]*fstree.Applier{"rootfs": a}); err != nil {
		return nil, err
	}
	return &pluginapi.RestoreResult{Target: req.Target}, nil
}
