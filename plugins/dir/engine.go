package dir

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/pluginapi/fstree"
)

// Name is the engine's name; its binary is ptest-snap-engine-dir.
const Name = "dir"

// Version is the engine's version.
const Version = "0.1.0"

// Stream is the name of the one stream the engine captures.
const Stream = "rootfs"

// MetadataVersion is the version of the metadata JSON schema.
const MetadataVersion = 1

// Metadata is what the engine records about a directory besides its files.
type Metadata struct {
	// Path is the directory's realPath absolute path at capture.
	Path string `json:"path"`
}

// Engine is the directory engine.
type Engine struct{}

// New returns the directory engine.
func New() pluginapi.Engine { return Engine{} }

// Info names the engine and what it can do.
func (Engine) Info(context.Context) (pluginapi.Info, error) {
	return pluginapi.Info{
		Name:            Name,
		Version:         Version,
		ProtocolVersion: pluginapi.ProtocolVersion,
		Capabilities: []pluginapi.Capability{
			pluginapi.CapRestoreInPlace,
			pluginapi.CapRestoreNewTarget,
			pluginapi.CapParentIndex,
			pluginapi.CapParentFingerprints,
			pluginapi.CapIndexOnly,
			pluginapi.CapRestoreSparse,
		},
	}, nil
}

// Identify resolves target to its realPath absolute path, which is also the
// environment's ID: the same directory reached through a symlink is the
// same environment.
func (Engine) Identify(_ context.Context, target string, _ map[string]string) (pluginapi.Identity, error) {
	realPath, err := fstree.RealDir(target, "directory")
	if err != nil {
		return pluginapi.Identity{}, err
	}
	return pluginapi.Identity{EnvID: realPath, Target: realPath}, nil
}

// Capture sends the metadata and the directory's tree as the stream
// "rootfs". Sockets, devices and FIFOs are skipped: they cannot be
// restored as files.
func (Engine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	realPath, err := fstree.RealDir(req.Target, "directory")
	if err != nil {
		return err
	}
	meta, err := json.Marshal(Metadata{Path: realPath})
	if err != nil {
		return err
	}
	if err := w.WriteMetadata(ctx, pluginapi.Metadata{Version: MetadataVersion, JSON: meta}); err != nil {
		return err
	}
	return fstree.Capture(ctx, realPath, fstree.RequestOptions(Stream, req), w)
}

// Restore writes the "rootfs" stream to req.Target (or, if empty, the
// captured path), in place when req.InPlace (a sparse stream when
// req.Sparse), and reports the files it wrote. A restore to a new target that
// fails or is cancelled removes what it wrote (see fstree.Applier).
func (Engine) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	if req.Metadata.Version > MetadataVersion {
		return nil, fmt.Errorf("%w: metadata version %d is newer than this engine's %d", pluginapi.ErrUnsupported, req.Metadata.Version, MetadataVersion)
	}
	target := req.Target
	if target == "" {
		var m Metadata
		if err := json.Unmarshal(req.Metadata.JSON, &m); err != nil {
			return nil, fmt.Errorf("%w: metadata: %v", pluginapi.ErrInvalidTarget, err)
		}
		target = m.Path
	}
	if target == "" {
		return nil, fmt.Errorf("%w: no target to restore to", pluginapi.ErrInvalidTarget)
	}
	target, err := filepath.Abs(target)
	if err != nil {
		return nil, err
	}
	a, err := fstree.NewApplier(target, fstree.ApplyOptions{
		InPlace:       req.InPlace,
		Sparse:        req.InPlace && req.Sparse,
		Excludes:      req.Excludes,
		RecordWritten: true,
	})
	if err != nil {
		return nil, err
	}
	// On any failure or cancellation (the host cancelling the call), a new
	// target is removed again; after a successful Finish, Close does nothing.
	defer a.Close()
	if err := fstree.ApplyAll(ctx, r, map[string]*fstree.Applier{Stream: a}); err != nil {
		return nil, err
	}
	res := &pluginapi.RestoreResult{Target: target}
	if w := a.Written(); w != nil {
		res.Written = pluginapi.ParentIndex{Stream: w}
	}
	return res, nil
}
