// Package pluginapi is the contract between ptest-snap and its engines: the
// Engine interface and its types, the gRPC protocol that carries them across
// a process boundary (go-plugin), the host side that discovers and launches
// engine binaries, and Serve, the one call an engine's main makes.
//
// Files by role:
//   - engine.go, path.go: the Go contract (Engine, Entry, sentinel errors,
//     ValidatePath).
//   - proto/: the wire protocol (engine.proto and its generated code).
//   - serve.go, handshake.go: the plugin side (Serve) and the go-plugin glue.
//   - discover.go: finding ptest-snap-engine-<name> binaries.
//   - host.go: launching, pinning checksums, killing plugins (Host, Plugin).
//   - remote.go: Plugin's Engine methods over gRPC, checking what arrives.
//   - records.go: batching records into messages and reading them back with
//     every rule of the protocol enforced.
//   - body_ring.go: the shared-memory fast path for file bodies.
//   - index_wire.go: the packed form of a capture's parent index.
//   - errors.go: sentinels across the wire (gRPC status + ErrorInfo).
//
// README.md documents the protocol for authors in any language.
package pluginapi
