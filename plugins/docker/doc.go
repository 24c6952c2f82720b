// Package docker is the Docker engine of ptest-snap: it captures a container
// (its configuration, its file system and its named volumes' data) as a
// stream of entries the host chunks and stores by content, and restores such
// a capture as a new container that behaves the same, with no registry.
//
// Streams of a capture, in order:
//
//	volume:<name>  one per volume mount: the volume's files, read with the
//	               archive API while the container is paused
//	image          the committed image:
//	                 config.json                 the image config (its digest is the image ID)
//	                 layers/<hex>/headers        a layer tar minus its file bodies
//	                 layers/<hex>/members/<n>    the n-th non-empty file body, in tar order
//	                 manifest.json               a `docker load` manifest
//	               <hex> is the layer's diff ID, the sha256 of its tar.
//
// `docker save` writes a layer's tar byte for byte the same each time
// (Docker rebuilds it from its own tar-split data, so its sha256 is the diff
// ID). Split into headers and bodies (layer_split.go), every file of an
// image is stored by its own content: a base image shared by many snapshots
// is kept once, and so is a file the same in a venv captured by another
// engine and in an image. A restore splices the pieces back into the
// identical tar, so the image keeps its ID and the engine reuses layers it
// has. With the parent's index, a layer already captured is sent as
// Unchanged entries, with no bytes. See metadata.go for the JSON schema.
package docker
