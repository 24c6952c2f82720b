package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// The "image" stream is the `docker save` archive of the committed image,
// entry for entry in the archive's own (name-sorted) order, except that each
// layer tar travels split into heads and bodies (layer_split.go): the path
// <v1 id>/layer.tar (or blobs/sha256/<digest> in the OCI layout) becomes a
// directory of pieces. A restore writes the pieces back as the same archive
// and gives it to `docker load`.
//
// A layer's path in the archive names its content: Docker derives a
// layer's v1 ID from its chain ID (the digests of it and every layer
// below) and its parent, and an OCI blob is named by its digest. So when
// the parent's index has the same layer path, with the same tar size, the
// parent holds these exact bytes: its pieces are sent as Unchanged entries
// (listed from the index) and the layer's bytes are not read further than
// the socket.

// contentNamedLayer matches the archive paths that name a layer by content.
var contentNamedLayer = regexp.MustCompile(`^([0-9a-f]{64}/layer\.tar|blobs/sha256/[0-9a-f]{64})$`)

// splitMin: a blob smaller than this is sent as it is, not split.
const splitMin = 64 << 10

// isLayerPath reports whether an archive file is split.
func isLayerPath(p string, size int64) bool {
	return strings.HasSuffix(p, "/layer.tar") || (strings.HasPrefix(p, "blobs/") && size >= splitMin)
}

// pathInode is the identity every piece of a layer carries in the change
// index: the layer's path, hashed (the path names the content).
func pathInode(p string) uint64 {
	sum := sha256.Sum256([]byte(p))
	return binary.BigEndian.Uint64(sum[:8])
}

// imageCapture streams the "image" stream of imageID.
type imageCapture struct {
	cli     *client.Client
	imageID string
	parent  pluginapi.ParentIndex
	// Stats, for tests and logs.
	layersSent, layersUnchanged int
}

func (ic *imageCapture) run(ctx context.Context, w pluginapi.CaptureWriter) error {
	rc, err := ic.cli.ImageSave(ctx, []string{ic.imageID})
	if err != nil {
		return engineErr("save image "+ic.imageID, err)
	}
	defer rc.Close()
	if err := w.BeginStream(ctx, imageStream); err != nil {
		return err
	}
	tr := tar.NewReader(rc)
	var prev string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return engineErr("read saved image", err)
		}
		p := strings.TrimSuffix(path.Clean(hdr.Name), "/")
		if err := pluginapi.ValidatePath(p); err != nil {
			return fmt.Errorf("docker: saved image: %w", err)
		}
		if prev != "" && !preorderLess(prev, p) {
			return fmt.Errorf("docker: saved image archive is not in name order (%q after %q); this Docker version is not supported", p, prev)
		}
		prev = p
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = w.WriteEntry(ctx, &pluginapi.Entry{Path: p, Type: pluginapi.TypeDir, Mode: 0o755}, nil)
		case tar.TypeSymlink:
			err = w.WriteEntry(ctx, &pluginapi.Entry{Path: p, Type: pluginapi.TypeSymlink, Mode: 0o777, LinkTarget: hdr.Linkname}, nil)
		case tar.TypeReg:
			if isLayerPath(p, hdr.Size) {
				err = ic.layer(ctx, w, p, hdr.Size, tr)
			} else {
				err = w.WriteEntry(ctx, &pluginapi.Entry{Path: p, Type: pluginapi.TypeFile, Mode: 0o644, Size: hdr.Size}, tr)
			}
		default:
			err = fmt.Errorf("docker: saved image: unexpected entry %q of type %q", p, hdr.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// layer sends one layer tar: Unchanged if the parent has it, else split.
func (ic *imageCapture) layer(ctx context.Context, w pluginapi.CaptureWriter, p string, size int64, r io.Reader) error {
	inode := pathInode(p)
	if err := w.WriteEntry(ctx, &pluginapi.Entry{Path: p, Type: pluginapi.TypeDir, Mode: 0o755, Inode: inode}, nil); err != nil {
		return err
	}
	if pieces := ic.parentPieces(p, size); pieces != nil {
		ic.layersUnchanged++
		return ic.unchangedLayer(ctx, w, pieces)
	}
	ic.layersSent++
	piece := func(name string, n int64) *pluginapi.Entry {
		return &pluginapi.Entry{Path: name, Type: pluginapi.TypeFile, Mode: 0o644, Size: n, Inode: inode}
	}
	return splitLayer(r, size,
		func(i int, b []byte) error {
			e := piece(pieceHead(p, i), int64(len(b)))
			if i == 0 {
				e.CtimeNs = size // the change index keeps the tar's size here
			}
			return w.WriteEntry(ctx, e, bytes.NewReader(b))
		},
		func(i int, n int64, body io.Reader) error {
			return w.WriteEntry(ctx, piece(pieceBody(p, i), n), body)
		})
}

// parentPieces returns the parent's pieces of the layer at path p, if the
// parent captured it whole with a tar of this size (kept in its first
// head's CtimeNs); nil otherwise.
func (ic *imageCapture) parentPieces(p string, size int64) []string {
	if !contentNamedLayer.MatchString(p) {
		return nil
	}
	ie, ok := ic.parent.Lookup(imageStream, pieceHead(p, 0))
	if !ok || ie.Inode != pathInode(p) || ie.CtimeNs != size {
		return nil
	}
	prefix := p + "/"
	var names []string
	for q := range ic.parent[imageStream] {
		if rest, ok := strings.CutPrefix(q, prefix); ok && pieceName.MatchString(rest) {
			names = append(names, q)
		}
	}
	sort.Strings(names) // fixed-width numbers: name order is piece order
	// Heads and bodies alternate from head 0 to the last head.
	if len(names)%2 != 1 {
		return nil
	}
	for k, q := range names {
		if want := pieceHead(p, k/2); k%2 == 1 {
			want = pieceBody(p, k/2)
			if q != want {
				return nil
			}
		} else if q != want {
			return nil
		}
	}
	return names
}

// unchangedLayer sends the parent's pieces of a layer as Unchanged.
func (ic *imageCapture) unchangedLayer(ctx context.Context, w pluginapi.CaptureWriter, pieces []string) error {
	for _, q := range pieces {
		ie := ic.parent[imageStream][q]
		e := &pluginapi.Entry{Path: q, Type: pluginapi.TypeFile, Mode: 0o644, Size: ie.Size,
			MtimeNs: ie.MtimeNs, CtimeNs: ie.CtimeNs, Inode: ie.Inode, Unchanged: true}
		if err := w.WriteEntry(ctx, e, nil); err != nil {
			return err
		}
	}
	return nil
}
