package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
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
	"github.com/docker/docker/api/types/image"
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
//     each deleted one, what Docker's own naive diff (ExportChanges) writes,
//     in depth-first name order;
//   - the base layers are those of the container's image, named by chain
//     ID (baseLayerPaths); when the parent capture has them all (the next snapshot of the
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
	paths   []string // per base layer, see baseLayerPaths
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

// baseLayerPaths names the base layers "<rank>-<chain id>/layer.tar", rank
// 0000 the largest (by the image's history; bottom first when the history
// does not say): "image-base" is in name order, and a save archive is in
// the order of Docker's v1 IDs, which cannot be known before it arrives
// (the top one's hashes the image's config). With the largest layer sent
// first, it always goes from the socket to the host as it arrives, and only
// smaller ones that arrive before it wait in the spool. The chain ID in the
// name keeps it naming the content.
func baseLayerPaths(diffIDs []string, history []image.HistoryResponseItem) []string {
	sizes := make([]int64, 0, len(diffIDs))
	for k := len(history) - 1; k >= 0; k-- { // newest first
		if history[k].Size > 0 {
			sizes = append(sizes, history[k].Size)
		}
	}
	order := make([]int, len(diffIDs))
	for i := range order {
		order[i] = i
	}
	if len(sizes) == len(diffIDs) {
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(sizes[b], sizes[a]) })
	}
	paths := make([]string, len(diffIDs))
	chains := chainIDs(diffIDs)
	for rank, i := range order {
		paths[i] = fmt.Sprintf("%04d-%s", rank, chainLayerPath(chains[i]))
	}
	return paths
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
	history, err := cli.ImageHistory(ctx, img.ID)
	if err != nil {
		return nil, engineErr("history of image "+img.ID, err)
	}
	missing := false
	ic := &imageCapture{parent: parent}
	for _, lp := range baseLayerPaths(p.diffIDs, history) {
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
			return w.WriteEntry(ctx, &pluginapi.Entry{Path: name, Type: pluginapi.TypeFile, Mode: 0o644, Size: int64(len(b))}, bytes.NewReader(b))
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

// baseSender sends the "image-base" stream: each base layer's directory
// and its layer, in name order, from the parent (Unchanged pieces) or from
// the original image's save archive. A layer the archive delivers when it
// is the next to send goes straight from the socket to the host; one that
// arrives early waits in a temporary file. The names put the largest layer
// first (baseLayerPaths), so it always goes straight through.
type baseSender struct {
	p     *diffPlan
	w     pluginapi.CaptureWriter
	ic    *imageCapture
	order []int // layer indexes in name order
	next  int   // first of order not sent

	spool    *os.File
	spoolEnd int64
	spooled  map[int][2]int64 // layer → offset, size in the spool
}

func (b *baseSender) close() {
	if b.spool != nil {
		b.spool.Close()
		os.Remove(b.spool.Name())
		b.spool = nil
	}
}

// sendReady sends the layers, from the next on, that are at hand.
func (b *baseSender) sendReady(ctx context.Context) error {
	for ; b.next < len(b.order); b.next++ {
		i := b.order[b.next]
		var r io.Reader
		size := b.p.sizes[i]
		if b.p.pieces[i] == nil {
			at, ok := b.spooled[i]
			if !ok {
				return nil
			}
			r, size = io.NewSectionReader(b.spool, at[0], at[1]), at[1]
		}
		if err := b.send(ctx, i, size, r); err != nil {
			return err
		}
	}
	return nil
}

// send sends layer i: the parent's pieces if r is nil, else split from r.
func (b *baseSender) send(ctx context.Context, i int, size int64, r io.Reader) error {
	lp := b.p.paths[i]
	if err := b.w.WriteEntry(ctx, &pluginapi.Entry{Path: strings.TrimSuffix(lp, "/layer.tar"), Type: pluginapi.TypeDir, Mode: 0o755}, nil); err != nil {
		return err
	}
	return b.ic.sendLayer(ctx, b.w, baseStream, lp, size, b.p.pieces[i], r)
}

// v1Layer is what a legacy save archive's <v1 id>/json tells of a layer.
type v1Layer struct {
	ID     string          `json:"id"`
	Parent string          `json:"parent"`
	Config json.RawMessage `json:"config"`
}

// readSave reads the original image's save archive. Each layer tar is
// known by its bytes' digest; a legacy archive's v1 json (which comes
// before the layer tar in its directory) tells which layer it is sooner:
// the bottom one has no parent, the image's top one has the config, the
// others follow their parent. A layer known sooner and next in order is
// sent as it is read, its digest checked at its end (a mismatch fails the
// capture: its bytes went out under another layer's name).
func (b *baseSender) readSave(ctx context.Context, tempDir string) error {
	p := b.p
	rc, err := p.save.wait(ctx)
	if err != nil {
		return engineErr("save image "+p.img.ID, err)
	}
	// A diff ID may be at two places in the stack (the same layer twice):
	// each copy in the archive fills the next place.
	want := map[string][]int{}
	for i, d := range p.diffIDs {
		if p.pieces[i] == nil {
			want[d] = append(want[d], i)
		}
	}
	byV1 := map[string]int{}  // v1 id → layer index
	byDir := map[string]int{} // archive directory → layer index
	h := sha256.New()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return engineErr("read saved image", err)
		}
		name := archiveName(hdr.Name)
		dir, base := path.Split(name)
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if base == "json" && dir != "" && strings.Count(dir, "/") == 1 && hdr.Size <= v1JSONMax {
			var v1 v1Layer
			raw, err := io.ReadAll(tr)
			if err != nil {
				return engineErr("read saved image", err)
			}
			if json.Unmarshal(raw, &v1) != nil || v1.ID == "" {
				continue
			}
			i, ok := -1, false
			switch k, seen := byV1[v1.Parent]; {
			case v1.Parent == "":
				i, ok = 0, true
			case seen:
				i, ok = k+1, true
			case len(v1.Config) > 0 && string(v1.Config) != "null":
				i, ok = len(p.diffIDs)-1, true
			}
			if ok && i < len(p.diffIDs) {
				byV1[v1.ID], byDir[dir] = i, i
			}
			continue
		}
		if !(base == "layer.tar" || strings.HasPrefix(name, "blobs/")) {
			continue
		}
		if i, ok := byDir[dir]; ok && base == "layer.tar" && b.next < len(b.order) && b.order[b.next] == i && len(want[p.diffIDs[i]]) > 0 {
			if err := b.stream(ctx, i, hdr.Size, tr, h); err != nil {
				return err
			}
			want[p.diffIDs[i]] = slices.DeleteFunc(want[p.diffIDs[i]], func(k int) bool { return k == i })
			b.next++
		} else {
			d, err := b.spoolLayer(tr, hdr.Size, h, tempDir)
			if err != nil {
				return err
			}
			if places := want[d]; len(places) > 0 {
				b.spooled[places[0]] = [2]int64{b.spoolEnd, hdr.Size}
				b.spoolEnd += hdr.Size
				want[d] = places[1:]
			}
		}
		if err := b.sendReady(ctx); err != nil {
			return err
		}
	}
	if b.next < len(b.order) {
		return fmt.Errorf("docker: save of image %s lacks %d of its layers", p.img.ID, len(b.order)-b.next)
	}
	return nil
}

// stream sends layer i straight from r, checking its digest.
func (b *baseSender) stream(ctx context.Context, i int, size int64, r io.Reader, h hash.Hash) error {
	h.Reset()
	lr := io.LimitReader(r, size)
	if err := b.send(ctx, i, size, io.TeeReader(lr, h)); err != nil {
		return err
	}
	if _, err := io.Copy(h, lr); err != nil {
		return engineErr("read saved image", err)
	}
	if d := layerDigest(h); d != b.p.diffIDs[i] {
		return fmt.Errorf("docker: saved layer %d of image %s is %s, not %s", i, b.p.img.ID, d, b.p.diffIDs[i])
	}
	return nil
}

// spoolLayer copies a layer tar to the end of the spool and returns its
// digest; the caller keeps it by advancing spoolEnd, or not.
func (b *baseSender) spoolLayer(r io.Reader, size int64, h hash.Hash, tempDir string) (string, error) {
	if b.spool == nil {
		f, err := os.CreateTemp(tempDir, "ptest-snap-docker-layers-*")
		if err != nil {
			return "", fmt.Errorf("docker: spool base layers: %w", err)
		}
		b.spool = f
	}
	h.Reset()
	bw := bufio.NewWriterSize(io.NewOffsetWriter(b.spool, b.spoolEnd), 1<<20)
	n, err := io.Copy(io.MultiWriter(bw, h), io.LimitReader(r, size))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return "", fmt.Errorf("docker: spool base layer: %w", err)
	}
	return layerDigest(h), nil
}

func layerDigest(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// run sends the "image" stream, then the "image-base" one.
func (p *diffPlan) run(ctx context.Context, w pluginapi.CaptureWriter, parent pluginapi.ParentIndex, top *topLayer, s *synthesized, tempDir string) error {
	ic := &imageCapture{imageID: s.imageID, parent: parent}
	if err := s.sendImage(ctx, w, ic, top); err != nil {
		return err
	}
	if err := w.BeginStream(ctx, baseStream); err != nil {
		return err
	}
	b := &baseSender{p: p, w: w, ic: ic, spooled: map[int][2]int64{}}
	defer b.close()
	b.order = make([]int, len(p.paths))
	for i := range b.order {
		b.order[i] = i
	}
	slices.SortFunc(b.order, func(x, y int) int { return strings.Compare(p.paths[x], p.paths[y]) })
	if err := b.sendReady(ctx); err != nil {
		return err
	}
	if b.next == len(b.order) {
		return nil
	}
	if p.save == nil {
		return fmt.Errorf("docker: base layer %s is neither in the parent nor saved", p.diffIDs[b.order[b.next]])
	}
	return b.readSave(ctx, tempDir)
}
