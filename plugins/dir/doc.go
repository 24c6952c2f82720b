// Package dir is the directory engine: it snapshots any directory tree
// (test fixtures, a database's data directory) as one stream, "rootfs", and
// restores it to the same or a new path, in place or fresh.
//
// It is the reference engine for authors: everything file-related is done
// by pluginapi/fstree, so an engine is Info, Identify, a metadata record,
// and one call each to fstree.Capture and fstree.ApplyAll.
package dir
