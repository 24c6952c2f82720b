package docker

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// cleanupTimeout bounds the calls that undo a capture's side effects
// (unpause, remove the commit image); they run even when the capture's
// context was cancelled.
const cleanupTimeout = 30 * time.Second

// Capture captures a container: metadata, then one stream per volume, then
// the image ("image", then its base layers in "image-base"). By default
// the image is the container's own layer, written from its changes, over
// the base layers of its image, with no commit (diff_capture.go);
// keep-image, a layer count past flatten-layers, or changes that need it
// take a commit and its save archive instead (image_capture.go).
//
// A running container is paused from before its changes are read (or
// the commit) until its volumes are read, so the image and the volumes
// are one consistent instant; it is unpaused on every path out (and as
// soon as ctx is cancelled). A container the user had paused stays paused.
//
// Excludes apply to the volumes' files (an image's layers are kept byte
// for byte). Options: "flatten-layers=N" (default 100): an image of more
// layers is flattened (commit path); "keep-image=true": commit, and leave
// the commit image in the engine (otherwise it is removed once streamed).
func (e *Engine) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if req.IndexOnly {
		return fmt.Errorf("docker: index-only capture: %w", pluginapi.ErrUnsupported)
	}
	threshold, err := e.flattenThreshold(req.Options)
	if err != nil {
		return err
	}
	if err := validateExcludes(req.Excludes); err != nil {
		return err
	}
	keepImage, err := boolOption(req.Options, "keep-image")
	if err != nil {
		return err
	}
	cli, err := e.client()
	if err != nil {
		return err
	}
	c, err := cli.ContainerInspect(ctx, req.Target)
	if err != nil {
		return containerErr("inspect", req.Target, err)
	}
	if c.Config == nil || c.HostConfig == nil {
		return fmt.Errorf("docker: container %q: inspect returned no config", req.Target)
	}
	// Without keep-image, the container's layer is written here and the
	// base layers come from the parent or a save of the original image,
	// started now, before the pause and even before the container is
	// described (diff_capture.go).
	var plan *diffPlan
	if !keepImage {
		if plan, err = planDiff(ctx, cli, &c, threshold, req.Parent); err != nil {
			return err
		}
	}
	defer func() {
		if plan != nil {
			plan.close()
		}
	}()
	meta := &Metadata{
		DockerInfo: dockerInfo(&c),
		Config:     c.Config,
		HostConfig: c.HostConfig,
		Request:    RequestInfo{Env: req.Env, Ports: req.Ports},
	}
	describeMounts(&c, meta)
	// The engine's version, the networks' and the volumes' configs are
	// asked for beside the pause and the reading of the changes, which do
	// not need them: a round trip each, on the path of a snapshot that
	// has its base layers from the parent. Waited for before meta is
	// filled in further (and on every path out), so meta has one writer
	// at a time.
	described := make(chan error, 1)
	go func() { described <- e.describe(ctx, cli, &c, meta) }()
	waitDescribed := sync.OnceValue(func() error { return <-described })
	defer waitDescribed()

	unpause := func() {}
	if c.State != nil && c.State.Running && !c.State.Paused {
		if err := cli.ContainerPause(ctx, c.ID); err != nil {
			return containerErr("pause", req.Target, err)
		}
		// The unpause runs beside what follows (streaming the layers
		// needs no pause): under load it can take from a few
		// milliseconds to most of a second, which the capture does not
		// wait for until it returns.
		var once sync.Once
		unpaused := make(chan struct{})
		unpause = func() {
			once.Do(func() {
				go func() {
					defer close(unpaused)
					uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
					defer cancel()
					_ = cli.ContainerUnpause(uctx, c.ID)
				}()
			})
		}
		stop := context.AfterFunc(ctx, unpause)
		defer stop()
		defer func() {
			unpause()
			<-unpaused
		}()
	}

	var (
		top   *topLayer
		synth *synthesized
		save  *pendingSave
		// commitSaved removes the commit image once its archive is read.
		commitSaved func()
	)
	defer func() { top.close() }()
	if plan != nil {
		top, err = buildTopLayer(ctx, cli, &c, e.opts.TempDir)
		if errors.Is(err, errNotDiffable) {
			plan.close()
			plan = nil
		} else if err != nil {
			return err
		} else if synth, err = plan.synthesize(c.Config, top, time.Now()); err != nil {
			return err
		}
	}
	if err := waitDescribed(); err != nil {
		return err
	}
	if plan != nil {
		meta.DockerInfo.SnapshotImage = synth.imageID
		meta.Image = ImageInfo{ID: synth.imageID, DiffIDs: synth.diffIDs}
	} else {
		imageID, diffIDs, flattened, err := e.commit(ctx, cli, &c, threshold)
		if err != nil {
			return err
		}
		// The commit image is removed once its save archive is read (while
		// the base layers go out from the spool), or on the way out.
		removeImage := func() {}
		if !keepImage {
			var once sync.Once
			removed := make(chan struct{})
			removeImage = func() {
				once.Do(func() {
					go func() {
						defer close(removed)
						rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
						defer cancel()
						_, _ = cli.ImageRemove(rctx, imageID, image.RemoveOptions{PruneChildren: true})
					}()
				})
			}
			defer func() {
				removeImage()
				<-removed
			}()
		}
		meta.DockerInfo.SnapshotImage = imageID
		meta.Image = ImageInfo{ID: imageID, DiffIDs: diffIDs, Flattened: flattened}

		// Start the save now: the engine writes every layer to a temporary
		// directory before the archive's first byte (0.8-1 s for a 118 MB
		// image here), which then overlaps the volumes' capture.
		saveCtx, cancelSave := context.WithCancel(ctx)
		save = startSave(saveCtx, cli, imageID)
		defer save.close()
		defer cancelSave()
		commitSaved = removeImage
	}

	// Open every volume's archive now: its first header is the volume's
	// root directory, whose mode and owner go into the metadata (a stream's
	// root is not an entry).
	vols := make([]*volumeReader, len(meta.Volumes))
	defer func() {
		for _, vr := range vols {
			if vr != nil {
				vr.rc.Close()
			}
		}
	}()
	for i := range meta.Volumes {
		if vols[i], err = openVolume(ctx, cli, c.ID, &meta.Volumes[i]); err != nil {
			return err
		}
	}

	pm, err := encodeMetadata(meta)
	if err != nil {
		return err
	}
	if err := w.WriteMetadata(ctx, pm); err != nil {
		return err
	}
	for i, v := range meta.Volumes {
		if err := w.BeginStream(ctx, volumeStream(v.Name)); err != nil {
			return err
		}
		if _, err := tarToEntries(ctx, vols[i].tr, w, req.Excludes); err != nil {
			return fmt.Errorf("docker: volume %s: %w", v.Name, err)
		}
	}
	unpause()

	if plan != nil {
		return plan.run(ctx, w, req.Parent, top, synth, e.opts.TempDir)
	}
	ic := &imageCapture{imageID: meta.Image.ID, parent: req.Parent, tempDir: e.opts.TempDir, saved: commitSaved}
	return ic.run(ctx, w, save)
}

// commit commits the container to an image and returns its ID and diff
// IDs. Past threshold layers the commit is replaced by an export + import
// of the container's file system (one layer); the container's config is
// kept in the metadata, so the image's own config does not matter.
func (e *Engine) commit(ctx context.Context, cli *client.Client, c *container.InspectResponse, threshold int) (id string, diffIDs []string, flattened bool, err error) {
	resp, err := cli.ContainerCommit(ctx, c.ID, container.CommitOptions{
		Comment: "ptest-snap capture",
		Pause:   false, // paused by Capture if it runs
	})
	if err != nil {
		return "", nil, false, containerErr("commit", c.ID, err)
	}
	id = resp.ID
	img, err := cli.ImageInspect(ctx, id)
	if err != nil {
		return "", nil, false, engineErr("inspect commit "+id, err)
	}
	if len(img.RootFS.Layers) <= threshold {
		return id, img.RootFS.Layers, false, nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	_, _ = cli.ImageRemove(rctx, id, image.RemoveOptions{PruneChildren: true})
	cancel()
	flatID, err := flatten(ctx, cli, c.ID)
	if err != nil {
		return "", nil, false, err
	}
	img, err = cli.ImageInspect(ctx, flatID)
	if err != nil {
		return "", nil, false, engineErr("inspect flattened image "+flatID, err)
	}
	return flatID, img.RootFS.Layers, true, nil
}

// flatten imports the container's exported file system as a one-layer image.
func flatten(ctx context.Context, cli *client.Client, containerID string) (string, error) {
	exp, err := cli.ContainerExport(ctx, containerID)
	if err != nil {
		return "", containerErr("export", containerID, err)
	}
	defer exp.Close()
	out, err := cli.ImageImport(ctx, image.ImportSource{Source: exp, SourceName: "-"}, "", image.ImportOptions{Message: "ptest-snap flatten"})
	if err != nil {
		return "", engineErr("import flattened image", err)
	}
	defer out.Close()
	var id string
	if err := readJSONMessages(out, func(m jsonMessage) { id = strings.TrimSpace(m.Status) }); err != nil {
		return "", engineErr("import flattened image", err)
	}
	if !strings.HasPrefix(id, "sha256:") {
		return "", fmt.Errorf("docker: import flattened image: no image ID in the reply (%q)", id)
	}
	return id, nil
}

// jsonMessage is one line of the engine's progress stream.
type jsonMessage struct {
	Status      string `json:"status"`
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readJSONMessages reads a progress stream to its end, calling f on each
// message, and returns the first error it reports.
func readJSONMessages(r io.Reader, f func(jsonMessage)) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return fmt.Errorf("%s", m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return fmt.Errorf("%s", m.Error)
		}
		if f != nil {
			f(m)
		}
	}
}

// describe fills in what meta needs from the engine beyond the
// container's inspect: the server's version (and ID, for a container with
// host access), the networks' configs and the volumes' labels and options.
// describeMounts must have listed the volumes.
func (e *Engine) describe(ctx context.Context, cli *client.Client, c *container.InspectResponse, meta *Metadata) error {
	if v, err := cli.ServerVersion(ctx); err == nil {
		meta.Server = ServerInfo{Version: v.Version, APIVersion: v.APIVersion}
	}
	if len(hostAccess(c.HostConfig)) > 0 {
		id, err := engineID(ctx, cli)
		if err != nil {
			return err
		}
		meta.Server.EngineID = id
	}
	if err := e.describeNetworks(ctx, cli, c, meta); err != nil {
		return err
	}
	for i := range meta.Volumes {
		v := &meta.Volumes[i]
		if vol, err := cli.VolumeInspect(ctx, v.Name); err == nil {
			v.Labels, v.Options = vol.Labels, vol.Options
		}
	}
	return nil
}

// predefinedNetworks are never created or removed by a restore.
var predefinedNetworks = map[string]bool{"bridge": true, "host": true, "none": true, "default": true}

// describeNetworks records each attached network with its own config.
func (e *Engine) describeNetworks(ctx context.Context, cli *client.Client, c *container.InspectResponse, meta *Metadata) error {
	if c.NetworkSettings == nil {
		return nil
	}
	names := make([]string, 0, len(c.NetworkSettings.Networks))
	for name := range c.NetworkSettings.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	shortID := c.ID[:min(12, len(c.ID))]
	for _, name := range names {
		ep := c.NetworkSettings.Networks[name]
		ni := NetworkInfo{Name: name, Endpoint: ep}
		if ep != nil {
			ni.ID = ep.NetworkID
			for _, a := range ep.Aliases {
				if a != shortID {
					ni.Aliases = append(ni.Aliases, a)
				}
			}
		}
		n, err := cli.NetworkInspect(ctx, name, network.InspectOptions{})
		if err != nil {
			return engineErr("inspect network "+name, err)
		}
		ni.Driver = n.Driver
		if !predefinedNetworks[name] {
			ipam := n.IPAM
			enableIPv6 := n.EnableIPv6
			ni.Create = &network.CreateOptions{
				Driver: n.Driver, Scope: n.Scope, EnableIPv6: &enableIPv6, IPAM: &ipam,
				Internal: n.Internal, Attachable: n.Attachable, Ingress: n.Ingress,
				Options: n.Options, Labels: n.Labels,
			}
		}
		meta.Networks = append(meta.Networks, ni)
	}
	return nil
}

// describeMounts records the mounts, and the volume mounts as volumes.
func describeMounts(c *container.InspectResponse, meta *Metadata) {
	seen := map[string]bool{}
	for _, m := range c.Mounts {
		meta.Mounts = append(meta.Mounts, MountInfo{Type: string(m.Type), Name: m.Name, Source: m.Source, Destination: m.Destination, RW: m.RW})
		// A volume mounted twice is captured once (stream names are unique).
		if m.Type == "volume" && m.Name != "" && !seen[m.Name] {
			seen[m.Name] = true
			meta.Volumes = append(meta.Volumes, VolumeInfo{Name: m.Name, Destination: m.Destination, Driver: m.Driver, RW: m.RW})
		}
	}
	sort.Slice(meta.Volumes, func(i, j int) bool { return meta.Volumes[i].Name < meta.Volumes[j].Name })
}

// volumeReader is a volume's archive, opened, its root header read.
type volumeReader struct {
	rc io.ReadCloser
	tr *tar.Reader
}

// openVolume opens a volume's archive through the container and records
// its root directory's attributes in v.
func openVolume(ctx context.Context, cli *client.Client, containerID string, v *VolumeInfo) (*volumeReader, error) {
	rc, _, err := cli.CopyFromContainer(ctx, containerID, v.Destination)
	if err != nil {
		return nil, containerErr("read volume "+v.Name+" of", containerID, err)
	}
	vr := &volumeReader{rc: rc, tr: tar.NewReader(rc)}
	hdr, err := vr.tr.Next()
	if err != nil || hdr.Typeflag != tar.TypeDir || stripFirst(hdr.Name) != "" {
		rc.Close()
		return nil, fmt.Errorf("docker: volume %s: the archive does not start with its directory (%v)", v.Name, err)
	}
	v.Root = &RootAttrs{Mode: uint32(hdr.Mode) & 0o7777, UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), MtimeNs: hdr.ModTime.UnixNano()}
	return vr, nil
}
