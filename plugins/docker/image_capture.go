package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// Paths inside the "image" stream: a layout `docker load` accepts as it is.
const (
	imageConfigPath   = "config.json"
	imageLayersDir    = "layers"
	imageManifestPath = "manifest.json"
)

// layerDir is the directory a layer travels in, in the "image" stream:
// layers/<hex>/headers and layers/<hex>/members/<8-digit index>.
func layerDir(diffID string) string {
	return imageLayersDir + "/" + strings.TrimPrefix(diffID, "sha256:")
}

func headersPath(diffID string) string { return layerDir(diffID) + "/headers" }
func membersDir(diffID string) string  { return layerDir(diffID) + "/members" }
func memberPath(diffID string, i int) string {
	return fmt.Sprintf("%s/%08d", membersDir(diffID), i)
}

// layerTarPath is where a layer's reassembled tar goes in the archive
// given to `docker load`.
func layerTarPath(diffID string) string {
	return imageLayersDir + "/" + strings.TrimPrefix(diffID, "sha256:") + ".tar"
}

// layerInode is the stable identity a layer's entries carry in the change
// index: a layer is named by its content, so the digest's first 8 bytes
// stand in for an inode and tell the next capture that the parent already
// holds these exact bytes. The headers entry's CtimeNs carries the layer
// tar's size (ctime is kept only in the change index, never in trees), so
// the next capture can recognise the layer by size in the save stream.
func layerInode(diffID string) uint64 {
	b, err := hex.DecodeString(strings.TrimPrefix(diffID, "sha256:"))
	if err != nil || len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b[:8])
}

// smallFileLimit: save-archive files up to this size are kept in memory
// (configs, manifests, v1 json); larger ones are layers.
const smallFileLimit = 1 << 20

// savedFile is one regular file of a `docker save` archive, after reading.
type savedFile struct {
	size   int64
	digest string // "sha256:<hex>"
	data   []byte // small files
	spool  string // spooled layer file, or ""
	// skipped: the body was hashed and dropped because the parent holds a
	// layer of this size; valid only if the digest is such a layer.
	skipped bool
}

// errPredictionMissed: a layer dropped as "the parent has it" turned out to
// be other bytes; the save is read again, keeping everything.
var errPredictionMissed = errors.New("layer size prediction missed")

// imageCapture streams the "image" stream of imageID.
type imageCapture struct {
	cli      *client.Client
	imageID  string
	diffIDs  []string
	parent   pluginapi.ParentIndex
	tempDir  string
	noInline bool // do not drop bodies by size prediction
}

// run reads `docker save` of the image and writes the stream's entries.
// Layers the parent already holds are marked Unchanged and not sent; to
// learn which bytes are which without buffering the image, a layer whose
// size equals a parent layer's is hashed and dropped, other layers are
// spooled to disk until the whole archive is read (the stream must be in
// name order, which a layer's name — its digest — is known only after it
// was read).
func (ic *imageCapture) run(ctx context.Context, w pluginapi.CaptureWriter) error {
	files, err := ic.read(ctx)
	defer func() {
		for _, f := range files {
			if f.spool != "" {
				os.Remove(f.spool)
			}
		}
	}()
	if errors.Is(err, errPredictionMissed) {
		ic.noInline = true
		for _, f := range files {
			if f.spool != "" {
				os.Remove(f.spool)
			}
		}
		files, err = ic.read(ctx)
	}
	if err != nil {
		return err
	}
	return ic.write(ctx, w, files)
}

// parentHas reports whether the parent captured layer diffID, returning
// its headers' index entry.
func (ic *imageCapture) parentHas(diffID string) (pluginapi.IndexEntry, bool) {
	ie, ok := ic.parent.Lookup(imageStream, headersPath(diffID))
	return ie, ok && ie.Inode == layerInode(diffID)
}

// parentLayers returns, by size, the parent's layers that this image has.
func (ic *imageCapture) parentLayers() map[int64]bool {
	bySize := map[int64]bool{}
	for _, d := range ic.diffIDs {
		if ie, ok := ic.parentHas(d); ok {
			bySize[ie.CtimeNs] = true
		}
	}
	return bySize
}

func (ic *imageCapture) read(ctx context.Context) (map[string]*savedFile, error) {
	files := map[string]*savedFile{}
	rc, err := ic.cli.ImageSave(ctx, []string{ic.imageID})
	if err != nil {
		return files, engineErr("save image "+ic.imageID, err)
	}
	defer rc.Close()
	predicted := map[int64]bool{}
	if !ic.noInline {
		predicted = ic.parentLayers()
	}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return files, engineErr("read saved image", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(hdr.Name)
		f := &savedFile{size: hdr.Size}
		files[name] = f
		h := sha256.New()
		switch {
		case hdr.Size <= smallFileLimit:
			var buf bytes.Buffer
			if _, err := io.Copy(io.MultiWriter(&buf, h), tr); err != nil {
				return files, engineErr("read saved image", err)
			}
			f.data = buf.Bytes()
		case predicted[hdr.Size]:
			if _, err := io.Copy(h, tr); err != nil {
				return files, engineErr("read saved image", err)
			}
			f.skipped = true
		default:
			sf, err := os.CreateTemp(ic.tempDir, "layer-*.tar")
			if err != nil {
				return files, fmt.Errorf("docker: spool layer: %w", err)
			}
			f.spool = sf.Name()
			_, err = io.Copy(io.MultiWriter(sf, h), tr)
			if cerr := sf.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return files, fmt.Errorf("docker: spool layer: %w", err)
			}
		}
		f.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
		if f.skipped {
			if _, ok := ic.parentHas(f.digest); !ok || !ic.hasLayer(f.digest) {
				return files, errPredictionMissed
			}
		}
	}
	return files, nil
}

func (ic *imageCapture) hasLayer(diffID string) bool {
	for _, d := range ic.diffIDs {
		if d == diffID {
			return true
		}
	}
	return false
}

// saveManifest is one element of a `docker save` manifest.json.
type saveManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// write sends the stream: config.json, layers/, each layer by diff ID in
// name order, manifest.json.
func (ic *imageCapture) write(ctx context.Context, w pluginapi.CaptureWriter, files map[string]*savedFile) error {
	mf, ok := files["manifest.json"]
	if !ok || mf.data == nil {
		return fmt.Errorf("docker: saved image %s has no manifest.json", ic.imageID)
	}
	var manifests []saveManifest
	if err := json.Unmarshal(mf.data, &manifests); err != nil || len(manifests) != 1 {
		return fmt.Errorf("docker: saved image %s: bad manifest.json: %v", ic.imageID, err)
	}
	m := manifests[0]
	cfg, ok := files[path.Clean(m.Config)]
	if !ok || cfg.data == nil {
		return fmt.Errorf("docker: saved image %s: config %q missing", ic.imageID, m.Config)
	}
	if len(m.Layers) != len(ic.diffIDs) {
		return fmt.Errorf("docker: saved image %s has %d layers, inspect said %d", ic.imageID, len(m.Layers), len(ic.diffIDs))
	}
	layers := map[string]*savedFile{}
	for i, lp := range m.Layers {
		f, ok := files[path.Clean(lp)]
		if !ok {
			return fmt.Errorf("docker: saved image %s: layer %q missing", ic.imageID, lp)
		}
		if f.digest != ic.diffIDs[i] {
			return fmt.Errorf("docker: saved image %s: layer %d is %s, want diff ID %s", ic.imageID, i, f.digest, ic.diffIDs[i])
		}
		layers[f.digest] = f
	}
	if err := w.BeginStream(ctx, imageStream); err != nil {
		return err
	}
	if err := w.WriteEntry(ctx, fileEntry(imageConfigPath, int64(len(cfg.data)), 0), bytes.NewReader(cfg.data)); err != nil {
		return err
	}
	if err := w.WriteEntry(ctx, &pluginapi.Entry{Path: imageLayersDir, Type: pluginapi.TypeDir, Mode: 0o755}, nil); err != nil {
		return err
	}
	digests := make([]string, 0, len(layers))
	for d := range layers {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := w.WriteEntry(ctx, &pluginapi.Entry{Path: layerDir(d), Type: pluginapi.TypeDir, Mode: 0o755, Inode: layerInode(d)}, nil); err != nil {
			return err
		}
		if _, ok := ic.parentHas(d); ok {
			if err := ic.writeUnchangedLayer(ctx, w, d); err != nil {
				return err
			}
			continue
		}
		if err := writeLayer(ctx, w, d, layers[d]); err != nil {
			return err
		}
	}
	manifest, err := loadManifest(ic.diffIDs)
	if err != nil {
		return err
	}
	return w.WriteEntry(ctx, fileEntry(imageManifestPath, int64(len(manifest)), 0), bytes.NewReader(manifest))
}

// writeLayer splits a layer read from docker save into its headers and
// members and sends them.
func writeLayer(ctx context.Context, w pluginapi.CaptureWriter, diffID string, f *savedFile) error {
	var r io.ReaderAt
	switch {
	case f.data != nil:
		r = bytes.NewReader(f.data)
	case f.spool != "":
		sf, err := os.Open(f.spool)
		if err != nil {
			return fmt.Errorf("docker: spooled layer: %w", err)
		}
		defer sf.Close()
		r = sf
	default:
		return fmt.Errorf("docker: layer %s was dropped but the parent lacks it", diffID)
	}
	ls, err := splitLayer(r, f.size)
	if err != nil {
		return fmt.Errorf("docker: split layer %s: %w", diffID, err)
	}
	inode := layerInode(diffID)
	headers := ls.headersFile()
	he := fileEntry(headersPath(diffID), int64(len(headers)), inode)
	he.CtimeNs = f.size
	if err := w.WriteEntry(ctx, he, bytes.NewReader(headers)); err != nil {
		return err
	}
	if err := w.WriteEntry(ctx, &pluginapi.Entry{Path: membersDir(diffID), Type: pluginapi.TypeDir, Mode: 0o755, Inode: inode}, nil); err != nil {
		return err
	}
	for i, m := range ls.members {
		if err := w.WriteEntry(ctx, fileEntry(memberPath(diffID, i), m.size, inode), io.NewSectionReader(r, m.off, m.size)); err != nil {
			return err
		}
	}
	return nil
}

// writeUnchangedLayer sends a layer the parent holds as Unchanged entries,
// listed from the parent's index (the layer's digest covers every byte).
func (ic *imageCapture) writeUnchangedLayer(ctx context.Context, w pluginapi.CaptureWriter, diffID string) error {
	ie, _ := ic.parentHas(diffID)
	he := fileEntry(headersPath(diffID), ie.Size, ie.Inode)
	he.MtimeNs, he.CtimeNs, he.Unchanged = ie.MtimeNs, ie.CtimeNs, true
	if err := w.WriteEntry(ctx, he, nil); err != nil {
		return err
	}
	if err := w.WriteEntry(ctx, &pluginapi.Entry{Path: membersDir(diffID), Type: pluginapi.TypeDir, Mode: 0o755, Inode: ie.Inode}, nil); err != nil {
		return err
	}
	prefix := membersDir(diffID) + "/"
	var paths []string
	for p := range ic.parent[imageStream] {
		if strings.HasPrefix(p, prefix) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths) // fixed-width member numbers: name order is tar order
	for _, p := range paths {
		me := ic.parent[imageStream][p]
		e := fileEntry(p, me.Size, me.Inode)
		e.MtimeNs, e.CtimeNs, e.Unchanged = me.MtimeNs, me.CtimeNs, true
		if err := w.WriteEntry(ctx, e, nil); err != nil {
			return err
		}
	}
	return nil
}

// fileEntry is a regular file of the "image" stream. Its mtime is zero and
// its identity is its content, so an unchanged layer is the same entry in
// every snapshot.
func fileEntry(p string, size int64, inode uint64) *pluginapi.Entry {
	return &pluginapi.Entry{Path: p, Type: pluginapi.TypeFile, Mode: 0o644, Size: size, Inode: inode}
}

// loadManifest is the manifest.json that makes the "image" stream a
// loadable archive.
func loadManifest(diffIDs []string) ([]byte, error) {
	m := saveManifest{Config: imageConfigPath, Layers: make([]string, len(diffIDs))}
	for i, d := range diffIDs {
		m.Layers[i] = layerTarPath(d)
	}
	return json.Marshal([]saveManifest{m})
}
