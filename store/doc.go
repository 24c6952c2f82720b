// Package store is ptest-snap's content-addressed snapshot store, embedded in
// Badger v4. It keeps chunks (pieces of file bodies, named by the BLAKE3-256
// of their uncompressed bytes, compressed by package compress), trees (one
// canonically encoded directory each, stored as a chunk, so an unchanged
// directory is the same chunk in every snapshot), snapshot records with their
// indexes (by env and time, by name) and change indexes, and it collects
// garbage, verifies integrity and keeps a second process out.
//
// It knows nothing of virtualenvs or Docker: core/ decides what a snapshot
// holds, the store keeps it safe.
//
// Layout of a store directory:
//
//	lock          our lock file (flock), holding the holder's pid, command and start
//	events.jsonl  the append-only event log (readable without the lock)
//	db/           the Badger database: the index, and small values
//	bulk/         packs and chunks above packMaxChunk, one file each, named
//	              by a random id (bulk_files.go)
//
// Keys in Badger (first byte is the kind):
//
//	'c' hash(32)                      → encoded chunk (compress header + payload),
//	                                    a locator of a bulk file holding it (a
//	                                    chunk above packMaxChunk), or a reference
//	                                    into a pack (packer.go)
//	'p' id(16)                        → a pack of small chunks, compressed as one:
//	                                    the locator of its bulk file (inline in
//	                                    stores written before format 2)
//	's' id                            → snapshot record (JSON, versioned)
//	'n' name                          → snapshot id
//	'e' engine 0 env 0 time(8) id     → nothing (the env/time index)
//	'x' id                            → the root chunks of the snapshot's change
//	                                    index (change_index.go; read back a pack at
//	                                    a time, index_packs.go)
//	'm' name                          → store metadata (format)
//
// Invariants: a snapshot record is written only after every chunk it
// references is synced (Writer.Commit), in one transaction with its indexes;
// a key locating a bulk file is committed only after the file and its
// directory entry are synced;
// every chunk read is re-hashed (GetChunk); GC never deletes a chunk a
// snapshot or a live Writer references, nor anything reachable from the
// parent snapshot a live Writer pinned (gc.go explains the races it closes;
// parent_pin.go why a second snapshot pins its parent).
package store
