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
	// pending are launches prelaunch began, taken by resolve.
	pending map[string]chan launched
	// launching counts prelaunch's goroutines; close waits for them.
	launching sync.WaitGroup
}

// launched is the outcome of a launch begun by prelaunch.
type launched struct {
	p   *pluginapi.Plugin
	err error
}

func newEngineHost(verbose bool, stderr io.Writer, pins map[string][]byte) *engineHost {
	opts := pluginapi.HostOptions{}
	if verbose {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Name: "ptest-snap", Output: stderr, Level: hclog.Debug})
		opts.Stderr = stderr
	}
	return &engineHost{host: pluginapi.NewHost(opts), pins: pins, verbose: verbose, stderr: stderr, running: map[string]*pluginapi.Plugin{}, pending: map[string]chan launched{}}
}

// prelaunch starts the engine name in the background, so that its process
// start and handshake (~60 ms) overlap what the command does before it needs
// the engine (opening the store: Badger's open and the lock); resolve then
// takes it. A failed prelaunch is reported by resolve, as a launch there
// would be.
func (h *engineHost) prelaunch(ctx context.Context, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.pending[name]; ok {
		return
	}
	if _, ok := h.running[name]; ok {
		return
	}
	done := make(chan launched, 1)
	h.pending[name] = done
	h.launching.Add(1)
	go func() {
		defer h.launching.Done()
		p, err := h.launch(ctx, name)
		done <- launched{p: p, err: err}
	}()
}

// resolve is the core's EngineResolver: it finds the engine program through
// discovery and launches it (once per name), or takes the launch prelaunch
// began.
func (h *engineHost) resolve(ctx context.Context, name string) (pluginapi.Engine, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.running[name]; ok && !p.Exited() {
		return p, nil
	}
	var r launched
	if done, ok := h.pending[name]; ok {
		delete(h.pending, name)
		select {
		case r = <-done:
		case <-ctx.Done():
			// The launch goes on and ends with the host (close).
			return nil, fmt.Errorf("engine %q: launch: %w", name, ctx.Err())
		}
	}
	if r.p == nil && r.err == nil || r.p != nil && r.p.Exited() {
		// Not prelaunched, or the prelaunched process is gone already.
		r.p, r.err = h.launch(ctx, name)
	}
	if r.err != nil {
		return nil, r.err
	}
	h.running[name] = r.p
	return r.p, nil
}

// launch finds the engine program through discovery and starts it.
func (h *engineHost) launch(ctx context.Context, name string) (*pluginapi.Plugin, error) {
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
	return p, nil
}

// close kills every engine process started, and waits for them.
func (h *engineHost) close() {
	_ = h.host.Close()
	// A launch still in flight sees the host closed and kills its
	// process itself (pluginapi.Host.Launch).
	h.launching.Wait()
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
