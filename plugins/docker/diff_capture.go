package docker

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// A capture without a commit (the default). `docker save` of a commit
// writes every layer of the image to a temporary directory before its
// first byte (0.8-1 s for the bench's 118 MB image on this machine's
// Docker 20.10), after a commit that itself takes 0.25-0.45 s with the
// container paused. Instead:
//
//   - the container's own layer is written here from `docker diff` (the
//     changed paths) and one archive of the changed subtree (the archive
//     API, or `docker export` when the changes span the root or a mount):
//     each added or changed path with its header and body, a whiteout for
//     each deleted one, in the order Docker's own naive diff writes them;
//   - the base layers are those of the container's image, named by chain
//     ID; when the parent capture has them all (the next snapshot of the
//     same container) nothing is asked of the engine, otherwise the
//     original image is saved, starting before the pause, in parallel
//     with everything else (it needs no pause);
//   - the image config and manifest.json are synthesized: the container's
//     config, the base diff IDs and the new layer's.
//
// The streams keep the layout of a commit's capture ("image": the
// container's layer, config and manifest; "image-base": the base layers
// as <chain id>/layer.tar), so any engine that restores metadata version 2
// restores these too: `docker load` takes the archive as it would a saved
// one, and reports the image ID this capture computed (the config's
// digest).
//
// Anything this path cannot reproduce exactly (a hard link to a file
// outside the changes, a changed path the archive lacks that is not a
// socket, a path Docker reports twice) makes the capture fall back to
// commit + save (errNotDiffable), the container still paused.

// errNotDiffable: the container's changes cannot be written as a layer
// here; commit instead.
var errNotDiffable = errors.New("changes not expressible without a commit")

// whiteoutPrefix and opaqueWhiteout are the layer format's deletion marks.
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// diffPlan is a commit-free capture's base: the container's image layers,
// where each one comes from (the parent or the save), and the save.
type diffPlan struct {
	img struct {
		ID, Architecture, Variant, OS string
	}
	diffIDs []string // base diff IDs, bottom first
	paths   []string // <chain hex>/layer.tar per base layer
	pieces  [][]string
	sizes   []int64

	// save is the original image's `docker save`, nil when the parent has
	// every base layer; cancelSave cuts it short.
	save       *pendingSave
	cancelSave context.CancelFunc
}

// chainIDs returns the chain ID of each layer: the first layer's diff ID,
// then sha256 of "<chain below> <diff ID>".
func chainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// chainLayerPath names a layer by its chain ID: the bytes of a layer whose
// tar hashes to its diff ID are fixed by it.
func chainLayerPath(chainID string) string {
	return strings.TrimPrefix(chainID, "sha256:") + "/layer.tar"
}

// planDiff returns the plan of a commit-free capture of c, or nil when
// the container needs a commit: its image is gone or not a plain layer
// stack, or the result would pass threshold layers (flattening exports
// the whole file system anyway). A base layer the parent lacks starts the
// original image's save.
func planDiff(ctx context.Context, cli *client.Client, c *container.InspectResponse, threshold int, parent pluginapi.ParentIndex) (*diffPlan, error) {
	img, err := cli.ImageInspect(ctx, c.Image)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, engineErr("inspect image "+c.Image, err)
	}
	if img.RootFS.Type != "layers" || len(img.RootFS.Layers) == 0 || len(img.RootFS.Layers)+1 > threshold || img.Os != "linux" {
		return nil, nil
	}
	p := &diffPlan{diffIDs: img.RootFS.Layers}
	p.img.ID, p.img.Architecture, p.img.Variant, p.img.OS = img.ID, img.Architecture, img.Variant, img.Os
	missing := false
	ic := &imageCapture{parent: parent}
	for _, ch := range chainIDs(p.diffIDs) {
		lp := chainLayerPath(ch)
		pieces, size := ic.parentPiecesAnySize(baseStream, lp)
		p.paths, p.pieces, p.sizes = append(p.paths, lp), append(p.pieces, pieces), append(p.sizes, size)
		missing = missing || pieces == nil
	}
	if missing {
		var sctx context.Context
		sctx, p.cancelSave = context.WithCancel(ctx)
		p.save = startSave(sctx, cli, img.ID)
	}
	return p, nil
}

// close stops and closes the save, if any.
func (p *diffPlan) close() {
	if p.save != nil {
		p.cancelSave()
		p.save.close()
		p.save = nil
	}
}

// topLayer is the container's own layer, written to a temporary file.
type topLayer struct {
	f      *os.File
	size   int64
	diffID string
}

func (t *topLayer) close() {
	if t != nil && t.f != nil {
		t.f.Close()
		os.Remove(t.f.Name())
		t.f = nil
	}
}

// changeSet is `docker diff` of a container, as paths without the leading
// slash.
type changeSet struct {
	// present: added or changed paths (each one's header and body go in
	// the layer); opaque: those that replace a deleted directory.
	present map[string]bool
	opaque  map[string]bool
	// whiteouts: deleted paths, in preorder, none under another.
	whiteouts []string
}

// readChanges asks the engine for the container's changes.
func readChanges(ctx context.Context, cli *client.Client, id string) (*changeSet, error) {
	changes, err := cli.ContainerDiff(ctx, id)
	if err != nil {
		return nil, containerErr("diff", id, err)
	}
	return newChangeSet(changes)
}

// newChangeSet classifies the changes `docker diff` reports.
func newChangeSet(changes []container.FilesystemChange) (*changeSet, error) {
	cs := &changeSet{present: map[string]bool{}, opaque: map[string]bool{}}
	deleted := map[string]bool{}
	for _, ch := range changes {
		p := strings.TrimPrefix(path.Clean("/"+ch.Path), "/")
		if pluginapi.ValidatePath(p) != nil || cs.present[p] || deleted[p] {
			return nil, fmt.Errorf("%w: path %q", errNotDiffable, ch.Path)
		}
		switch ch.Kind {
		case container.ChangeAdd, container.ChangeModify:
			cs.present[p] = true
		case container.ChangeDelete:
			deleted[p] = true
		default:
			return nil, fmt.Errorf("%w: change kind %d", errNotDiffable, ch.Kind)
		}
	}
	// A deleted path that is still there, or has something under it, is
	// a directory replaced by a new one: its header, then an opaque mark.
	for p := range cs.present {
		for d := p; ; {
			if deleted[d] {
				cs.present[d], cs.opaque[d] = true, true
			}
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				break
			}
			d = d[:i]
		}
	}
	for p := range deleted {
		if !cs.opaque[p] {
			cs.whiteouts = append(cs.whiteouts, p)
		}
	}
	slices.SortFunc(cs.whiteouts, func(a, b string) int {
		if preorderLess(a, b) {
			return -1
		}
		return 1
	})
	// A whiteout under a deleted directory would recreate that directory.
	kept := cs.whiteouts[:0]
	for _, p := range cs.whiteouts {
		if n := len(kept); n > 0 && strings.HasPrefix(p, kept[n-1]+"/") {
			continue
		}
		kept = append(kept, p)
	}
	cs.whiteouts = kept
	return cs, nil
}

// commonRoot returns the deepest path every present path is under or
// equal to ("" is the root).
func (cs *changeSet) commonRoot() string {
	var root string
	first := true
	for p := range cs.present {
		if first {
			root, first = p, false
			continue
		}
		for root != "" && p != root && !strings.HasPrefix(p, root+"/") {
			if i := strings.LastIndexByte(root, '/'); i >= 0 {
				root = root[:i]
			} else {
				root = ""
			}
		}
	}
	return root
}

// overlapsMount reports whether a mount's destination is root, under it,
// or above it: the archive API would read the mount's contents (and show
// its root instead of the mount point's directory).
func overlapsMount(root string, c *container.InspectResponse) bool {
	for _, m := range c.Mounts {
		d := strings.TrimPrefix(path.Clean("/"+m.Destination), "/")
		if root == "" || d == "" || d == root || strings.HasPrefix(d, root+"/") || strings.HasPrefix(root, d+"/") {
			return true
		}
	}
	return false
}

// buildTopLayer writes the container's changes as a layer tar into a
// temporary file in tempDir. The container must be paused (or stopped).
func buildTopLayer(ctx context.Context, cli *client.Client, c *container.InspectResponse, tempDir string) (top *topLayer, err error) {
	cs, err := readChanges(ctx, cli, c.ID)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(tempDir, "ptest-snap-docker-top-*")
	if err != nil {
		return nil, fmt.Errorf("docker: container layer: %w", err)
	}
	top = &topLayer{f: f}
	defer func() {
		if err != nil {
			top.close()
			top = nil
		}
	}()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	lw := &layerWriter{tw: tar.NewWriter(bw), cs: cs, written: map[string]bool{}}
	if len(cs.present) > 0 {
		if err := lw.copyArchive(ctx, cli, c); err != nil {
			return nil, err
		}
	}
	if err := lw.flushWhiteouts(""); err != nil {
		return nil, err
	}
	for p := range cs.present {
		if !lw.written[p] {
			if err := notInArchive(ctx, cli, c.ID, p); err != nil {
				return nil, err
			}
		}
	}
	if err := lw.tw.Close(); err != nil {
		return nil, fmt.Errorf("docker: container layer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("docker: container layer: %w", err)
	}
	if top.size, err = f.Seek(0, io.SeekCurrent); err != nil {
		return nil, fmt.Errorf("docker: container layer: %w", err)
	}
	top.diffID = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return top, nil
}

// notInArchive accepts a changed path the archive did not have only if it
// is a socket (archives skip sockets, and so does a commit).
func notInArchive(ctx context.Context, cli *client.Client, id, p string) error {
	st, err := cli.ContainerStatPath(ctx, id, "/"+p)
	if err != nil {
		return fmt.Errorf("%w: %s changed but cannot be read: %v", errNotDiffable, p, err)
	}
	if st.Mode&os.ModeSocket == 0 {
		return fmt.Errorf("%w: %s changed but is not in the archive", errNotDiffable, p)
	}
	return nil
}

// layerWriter writes the layer tar: the archive's entries for the present
// paths, with the whiteouts merged in preorder.
type layerWriter struct {
	tw      *tar.Writer
	cs      *changeSet
	next    int // first whiteout not written
	written map[string]bool
	prev    string
}

// copyArchive reads one archive holding every present path and writes
// theirs.
func (lw *layerWriter) copyArchive(ctx context.Context, cli *client.Client, c *container.InspectResponse) error {
	root := lw.cs.commonRoot()
	var rc io.ReadCloser
	var prefix string // what the archive's names are relative to
	var err error
	if overlapsMount(root, c) {
		rc, err = cli.ContainerExport(ctx, c.ID)
		if err != nil {
			return containerErr("export", c.ID, err)
		}
	} else {
		if rc, _, err = cli.CopyFromContainer(ctx, c.ID, "/"+root); err != nil {
			return containerErr("read "+root+" of", c.ID, err)
		}
		if i := strings.LastIndexByte(root, '/'); i >= 0 {
			prefix = root[:i+1]
		}
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return engineErr("read the container's files", err)
		}
		p := prefix + archiveName(hdr.Name)
		if !lw.cs.present[p] {
			continue
		}
		if pluginapi.ValidatePath(p) != nil || (lw.prev != "" && !preorderLess(lw.prev, p)) {
			return fmt.Errorf("%w: archive entry %q after %q", errNotDiffable, hdr.Name, lw.prev)
		}
		lw.prev = p
		if err := lw.flushWhiteouts(p); err != nil {
			return err
		}
		out := *hdr
		out.Name = p
		switch hdr.Typeflag {
		case tar.TypeDir:
			out.Name = p + "/"
		case tar.TypeLink:
			target := prefix + archiveName(hdr.Linkname)
			if !lw.written[target] {
				return fmt.Errorf("%w: hard link %s to %s, which did not change", errNotDiffable, p, target)
			}
			out.Linkname = target
		case tar.TypeReg, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		default:
			return fmt.Errorf("%w: %s has tar type %q", errNotDiffable, p, hdr.Typeflag)
		}
		if err := lw.tw.WriteHeader(&out); err != nil {
			return fmt.Errorf("docker: container layer: %w", err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			if _, err := io.Copy(lw.tw, tr); err != nil {
				return engineErr("read the container's files", err)
			}
		}
		lw.written[p] = true
		if hdr.Typeflag == tar.TypeDir && lw.cs.opaque[p] {
			if err := lw.mark(p + "/" + opaqueWhiteout); err != nil {
				return err
			}
		} else if lw.cs.opaque[p] {
			return fmt.Errorf("%w: %s replaced a directory with a file", errNotDiffable, p)
		}
	}
}

// archiveName is an archive entry's name, relative: `docker export` names
// them from "/", the archive API from the directory it reads.
func archiveName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// flushWhiteouts writes the whiteouts that come before p in preorder (all
// of them if p is "").
func (lw *layerWriter) flushWhiteouts(p string) error {
	for ; lw.next < len(lw.cs.whiteouts); lw.next++ {
		d := lw.cs.whiteouts[lw.next]
		if p != "" && !preorderLess(d, p) {
			return nil
		}
		dir, base := path.Split(d)
		if err := lw.mark(dir + whiteoutPrefix + base); err != nil {
			return err
		}
	}
	return nil
}

// mark writes an empty whiteout file. Its time is fixed, so an unchanged
// container's layer is the same tar each time.
func (lw *layerWriter) mark(name string) error {
	if err := lw.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return fmt.Errorf("docker: container layer: %w", err)
	}
	return nil
}

// imageConfig is the synthesized image's config, what `docker load` needs
// and a commit would record.
type imageConfig struct {
	Architecture string            `json:"architecture"`
	Variant      string            `json:"variant,omitempty"`
	OS           string            `json:"os"`
	Created      string            `json:"created"`
	Comment      string            `json:"comment,omitempty"`
	Config       *container.Config `json:"config,omitempty"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// synthesized is the "image" stream's small files and the image they
// make.
type synthesized struct {
	imageID  string
	diffIDs  []string
	config   []byte
	manifest []byte
	topPath  string
}

// synthesize builds the image config and manifest of the base layers plus
// top, for a container with config cfg.
func (p *diffPlan) synthesize(cfg *container.Config, top *topLayer, now time.Time) (*synthesized, error) {
	s := &synthesized{diffIDs: append(slices.Clone(p.diffIDs), top.diffID)}
	var ic imageConfig
	ic.Architecture, ic.Variant, ic.OS = p.img.Architecture, p.img.Variant, p.img.OS
	ic.Created = now.UTC().Format(time.RFC3339Nano)
	ic.Comment = "ptest-snap capture"
	ic.Config = cfg
	ic.RootFS.Type, ic.RootFS.DiffIDs = "layers", s.diffIDs
	var err error
	if s.config, err = json.Marshal(&ic); err != nil {
		return nil, fmt.Errorf("docker: image config: %w", err)
	}
	sum := sha256.Sum256(s.config)
	s.imageID = "sha256:" + hex.EncodeToString(sum[:])
	chains := chainIDs(s.diffIDs)
	s.topPath = chainLayerPath(chains[len(chains)-1])
	manifest := []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: hex.EncodeToString(sum[:]) + ".json", Layers: append(slices.Clone(p.paths), s.topPath)}}
	if s.manifest, err = json.Marshal(manifest); err != nil {
		return nil, fmt.Errorf("docker: image manifest: %w", err)
	}
	return s, nil
}

// sendImage sends the "image" stream: the config, the container's layer
// and the manifest, in name order.
func (s *synthesized) sendImage(ctx context.Context, w pluginapi.CaptureWriter, ic *imageCapture, top *topLayer) error {
	if err := w.BeginStream(ctx, imageStream); err != nil {
		return err
	}
	cfgName := strings.TrimPrefix(s.imageID, "sha256:") + ".json"
	topDir := strings.TrimSuffix(s.topPath, "/layer.tar")
	type item struct {
		name string
		send func() error
	}
	file := func(name string, b []byte) item {
		return item{name, func() error {
			return w.WriteEntry(ctx, &pluginapi.Entry{Path: name, Type: pluginapi.TypeFile, Mode: 0o644, Size: int64(len(b))}, strings.NewReader(string(b)))
		}}
	}
	items := []item{
		file(cfgName, s.config),
		file(manifestName, s.manifest),
		{topDir, func() error {
			if err := w.WriteEntry(ctx, &pluginapi.Entry{Path: topDir, Type: pluginapi.TypeDir, Mode: 0o755}, nil); err != nil {
				return err
			}
			return ic.layer(ctx, w, imageStream, s.topPath, top.size, io.NewSectionReader(top.f, 0, top.size))
		}},
	}
	slices.SortFunc(items, func(a, b item) int {
		if preorderLess(a.name, b.name) {
			return -1
		}
		return 1
	})
	for _, it := range items {
		if err := it.send(); err != nil {
			return err
		}
	}
	return nil
}

// baseSpool is the original image's save archive, read: the base layers
// the parent lacks, in a temporary file.
type baseSpool struct {
	f    *os.File
	off  []int64 // per base layer; -1 if not spooled
	size []int64
}

func (b *baseSpool) close() {
	if b != nil && b.f != nil {
		b.f.Close()
		os.Remove(b.f.Name())
		b.f = nil
	}
}

// spoolBase reads the save archive and keeps, in a temporary file, each
// layer tar that hashes to the diff ID of a base layer the parent lacks.
// The archive's own names are not relied on: a layer is known by its
// bytes.
func (p *diffPlan) spoolBase(ctx context.Context, tempDir string) (_ *baseSpool, err error) {
	rc, err := p.save.wait(ctx)
	if err != nil {
		return nil, engineErr("save image "+p.img.ID, err)
	}
	// A diff ID may be at two places in the stack (the same layer
	// twice): each copy in the archive fills the next place.
	want := map[string][]int{}
	missing := 0
	for i, d := range p.diffIDs {
		if p.pieces[i] == nil {
			want[d] = append(want[d], i)
			missing++
		}
	}
	f, err := os.CreateTemp(tempDir, "ptest-snap-docker-layers-*")
	if err != nil {
		return nil, fmt.Errorf("docker: spool base layers: %w", err)
	}
	b := &baseSpool{f: f, off: make([]int64, len(p.diffIDs)), size: make([]int64, len(p.diffIDs))}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	for i := range b.off {
		b.off[i] = -1
	}
	var end int64
	h := sha256.New()
	bw := bufio.NewWriterSize(f, 1<<20)
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, engineErr("read saved image", err)
		}
		name := strings.TrimSuffix(path.Clean(hdr.Name), "/")
		if hdr.Typeflag != tar.TypeReg || !(strings.HasSuffix(name, "/layer.tar") || strings.HasPrefix(name, "blobs/")) {
			continue
		}
		if err := spoolOne(bw, h, tr, hdr.Size); err != nil {
			return nil, err
		}
		d := layerDigest(h)
		places := want[d]
		if len(places) == 0 {
			// Not a layer we need: drop it from the spool.
			if err := bw.Flush(); err != nil {
				return nil, fmt.Errorf("docker: spool base layers: %w", err)
			}
			if _, err := f.Seek(end, io.SeekStart); err != nil {
				return nil, fmt.Errorf("docker: spool base layers: %w", err)
			}
			continue
		}
		i := places[0]
		want[d] = places[1:]
		missing--
		b.off[i], b.size[i] = end, hdr.Size
		end += hdr.Size
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("docker: spool base layers: %w", err)
	}
	if missing > 0 {
		return nil, fmt.Errorf("docker: save of image %s lacks %d of its layers", p.img.ID, missing)
	}
	return b, nil
}

// spoolOne copies a layer's size bytes into w, hashing them into h
// (reset first).
func spoolOne(w io.Writer, h hash.Hash, r io.Reader, size int64) error {
	h.Reset()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, size))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("docker: spool base layer: %w", err)
	}
	return nil
}

func layerDigest(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// sendBase sends the "image-base" stream: each base layer's directory and
// its layer, the parent's pieces or split from the spool, in name order.
func (p *diffPlan) sendBase(ctx context.Context, w pluginapi.CaptureWriter, ic *imageCapture, spool *baseSpool) error {
	if err := w.BeginStream(ctx, baseStream); err != nil {
		return err
	}
	order := make([]int, len(p.paths))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(p.paths[a], p.paths[b]) })
	for _, i := range order {
		dir := strings.TrimSuffix(p.paths[i], "/layer.tar")
		if err := w.WriteEntry(ctx, &pluginapi.Entry{Path: dir, Type: pluginapi.TypeDir, Mode: 0o755}, nil); err != nil {
			return err
		}
		if p.pieces[i] != nil {
			if err := ic.sendLayer(ctx, w, baseStream, p.paths[i], p.sizes[i], p.pieces[i], nil); err != nil {
				return err
			}
			continue
		}
		if spool == nil || spool.off[i] < 0 {
			return fmt.Errorf("docker: base layer %s was not saved", p.diffIDs[i])
		}
		r := io.NewSectionReader(spool.f, spool.off[i], spool.size[i])
		if err := ic.sendLayer(ctx, w, baseStream, p.paths[i], spool.size[i], nil, r); err != nil {
			return err
		}
	}
	return nil
}

// run sends the "image" stream, then the "image-base" one. The original
// image's save archive, if any, is spooled meanwhile.
func (p *diffPlan) run(ctx context.Context, w pluginapi.CaptureWriter, parent pluginapi.ParentIndex, top *topLayer, s *synthesized, tempDir string) error {
	ic := &imageCapture{imageID: s.imageID, parent: parent}
	var spool *baseSpool
	if p.save != nil {
		var spoolErr error
		spoolDone := make(chan struct{})
		go func() {
			defer close(spoolDone)
			spool, spoolErr = p.spoolBase(ctx, tempDir)
		}()
		defer func() {
			p.cancelSave() // ends the spooling early on an error
			<-spoolDone
			spool.close()
		}()
		if err := s.sendImage(ctx, w, ic, top); err != nil {
			return err
		}
		<-spoolDone
		if spoolErr != nil {
			return spoolErr
		}
	} else if err := s.sendImage(ctx, w, ic, top); err != nil {
		return err
	}
	return p.sendBase(ctx, w, ic, spool)
}
