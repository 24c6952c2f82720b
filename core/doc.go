// Package core is ptest-snap's domain layer: the Manager that creates
// snapshots of environments through engines and restores them, resolves
// snapshot references (ID, ID prefix or name), and runs the lifecycle
// operations (list, show, diff, delete, retention, quotas, events, export,
// import) on top of the content-addressed store.
//
// The capture pipeline (create.go, parent_ahead.go, snapshot_writer.go,
// tree_builder.go, file_saver.go, tree_lookup.go) turns an engine's stream
// of entries into chunks, trees and a change index in the store, reusing
// the parent snapshot's content for entries the engine reports unchanged;
// the parent is pinned for the create's life (store.Writer.UseParent) and
// prepared while the engine starts. The restore
// pipeline (restore.go, restore_reader.go, chunk_reader.go,
// inplace_planner.go, target_index.go, restore_index.go) walks a
// snapshot's trees, reads and verifies every chunk once, and feeds the
// engine, marking entries the target already holds as unchanged when
// restoring in place. IDs and references are in id.go, errors in errors.go.
//
// core never touches the file system of an environment itself: engines do
// that, in-process or as plugins behind pluginapi.Engine.
package core
