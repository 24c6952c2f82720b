// Package docker is the Docker engine of ptest-snap: it captures a container
// (its configuration, its file system and its named volumes' data) as a
// stream of entries the host chunks and stores by content, and restores such
// a capture as a new container that behaves the same, with no registry.
//
// Streams of a capture, in order:
//
//	volume:<name>  one per volume mount: the volume's files, read with the
//	               archive API while the container is paused
//	image          the committed image in a layout `docker load` accepts:
//	               config.json, layers/<diff-id hex>.tar (each layer's tar
//	               byte for byte as `docker save` wrote it), manifest.json
//
// A layer's tar is byte-stable (Docker rebuilds it from its tar-split data, so
// its sha256 is the layer's diff ID), so a base image shared by many
// snapshots is the same bytes each time and the host stores it once; with
// the parent's index a layer already captured is marked Unchanged and not
// sent at all. See metadata.go for the JSON schema.
package docker
