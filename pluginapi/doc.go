// Package pluginapi is the contract between ptest-snap and its engines: the
// Engine interface and its types, the gRPC protocol that carries them across
// a process boundary (go-plugin), the host side that discovers and launches
// engine binaries, and Serve, the one call an engine's main makes.
package pluginapi
