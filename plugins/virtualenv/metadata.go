package virtualenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pypj/ptest-snap/pluginapi"
)

// MetadataVersion is the version of the metadata JSON schema below.
const MetadataVersion = 1

// VenvMetadata is what a capture records about a venv besides its files,
// serialised as the snapshot's engine metadata (JSON). The first fields are
// the original report's virtualenv_info.
type VenvMetadata struct {
	// Schema repeats MetadataVersion inside the JSON.
	Schema int `json:"schema"`
	// VenvPath is the venv's absolute real path.
	VenvPath string `json:"venv_path"`
	// PythonPath is VenvPath/bin/python.
	PythonPath string `json:"python_path"`
	// PipPath is VenvPath/bin/pip, or "" when the venv has no pip.
	PipPath string `json:"pip_path"`
	// Active: VIRTUAL_ENV of the caller (the request's env, else the
	// engine's environment) names this venv.
	Active bool `json:"active"`
	// InstalledPackages maps PEP 503 normalised distribution name → version.
	InstalledPackages map[string]string `json:"installed_packages"`
	// Editable maps normalised name → project directory of editable installs.
	Editable map[string]string `json:"editable,omitempty"`

	// PythonVersion is the venv's Python version ("3.11.7").
	PythonVersion string `json:"python_version"`
	// PythonImplementation is "CPython", "PyPy", ...
	PythonImplementation string `json:"python_implementation"`
	// BaseInterpreter identifies the interpreter the venv was made from.
	BaseInterpreter BaseInterpreter `json:"base_interpreter"`
	// PyvenvCfg holds every key of pyvenv.cfg (home,
	// include-system-site-packages, version, executable, command, ...).
	PyvenvCfg map[string]string `json:"pyvenv_cfg"`
	// SitePackages lists the site-packages directories, relative to the venv.
	SitePackages []string `json:"site_packages"`

	// Env and AllocatedPorts are the user's configuration
	// (CaptureRequest.Env and Ports).
	Env            map[string]string `json:"env,omitempty"`
	AllocatedPorts []int             `json:"allocated_ports,omitempty"`
}

// BaseInterpreter is the Python a venv runs on.
type BaseInterpreter struct {
	// Path is the interpreter as the venv names it (pyvenv.cfg
	// "executable", or where bin/python points, or home/python3).
	Path string `json:"path"`
	// Home is pyvenv.cfg "home": the directory holding it.
	Home string `json:"home"`
	// Realpath is Path with every symlink resolved.
	Realpath string `json:"realpath"`
	// Version is its full version ("3.11.7").
	Version string `json:"version"`
	// Size and MtimeNs of Realpath let a restore skip running the
	// interpreter when it is the very same file.
	Size    int64 `json:"size,omitempty"`
	MtimeNs int64 `json:"mtime_ns,omitempty"`
}

// encode returns m as pluginapi metadata.
func (m *VenvMetadata) encode() (pluginapi.Metadata, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return pluginapi.Metadata{}, fmt.Errorf("encode metadata: %w", err)
	}
	return pluginapi.Metadata{Version: MetadataVersion, JSON: data}, nil
}

// decodeMetadata parses the metadata a capture wrote.
func decodeMetadata(md pluginapi.Metadata) (*VenvMetadata, error) {
	if md.Version != MetadataVersion {
		return nil, fmt.Errorf("%w: virtualenv metadata version %d (this engine reads %d)",
			pluginapi.ErrUnsupported, md.Version, MetadataVersion)
	}
	var m VenvMetadata
	if err := json.Unmarshal(md.JSON, &m); err != nil {
		return nil, fmt.Errorf("%w: decode virtualenv metadata: %v", pluginapi.ErrInvalidTarget, err)
	}
	if m.VenvPath == "" || m.PythonVersion == "" {
		return nil, fmt.Errorf("%w: virtualenv metadata lacks venv_path or python_version", pluginapi.ErrInvalidTarget)
	}
	return &m, nil
}

// collectMetadata gathers the metadata of the venv at venv (a real path).
// It runs no Python unless pyvenv.cfg lacks the version.
func collectMetadata(venv string, req *pluginapi.CaptureRequest) (*VenvMetadata, error) {
	cfg, err := readPyvenvCfg(venv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", pluginapi.ErrInvalidTarget, err)
	}
	base, impl, err := describeBase(venv, cfg)
	if err != nil {
		return nil, err
	}
	dists := scanDistributions(venv)
	m := &VenvMetadata{
		Schema:               MetadataVersion,
		VenvPath:             venv,
		PythonPath:           filepath.Join(venv, "bin", "python"),
		InstalledPackages:    dists.Installed,
		PythonVersion:        base.Version,
		PythonImplementation: impl,
		BaseInterpreter:      base,
		PyvenvCfg:            cfg.values,
		SitePackages:         dists.SitePackages,
		Env:                  req.Env,
		AllocatedPorts:       req.Ports,
		Active:               isActive(venv, req.Env),
	}
	if len(dists.Editable) > 0 {
		m.Editable = dists.Editable
	}
	if _, err := os.Lstat(filepath.Join(venv, "bin", "pip")); err == nil {
		m.PipPath = filepath.Join(venv, "bin", "pip")
	}
	return m, nil
}

// isActive reports whether VIRTUAL_ENV (from env, else the process) names
// venv.
func isActive(venv string, env map[string]string) bool {
	active, ok := env["VIRTUAL_ENV"]
	if !ok {
		active = os.Getenv("VIRTUAL_ENV")
	}
	if active == "" {
		return false
	}
	if real, err := filepath.EvalSymlinks(active); err == nil {
		active = real
	}
	return filepath.Clean(active) == venv
}
