package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/pypj/ptest-snap/core"
	"github.com/pypj/ptest-snap/pluginapi"
)

// engineSearchPath is where engines are looked for, in order (see
// pluginapi.SearchDirs): $PTEST_SNAP_PLUGIN_PATH's directories, the
// directory of the running ptest-snap binary, then the user's data
// directory.
func engineSearchPath() []string {
	var dirs []string
	for _, d := range pluginapi.SearchDirs(pluginapi.DiscoverOptions{}) {
		dirs = append(dirs, d.Path)
	}
	return dirs
}

// engineHost resolves engine names to running engine processes through the
// plugin host, one process per engine name for the life of the command, and
// kills every process it started on close.
type engineHost struct {
	host    *pluginapi.Host
	pins    map[string][]byte
	verbose bool
	stderr  io.Writer

	mu      sync.Mutex
	running map[string]*pluginapi.Plugin
}

func newEngineHost(verbose bool, stderr io.Writer, pins map[string][]byte) *engineHost {
	opts := pluginapi.HostOptions{}
	if verbose {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "ptest-snap", Output: stderr, Level: hclog.Debug})
		opts.Stderr = stderr
	}
	return &engineHost{host: pluginapi.NewHost(opts), pins: pins, verbose: verbose, stderr: stderr, running: map[string]*pluginapi.Plugin{}}
}

// resolve is the core's EngineResolver: it finds the engine program through
// discovery and launches it (once per name).
func (h *engineHost) resolve(ctx context.Context, name string) (pluginapi.Engine, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.running[name]; ok && !p.Exited() {
		return p, nil
	}
	found, warnings, err := pluginapi.Lookup(pluginapi.DiscoverOptions{}, name)
	if h.verbose {
		for _, w := range warnings {
			fmt.Fprintf(h.stderr, "ptest-snap: warning: %s\n", w)
		}
	}
	if err != nil {
		return nil, tagged{err: err, tag: core.ErrEngineNotFound}
	}
	p, err := h.host.Launch(ctx, found.Spec(h.pins[name]))
	if err != nil {
		return nil, tagged{err: err, tag: core.ErrEngine}
	}
	h.running[name] = p
	return p, nil
}

// close kills every engine process started, and waits for them.
func (h *engineHost) close() {
	_ = h.host.Close()
}

// discoverEngines lists the engines found; with info it launches each to
// ask its version and capabilities.
func discoverEngines(ctx context.Context, info bool) (*enginesJSON, error) {
	found, warnings := pluginapi.Discover(pluginapi.DiscoverOptions{})
	res := &enginesJSON{SearchPath: engineSearchPath(), Warnings: warnings}
	var host *pluginapi.Host
	if info {
		host = pluginapi.NewHost(pluginapi.HostOptions{})
		defer host.Close()
	}
	for _, f := range found {
		e := engineJSON{Name: f.Name, Path: f.Path, Source: f.Source, Capabilities: []string{}}
		if sum, err := pluginapi.FileSHA256(f.Path); err == nil {
			e.SHA256 = hex.EncodeToString(sum)
		} else {
			e.Error = err.Error()
		}
		if info && e.Error == "" {
			fillEngineInfo(ctx, host, f, &e)
		}
		res.Engines = append(res.Engines, e)
	}
	return res, nil
}

// fillEngineInfo launches the engine and records its Info.
func fillEngineInfo(ctx context.Context, host *pluginapi.Host, f pluginapi.Found, e *engineJSON) {
	p, err := host.Launch(ctx, f.Spec(nil))
	if err != nil {
		e.Error = err.Error()
		return
	}
	defer p.Close()
	in, err := p.Info(ctx)
	if err != nil {
		e.Error = err.Error()
		return
	}
	e.Version = in.Version
	e.ProtocolVersion = in.ProtocolVersion
	for _, c := range in.Capabilities {
		e.Capabilities = append(e.Capabilities, string(c))
	}
}

// tagged is err, also matching tag with errors.Is, without repeating the
// tag's text in the message.
type tagged struct {
	err error
	tag error
}

func (t tagged) Error() string   { return t.err.Error() }
func (t tagged) Unwrap() []error { return []error{t.err, t.tag} }
