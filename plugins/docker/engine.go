package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// Name is the engine's name (its binary is ptest-snap-engine-docker).
const Name = "docker"

// Version is the engine's version.
const Version = "0.1.0"

// DefaultFlattenLayers is the layer count above which a capture flattens the
// committed image (export + import): each snapshot → restore → snapshot
// cycle adds a layer, and Docker refuses images past about 125 layers.
const DefaultFlattenLayers = 100

// Options configure an Engine.
type Options struct {
	// ClientOpts build the Docker client; nil means the environment
	// (DOCKER_HOST, ...) with API version negotiation.
	ClientOpts []client.Opt
	// TempDir holds a restore's volume data until the image is loaded
	// (volumes come first in the stream), and a capture's own layer and
	// base layers until they are sent; "" is os.TempDir.
	TempDir string
	// FlattenLayers overrides DefaultFlattenLayers when > 0.
	FlattenLayers int
}

// Engine captures and restores Docker containers. It is safe for concurrent
// use; the Docker client is created on first use.
type Engine struct {
	opts Options

	mu  sync.Mutex
	cli *client.Client
}

// New returns the engine configured from the environment, as the plugin
// binary serves it.
func New() *Engine { return NewWithOptions(Options{}) }

// NewWithOptions returns an engine with explicit options.
func NewWithOptions(opts Options) *Engine { return &Engine{opts: opts} }

// Close releases the Docker client.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cli == nil {
		return nil
	}
	err := e.cli.Close()
	e.cli = nil
	return err
}

// client returns the Docker client, creating it on first use. Creating it
// does not contact the engine; the first call does (and negotiates the API
// version, so a v28 client speaks 1.41 to Docker 20.10).
func (e *Engine) client() (*client.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cli != nil {
		return e.cli, nil
	}
	opts := e.opts.ClientOpts
	if opts == nil {
		opts = []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker: client: %w: %v", pluginapi.ErrUnavailable, err)
	}
	e.cli = cli
	return cli, nil
}

// Info describes the engine.
func (e *Engine) Info(ctx context.Context) (pluginapi.Info, error) {
	return pluginapi.Info{
		Name:            Name,
		Version:         Version,
		ProtocolVersion: pluginapi.ProtocolVersion,
		Capabilities:    []pluginapi.Capability{pluginapi.CapRestoreNewTarget, pluginapi.CapParentIndex},
	}, nil
}

// Identify resolves a container name or ID (or unique ID prefix) to the
// container's full ID (the EnvID, stable for the container's life) and its
// name.
func (e *Engine) Identify(ctx context.Context, target string, options map[string]string) (pluginapi.Identity, error) {
	if target == "" {
		return pluginapi.Identity{}, fmt.Errorf("docker: identify: empty container name: %w", pluginapi.ErrInvalidTarget)
	}
	cli, err := e.client()
	if err != nil {
		return pluginapi.Identity{}, err
	}
	c, err := cli.ContainerInspect(ctx, target)
	if err != nil {
		return pluginapi.Identity{}, containerErr("inspect", target, err)
	}
	return pluginapi.Identity{EnvID: c.ID, Target: strings.TrimPrefix(c.Name, "/")}, nil
}

// flattenThreshold reads the "flatten-layers" option.
func (e *Engine) flattenThreshold(options map[string]string) (int, error) {
	if v, ok := options["flatten-layers"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("docker: option flatten-layers=%q: want a positive integer", v)
		}
		return n, nil
	}
	if e.opts.FlattenLayers > 0 {
		return e.opts.FlattenLayers, nil
	}
	return DefaultFlattenLayers, nil
}

// boolOption reads a true/false option ("", absent: false).
func boolOption(options map[string]string, key string) (bool, error) {
	return boolOptionOr(options, key, false)
}

// boolOptionOr reads a true/false option ("", absent: def).
func boolOptionOr(options map[string]string, key string, def bool) (bool, error) {
	v, ok := options[key]
	if !ok || v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("docker: option %s=%q: want true or false", key, v)
	}
	return b, nil
}

var _ pluginapi.Engine = (*Engine)(nil)
