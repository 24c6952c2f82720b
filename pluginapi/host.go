package pluginapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/pypj/ptest-snap/internal/devprof"
	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

// ErrHostClosed: Launch was called after Host.Close.
var ErrHostClosed = errors.New("plugin host closed")

// HostOptions configure a Host.
type HostOptions struct {
	// Logger receives go-plugin's log and the plugins' own log lines (they
	// log to stderr through hclog). Nil discards them.
	Logger hclog.Logger
	// Stderr, if set, also receives whatever a plugin writes to stderr that
	// is not a log line. Nothing of a plugin ever reaches the host's stdout:
	// what a plugin prints to stdout after the handshake goes to Logger.
	Stderr io.Writer
	// StartTimeout bounds the launch of a plugin up to its handshake
	// (default 20 s); the Launch context can only shorten it.
	StartTimeout time.Duration
	// CallTimeout bounds Info and Identify (default 30 s), so a hung
	// engine cannot stall them when the caller's context has no deadline.
	// Capture and Restore are bounded by the caller's context only.
	CallTimeout time.Duration
	// InlineBodies turns the shared-memory body ring off: every body then
	// travels inside the gRPC messages, as with an engine that does not
	// use the ring. For tests and diagnosis.
	InlineBodies bool
	// RecordMessages turns packed records off: records then travel as
	// Record messages, and a restore's report of written files as index
	// entries, as with an engine that does not know packed records. For
	// tests and diagnosis.
	RecordMessages bool
}

// Spec names an engine binary to launch.
type Spec struct {
	// Name is the engine's name ("dir" for ptest-snap-engine-dir).
	Name string
	// Path is the executable.
	Path string
	// SHA256, if set, is the checksum the user pinned: a binary with
	// another checksum is refused before it runs (ErrChecksumMismatch).
	SHA256 []byte
}

// Host launches engine plugins and owns their processes: every plugin it
// launched is stopped by Plugin.Close, by Host.Close (call it from the
// CLI's signal handling), when an RPC's context ends before the engine
// answers, or when the plugin breaks the protocol. A plugin with a Restore
// in flight is stopped gracefully (Plugin.Close), so the engine can remove
// a partial new target; any other is killed at once, since it may be hung.
// Plugins also get SIGKILL from the kernel if the host process dies (Linux
// parent-death signal), so none outlives it. A Host is safe for concurrent
// use.
type Host struct {
	opts HostOptions

	mu      sync.Mutex
	closed  bool
	plugins map[*Plugin]struct{}

	// sweepOnce removes, at the first launch, the socket directories that
	// killed hosts left behind (sweepSocketDirs).
	sweepOnce sync.Once
}

// NewHost returns a Host.
func NewHost(opts HostOptions) *Host {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 20 * time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	return &Host{opts: opts, plugins: map[*Plugin]struct{}{}}
}

// Plugin is a running engine plugin: an Engine whose calls go to the plugin
// process over gRPC.
type Plugin struct {
	name string
	path string
	pid  int
	host *Host

	client *plugin.Client
	rpc    enginepb.EngineClient
	// stopProcess cancels the command's context: SIGKILL to the process.
	stopProcess context.CancelFunc
	// ring is the shared-memory body ring given to the plugin, or nil.
	ring *bodyRing
	// infoSeen: an Info answer has been stored in ringOK (the engine maps
	// the ring) and packedRecords (it exchanges packed records); Restore
	// asks Info itself (infoOnce) if nobody did.
	infoSeen      atomic.Bool
	infoOnce      sync.Once
	ringOK        atomic.Bool
	packedRecords atomic.Bool
	// sockDir holds the plugin's socket (Launch says why); removed once
	// the process is gone.
	sockDir string
	// packedIndex: the engine's last Info said it decodes a packed
	// parent index (index_wire.go).
	packedIndex atomic.Bool
	// fingerprints: the engine's last Info declared
	// CapParentFingerprints (fingerprints.go).
	fingerprints atomic.Bool
	// stopped is set once the host has begun stopping the plugin, so a call
	// it cuts short says so rather than "exited unexpectedly".
	stopped atomic.Bool
	once    sync.Once
	// restores counts the Restore calls in flight: Host.Close stops a
	// plugin with one gracefully.
	restores atomic.Int32
}

// Name returns the engine's name.
func (p *Plugin) Name() string { return p.name }

// Path returns the engine's executable.
func (p *Plugin) Path() string { return p.path }

// PID returns the plugin's process ID.
func (p *Plugin) PID() int { return p.pid }

// Exited reports whether the plugin's process has ended (and was reaped).
func (p *Plugin) Exited() bool { return p.client.Exited() }

// Close stops the plugin: politely (go-plugin's shutdown call, which
// cancels the engine's calls; a Restore's cleanup then runs before the
// process exits), then by SIGKILL if it has not exited within 2 s
// (go-plugin's Kill; the 5 s timer covers a shutdown call that hangs). It
// waits until the process is reaped. It is safe to call more than once.
func (p *Plugin) Close() error {
	p.stopped.Store(true)
	p.once.Do(func() {
		t := time.AfterFunc(5*time.Second, p.stopProcess)
		p.client.Kill()
		t.Stop()
		p.stopProcess()
		p.release()
	})
	return nil
}

// kill stops the plugin at once (it may be hung) and reaps it.
func (p *Plugin) kill() {
	p.stopped.Store(true)
	p.once.Do(func() {
		p.stopProcess()
		p.client.Kill()
		p.release()
	})
}

// release frees what the host holds for a plugin whose process is gone:
// the body ring, the socket directory and its place in the host's set.
func (p *Plugin) release() {
	p.ring.close()
	os.RemoveAll(p.sockDir)
	p.host.forget(p)
}

// waitExited waits up to d for the plugin's process to end.
func (p *Plugin) waitExited(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if p.client.Exited() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// callContext bounds a short call by CallTimeout.
func (h *Host) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.opts.CallTimeout)
}

func (h *Host) forget(p *Plugin) {
	h.mu.Lock()
	delete(h.plugins, p)
	h.mu.Unlock()
}

// Close stops every plugin the host launched, waits until their processes
// are reaped, and makes further Launch calls fail. A plugin with a Restore
// in flight is stopped gracefully (Plugin.Close: its engine can remove a
// partial new target), any other is killed at once.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	ps := make([]*Plugin, 0, len(h.plugins))
	for p := range h.plugins {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A profiled plugin (internal/devprof) must be let finish its
			// profile: stop it gracefully then too.
			if p.restores.Load() > 0 || devprof.Enabled() {
				p.Close()
			} else {
				p.kill()
			}
		}()
	}
	wg.Wait()
	return nil
}

// Launch starts the engine binary spec.Path, completes the go-plugin
// handshake (protocol version, gRPC over a socket only this user can
// reach) and returns the running plugin. ctx bounds the launch only; cancelling it during the
// launch kills the process. The caller must Close the plugin (or the Host).
func (h *Host) Launch(ctx context.Context, spec Spec) (*Plugin, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("engine %q: launch: %w", spec.Name, err)
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("engine %q: launch: %w", spec.Name, ErrHostClosed)
	}

	logger := h.opts.Logger.Named("engine-" + spec.Name)
	startTimeout := h.opts.StartTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < startTimeout {
		startTimeout = max(time.Until(dl), time.Millisecond)
	}

	procCtx, stopProcess := context.WithCancel(context.Background())
	cmd := exec.CommandContext(procCtx, spec.Path)
	// The kernel kills the plugin if the host dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The body ring goes to the plugin as fd 3. Without it (no memfd),
	// bodies travel inline.
	var ring *bodyRing
	var ringFile *os.File
	var err error
	if !h.opts.InlineBodies {
		ring, ringFile, err = newHostRing()
		if err != nil {
			logger.Debug("no shared body ring; bodies travel inline", "error", err)
		}
	}
	if ring != nil {
		cmd.ExtraFiles = []*os.File{ringFile}
		cmd.Env = []string{fmt.Sprintf("%s=%d", ringFDEnv, ringFD)}
		// The plugin has its own descriptor once started.
		defer ringFile.Close()
	}
	// The plugin's socket is made in a directory only this user can
	// enter, so no other local user can connect to it: what go-plugin's
	// AutoMTLS would otherwise ensure, at ~40 ms of CPU per launch (a
	// P-521 key and certificate made on each side, then TLS on every
	// message; 10 creates of a one-file tree: 1.09 s with it, 0.66 s
	// without). A process of the same user could attach to the host
	// itself anyway.
	h.sweepOnce.Do(func() { sweepSocketDirs(os.TempDir(), time.Now()) })
	sockDir, err := makeSocketDir()
	if err != nil {
		stopProcess()
		ring.close()
		return nil, fmt.Errorf("engine %q: socket directory: %w", spec.Name, err)
	}
	cmd.Env = append(cmd.Env, plugin.EnvUnixSocketDir+"="+sockDir)
	var secure *plugin.SecureConfig
	if len(spec.SHA256) > 0 {
		secure = &plugin.SecureConfig{Checksum: spec.SHA256, Hash: sha256.New()}
	}
	stdout := &lineLogger{logger: logger, stream: "stdout"}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  HandshakeConfig(),
		Plugins:          plugin.PluginSet{pluginName: &enginePlugin{}},
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
		Stderr:           h.opts.Stderr,
		SyncStdout:       stdout,
		SyncStderr:       &lineLogger{logger: logger, stream: "stderr"},
		StartTimeout:     startTimeout,
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)),
			grpc.WithInitialWindowSize(flowWindow),
			grpc.WithInitialConnWindowSize(flowWindow),
			grpc.WithWriteBufferSize(ioBufferSize),
			grpc.WithReadBufferSize(ioBufferSize),
		},
	}
	client := plugin.NewClient(cfg)

	stopOnCancel := context.AfterFunc(ctx, stopProcess)
	rpcClient, err := startClient(client)
	var raw any
	if err == nil {
		raw, err = rpcClient.Dispense(pluginName)
	}
	if err == nil {
		// Only the private socket keeps other users out (no TLS).
		if rc := client.ReattachConfig(); rc == nil || rc.Addr == nil || rc.Addr.Network() != "unix" {
			err = errors.New("the engine listens on TCP: engines serve on a unix socket in PLUGIN_UNIX_SOCKET_DIR (pluginapi/README.md)")
		}
	}
	stopped := !stopOnCancel()
	if err == nil && stopped {
		err = ctx.Err()
	}
	if err != nil {
		stopProcess()
		client.Kill()
		ring.close()
		os.RemoveAll(sockDir)
		switch {
		case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
			have := "unreadable"
			if sum, serr := FileSHA256(spec.Path); serr == nil {
				have = hex.EncodeToString(sum)
			}
			return nil, fmt.Errorf("engine %q: %s has SHA-256 %s, not the pinned %s; not run: %w",
				spec.Name, spec.Path, have, hex.EncodeToString(spec.SHA256), ErrChecksumMismatch)
		case stopped:
			return nil, fmt.Errorf("engine %q: launch %s: %w (the engine process was stopped)", spec.Name, spec.Path, context.Cause(ctx))
		}
		return nil, fmt.Errorf("engine %q: launch %s: %w", spec.Name, spec.Path, err)
	}
	pid, _ := strconv.Atoi(client.ID())
	p := &Plugin{
		name:        spec.Name,
		path:        spec.Path,
		pid:         pid,
		host:        h,
		client:      client,
		rpc:         raw.(enginepb.EngineClient),
		stopProcess: stopProcess,
		ring:        ring,
		sockDir:     sockDir,
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		p.kill()
		return nil, fmt.Errorf("engine %q: launch: %w", spec.Name, ErrHostClosed)
	}
	h.plugins[p] = struct{}{}
	h.mu.Unlock()
	return p, nil
}

// startClient is client.Client with one of go-plugin's panics turned into
// an error: an engine that announces a TLS certificate the host did not
// ask for (written for hosts with AutoMTLS) makes go-plugin 1.8 load it
// into a TLS configuration that does not exist.
func startClient(client *plugin.Client) (c plugin.ClientProtocol, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, errors.New("the engine announced a TLS certificate: engines serve plain gRPC on a socket in the directory the host gives (PLUGIN_UNIX_SOCKET_DIR, pluginapi/README.md)")
		}
	}()
	return client.Client()
}

// FileSHA256 returns the SHA-256 of the file at path: what a user pins for
// an engine binary, and what the CLI's engines command shows.
func FileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// lineLogger logs what a plugin writes to its stdout or stderr after the
// handshake (go-plugin forwards both over gRPC), a line at a time, so none
// of it reaches the user's terminal.
type lineLogger struct {
	logger hclog.Logger
	stream string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.logger.Debug("plugin output", "stream", l.stream, "line", string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > bufio.MaxScanTokenSize {
		l.logger.Debug("plugin output", "stream", l.stream, "line", string(l.buf))
		l.buf = l.buf[:0]
	}
	return len(p), nil
}
