package virtualenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/pluginapi/fstree"
)

// EngineName is the engine's name; its binary is ptest-snap-engine-virtualenv.
const EngineName = "virtualenv"

// EngineVersion is the engine's own version.
const EngineVersion = "0.1.0"

// StreamName is the one stream a capture writes: the venv's files.
const StreamName = "venv"

// Engine captures and restores Python virtual environments.
type Engine struct{}

// New returns the virtualenv engine.
func New() pluginapi.Engine { return &Engine{} }

// Info describes the engine.
func (*Engine) Info(context.Context) (pluginapi.Info, error) {
	return pluginapi.Info{
		Name:            EngineName,
		Version:         EngineVersion,
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

// Identify checks that target is a venv (a directory holding pyvenv.cfg and
// bin/python) and names it by its real path.
func (*Engine) Identify(_ context.Context, target string, _ map[string]string) (pluginapi.Identity, error) {
	real, err := venvPath(target)
	if err != nil {
		return pluginapi.Identity{}, err
	}
	return pluginapi.Identity{EnvID: real, Target: real}, nil
}

// venvPath validates that target is a venv and returns its absolute real
// path. The errors say exactly what is missing.
func venvPath(target string) (string, error) {
	real, err := fstree.RealDir(target, "virtualenv path")
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(filepath.Join(real, "pyvenv.cfg")); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a virtualenv: pyvenv.cfg is missing", pluginapi.ErrInvalidTarget, real)
	}
	if _, err := os.Lstat(filepath.Join(real, "bin", "python")); err != nil {
		return "", fmt.Errorf("%w: %s is not a virtualenv: bin/python is missing", pluginapi.ErrInvalidTarget, real)
	}
	return real, nil
}
