// Package docker is the Docker engine of ptest-snap: it captures a container
// (its configuration, its file system and its named volumes' data) as a
// stream of entries the host chunks and stores by content, and restores such
// a capture as a new container that behaves the same, with no registry.
//
// Streams of a capture, in order:
//
//	volume:<name>  one per volume mount: the volume's files, read with the
//	               archive API while the container is paused
//	image          a `docker save` archive of the captured image (see
//	               "Without a commit" below for the default one), entry for
//	               entry in its name order (manifest.json, <id>.json,
//	               <v1 id>/{VERSION,json}), except that each layer tar
//	               (<v1 id>/layer.tar) is a directory of pieces:
//	                 00000000.h  magic, tar size, the tar's bytes up to body 0
//	                 00000000.m  body 0 (a file's content)
//	                 00000001.h  the bytes between body 0 and body 1
//	                 ...         and a last head with the tar's tail
//	               and that the base layers (all but the commit's own) are
//	               not here but in
//	image-base     <v1 id> directories (<rank>-<chain id> without a
//	               commit) with their layer.tar pieces, last, so
//	               that a restore into an engine that has the container's
//	               image stops reading before them (`docker load` skips a
//	               layer the engine has): measured on a 100 MB image with
//	               10 MB changed, the host reads ~60 MB instead of 118 MB
//	               (its 32 MB read-ahead included)
//
// `docker save` writes a layer's tar byte for byte the same each time
// (Docker rebuilds it from its own tar-split data). Split into heads and
// bodies (layer_split.go), every file of an image is stored by its own
// content: a base image shared by many snapshots is kept once, and so is a
// file that is the same in another image or in a venv captured by another
// engine. A restore splices the pieces back into the identical archive, so
// the layers keep their diff IDs, the image its ID, and the engine reuses
// layers it has. A layer's archive path names its content (Docker derives
// the v1 ID from the layer's chain ID), so with the parent's index a layer
// already captured is sent as Unchanged entries, with no bytes. See
// metadata.go for the JSON schema.
//
// Without a commit (the default, diff_capture.go), the captured image is
// the container's own layer over its image's layers: the layer is written
// from `docker diff` and one archive of the changed paths, as Docker's
// naive diff would write it, and the image's config and manifest are
// synthesized. The archive then holds <config digest>.json, manifest.json
// and <chain id>/layer.tar for the container's layer, and
// <rank>-<chain id>/layer.tar for each base layer in "image-base" (rank 0
// the largest, so that it streams from the save archive straight to the
// host; no v1 files); `docker load` takes it like a saved one, so a restore does
// not tell the two apart. The base layers come from the parent when it has
// them (named by chain ID: the next snapshot asks the engine for nothing
// but the changes), else from a `docker save` of the original image that
// starts before the pause and overlaps it.
//
// Options. Capture: flatten-layers=N (default 100: a commit with more
// layers is replaced by export + import, one layer, so snapshot → restore
// → snapshot cycles stay under Docker's ~125-layer limit), keep-image=true
// (commit the container and leave the commit image in the engine; by
// default no commit is made, and a commit needed anyway is removed once
// streamed, the store being the copy). Restore: name=NAME (the container's
// name when the request has no Target), remap-ports=true (let the engine
// pick every host port; ports another container holds are remapped
// anyway), volumes=new|reuse (what to do with a volume that already exists:
// restore its data into <name>-restored-<n>, or mount it as it is),
// skip-present-image=false (load the image from the snapshot even when the
// engine has it; by default a present image is not loaded and the stream
// is not read past it; see Restore), allow-host-access=true (recreate a
// privileged container, host bind mounts, devices, ... from a snapshot
// captured on another engine; refused otherwise, see host_access.go).
package docker
