package pluginapi

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

// The go-plugin handshake. The host sets MagicCookieKey=MagicCookieValue in
// the plugin's environment; a plugin started without it refuses to run (it
// is not meant to be run by hand). The app protocol version is
// ProtocolVersion.
const (
	MagicCookieKey   = "PTEST_SNAP_ENGINE_PLUGIN"
	MagicCookieValue = "6f1c2b0e9d6a4f37b8e5a2c1d0f9e8b7-ptest-snap-engine"
)

// pluginName is the one plugin an engine binary serves, in go-plugin's
// PluginSet.
const pluginName = "engine"

// flowWindow is the HTTP/2 flow-control window of the engine connection on
// both sides: large enough that a sender never stalls on a full window
// while the receiver processes a message (gRPC's default adaptive window
// starts at 64 KiB).
const flowWindow = 8 << 20

// ioBufferSize is the connection's read and write buffer on both sides:
// gRPC's default of 32 KiB costs a write system call (and a TLS record
// flush) per 32 KiB of bodies.
const ioBufferSize = 1 << 20

// HandshakeConfig returns the go-plugin handshake both sides use.
func HandshakeConfig() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// enginePlugin is the go-plugin glue: it serves an Engine as the gRPC
// Engine service in the plugin, and makes a gRPC client of it in the host.
type enginePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// impl and ring are set in the plugin process only.
	impl Engine
	ring *bodyRing
}

var _ plugin.GRPCPlugin = (*enginePlugin)(nil)

// GRPCServer registers the engine's service (plugin side).
func (p *enginePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	enginepb.RegisterEngineServer(s, &engineServer{impl: p.impl, ring: p.ring})
	return nil
}

// GRPCClient returns the raw service client (host side); Host wraps it.
func (p *enginePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return enginepb.NewEngineClient(c), nil
}
