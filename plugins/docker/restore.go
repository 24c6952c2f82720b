package docker

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/pypj/ptest-snap/pluginapi"
)

// Restore recreates a captured container as a new container.
//
// The image is loaded from the stream only if the engine lacks it (then
// reading stops at the image's stream, when it is the last one, so the host
// does not even read the image from the store), and its base layers only if
// the engine lacks them too (reading stops at "image-base" when the
// container's original image is there with the same bottom layers); missing
// networks are recreated with their config; each volume is created and
// filled with the snapshot's data (a volume that already exists is left
// alone and a new one, <name>-restored-<n>, is used instead, unless Replace
// frees it or the option "volumes=reuse" asks to mount it as it is); the
// container gets the captured config and is started if it was running
// (paused again if it was paused).
//
// Name: req.Target, else Options["name"], else the original name, else
// <orig>-restored-<n> when that is taken; an explicit Target that exists is ErrTargetExists unless
// Replace, which stops and removes it first. Host ports are kept unless
// "remap-ports=true" or another container holds them; a remapped port is
// reported in Messages. "skip-present-image=false" loads the image from the
// snapshot even when the engine has it (reading the whole stream), as when
// the engine's copy is in doubt. A container with host access (privileged,
// host bind mounts, ...) captured on another engine is refused unless
// "allow-host-access=true" (host_access.go).
func (e *Engine) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	if req.InPlace {
		return nil, fmt.Errorf("docker: in-place restore: %w (restore to a new container, or use Replace)", pluginapi.ErrUnsupported)
	}
	meta, err := decodeMetadata(req.Metadata)
	if err != nil {
		return nil, err
	}
	remapPorts, err := boolOption(req.Options, "remap-ports")
	if err != nil {
		return nil, err
	}
	skipPresent, err := boolOptionOr(req.Options, "skip-present-image", true)
	if err != nil {
		return nil, err
	}
	volumeMode := req.Options["volumes"]
	if volumeMode != "" && volumeMode != "reuse" && volumeMode != "new" {
		return nil, fmt.Errorf("docker: option volumes=%q: want new or reuse", volumeMode)
	}
	cli, err := e.client()
	if err != nil {
		return nil, err
	}
	if err := checkHostAccess(ctx, cli, meta, req.Options); err != nil {
		return nil, err
	}
	tempDir, err := os.MkdirTemp(e.opts.TempDir, "ptest-snap-docker-")
	if err != nil {
		return nil, fmt.Errorf("docker: temp dir: %w", err)
	}
	defer os.RemoveAll(tempDir)

	rs := &restoreSession{
		cli: cli, meta: meta, req: req, tempDir: tempDir,
		remapPorts: remapPorts, reuseVolumes: volumeMode == "reuse",
		loader:   &imageLoader{cli: cli, meta: meta, force: !skipPresent},
		spools:   map[string]*volumeSpool{},
		volNames: map[string]string{},
	}
	defer rs.closeSpools()
	if err := rs.openSpools(); err != nil {
		return nil, err
	}
	if err := rs.read(ctx, r); err != nil {
		rs.loader.abort()
		return nil, err
	}
	loaded, err := rs.loader.finish(ctx)
	if err != nil {
		return nil, err
	}
	if loaded {
		rs.say("loaded image %s from the snapshot", shortID(meta.Image.ID))
	}
	if err := rs.chooseName(ctx); err != nil {
		return nil, err
	}
	if err := rs.replace(ctx); err != nil {
		return nil, err
	}
	if err := rs.networks(ctx); err != nil {
		return nil, err
	}
	if err := rs.volumes(ctx); err != nil {
		return nil, err
	}
	if err := rs.createAndStart(ctx); err != nil {
		return nil, err
	}
	return &pluginapi.RestoreResult{Target: rs.name, Messages: rs.messages}, nil
}

// restoreSession is one restore's state.
type restoreSession struct {
	cli          *client.Client
	meta         *Metadata
	req          *pluginapi.RestoreRequest
	tempDir      string
	remapPorts   bool
	reuseVolumes bool
	loader       *imageLoader
	spools       map[string]*volumeSpool // by volume name
	// fillHelper: volumes are filled through a helper container (some
	// volume is mounted read-only), else through the restored container.
	fillHelper bool
	// baseDecided: whether to read "image-base" was decided.
	baseDecided bool

	name     string
	existing string // ID of the container named name, if any
	volNames map[string]string
	// pendingFill are volumes (Name: the new volume, Destination: the
	// captured volume's name) to fill through the container once created.
	pendingFill []VolumeInfo
	messages    []string
}

// volumeSpool collects a volume's entries as a tar file until the image is
// loaded and a container can receive it. The tar holds the volume's root
// as a directory named base (so its mode and owner are set too) and is
// extracted into parent.
type volumeSpool struct {
	f            *os.File
	tw           *tar.Writer
	parent, base string
}

// helperFillDir is where the helper container mounts volume i.
const helperFillDir = "/ptest-snap-fill"

// openSpools starts a spool for every volume, with its root directory.
func (rs *restoreSession) openSpools() error {
	for _, mi := range rs.meta.Mounts {
		if mi.Type == "volume" && !mi.RW {
			rs.fillHelper = true
		}
	}
	for i, v := range rs.meta.Volumes {
		parent, base := helperFillDir, strconv.Itoa(i)
		if !rs.fillHelper {
			for _, mi := range rs.meta.Mounts {
				if mi.Type == "volume" && mi.Name == v.Name {
					parent, base = path.Split(path.Clean(mi.Destination))
					break
				}
			}
			if base == "" || base == "/" {
				return fmt.Errorf("docker: volume %s: cannot restore a volume mounted at %q", v.Name, parent)
			}
		}
		f, err := os.CreateTemp(rs.tempDir, "volume-*.tar")
		if err != nil {
			return fmt.Errorf("docker: spool volume %s: %w", v.Name, err)
		}
		sp := &volumeSpool{f: f, tw: tar.NewWriter(f), parent: parent, base: base}
		rs.spools[v.Name] = sp
		root := pluginapi.Entry{Path: base, Type: pluginapi.TypeDir, Mode: 0o755}
		if r := v.Root; r != nil {
			root.Mode, root.UID, root.GID, root.MtimeNs = r.Mode, r.UID, r.GID, r.MtimeNs
		}
		if err := writeEntryTar(sp.tw, &root, nil); err != nil {
			return fmt.Errorf("docker: spool volume %s: %w", v.Name, err)
		}
	}
	return nil
}

func (rs *restoreSession) say(format string, args ...any) {
	rs.messages = append(rs.messages, fmt.Sprintf(format, args...))
}

// read consumes the restore stream: volumes are spooled, the image is
// loaded as it arrives.
func (rs *restoreSession) read(ctx context.Context, r pluginapi.RestoreReader) error {
	known := map[string]bool{} // volume streams; the image's go to the loader
	for _, v := range rs.meta.Volumes {
		known[volumeStream(v.Name)] = true
	}
	for {
		stream, e, body, err := r.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch {
		case stream == imageStream || stream == baseStream:
			if stream == baseStream && !rs.baseDecided {
				rs.baseDecided = true
				if rs.baseIsLast() {
					skip, err := rs.loader.canSkipBase(ctx)
					if err != nil {
						return err
					}
					if skip {
						// The engine has every layer of "image-base": stop
						// here, so the host does not read them from the
						// store; `docker load` finds them in the engine.
						rs.say("base layers of image %s are in the engine; not read", shortID(rs.meta.Image.ID))
						return rs.closeSpoolWriters()
					}
				}
			}
			if err := rs.loader.entry(ctx, e, body); err != nil {
				return err
			}
			if rs.loader.skip && rs.imageIsLast() {
				// The engine has the image: stop reading, so the host
				// does not read the image's bytes from the store at all
				// (it stops sending when this call ends).
				rs.say("image %s is already in the engine; not loaded", shortID(rs.meta.Image.ID))
				return rs.closeSpoolWriters()
			}
		case known[stream]:
			if err := rs.spoolEntry(strings.TrimPrefix(stream, "volume:"), e, body); err != nil {
				return err
			}
		default:
			return fmt.Errorf("docker: unknown stream %q in the snapshot", stream)
		}
	}
	return rs.closeSpoolWriters()
}

// imageIsLast reports whether no stream but the image's base follows the
// image's.
func (rs *restoreSession) imageIsLast() bool {
	n := len(rs.req.Streams)
	if n > 0 && rs.req.Streams[n-1] == baseStream {
		n--
	}
	return n == 0 || rs.req.Streams[n-1] == imageStream
}

// baseIsLast reports whether no stream follows the image's base.
func (rs *restoreSession) baseIsLast() bool {
	n := len(rs.req.Streams)
	return n == 0 || rs.req.Streams[n-1] == baseStream
}

func (rs *restoreSession) closeSpoolWriters() error {
	for _, sp := range rs.spools {
		if err := sp.tw.Close(); err != nil {
			return fmt.Errorf("docker: spool volume: %w", err)
		}
	}
	return nil
}

func (rs *restoreSession) spoolEntry(vol string, e *pluginapi.Entry, body io.Reader) error {
	if e.Unchanged {
		return fmt.Errorf("docker: volume entry %q marked unchanged: in-place restore %w", e.Path, pluginapi.ErrUnsupported)
	}
	sp := rs.spools[vol]
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return err
	}
	pe := *e
	pe.Path = sp.base + "/" + e.Path
	if e.Type == pluginapi.TypeHardlink {
		pe.LinkTarget = sp.base + "/" + e.LinkTarget
	}
	if err := writeEntryTar(sp.tw, &pe, body); err != nil {
		return fmt.Errorf("docker: volume %s: %w", vol, err)
	}
	return nil
}

func (rs *restoreSession) closeSpools() {
	for _, sp := range rs.spools {
		sp.f.Close()
	}
}

// containerByName returns the ID of the container with exactly this name.
func (rs *restoreSession) containerByName(ctx context.Context, name string) (string, error) {
	list, err := rs.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", "^/"+name+"$"))})
	if err != nil {
		return "", engineErr("list containers", err)
	}
	for _, c := range list {
		for _, n := range c.Names {
			if strings.TrimPrefix(n, "/") == name {
				return c.ID, nil
			}
		}
	}
	return "", nil
}

// chooseName picks the new container's name (see Restore).
func (rs *restoreSession) chooseName(ctx context.Context) error {
	orig := rs.meta.DockerInfo.ContainerName
	name := rs.req.Target
	if name == "" {
		name = rs.req.Options["name"] // the CLI's --name, passed by the core
	}
	explicit := name != ""
	if !explicit {
		name = orig
	}
	id, err := rs.containerByName(ctx, name)
	if err != nil {
		return err
	}
	if id == "" || rs.req.Replace {
		rs.name, rs.existing = name, id
		return nil
	}
	if explicit {
		return fmt.Errorf("docker: container %q exists (use Replace to replace it): %w", name, pluginapi.ErrTargetExists)
	}
	for n := 1; ; n++ {
		cand := fmt.Sprintf("%s-restored-%d", orig, n)
		id, err := rs.containerByName(ctx, cand)
		if err != nil {
			return err
		}
		if id == "" {
			rs.name = cand
			rs.say("container %q exists; restored as %q", orig, cand)
			return nil
		}
	}
}

// replace stops and removes the container being replaced (Replace).
func (rs *restoreSession) replace(ctx context.Context) error {
	if rs.existing == "" {
		return nil
	}
	if err := rs.cli.ContainerStop(ctx, rs.existing, container.StopOptions{}); err != nil && !isNotFound(err) {
		return containerErr("stop", rs.name, err)
	}
	if err := rs.cli.ContainerRemove(ctx, rs.existing, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		return containerErr("remove", rs.name, err)
	}
	rs.say("replaced container %q (%s)", rs.name, shortID(rs.existing))
	return nil
}

// networks recreates the snapshot's missing networks.
func (rs *restoreSession) networks(ctx context.Context) error {
	for _, n := range rs.meta.Networks {
		if n.Create == nil {
			continue
		}
		_, err := rs.cli.NetworkInspect(ctx, n.Name, network.InspectOptions{})
		if err == nil {
			continue
		}
		if !isNotFound(err) {
			return engineErr("inspect network "+n.Name, err)
		}
		if _, err := rs.cli.NetworkCreate(ctx, n.Name, *n.Create); err != nil {
			return engineErr("create network "+n.Name, err)
		}
		rs.say("created network %q", n.Name)
	}
	return nil
}

// volumes creates the volumes and fills them with the snapshot's data.
func (rs *restoreSession) volumes(ctx context.Context) error {
	var fill []VolumeInfo
	for _, v := range rs.meta.Volumes {
		name := v.Name
		_, err := rs.cli.VolumeInspect(ctx, name)
		exists := err == nil
		if err != nil && !isNotFound(err) {
			return engineErr("inspect volume "+name, err)
		}
		if exists && rs.reuseVolumes {
			rs.volNames[v.Name] = name
			rs.say("volume %q exists; mounted as it is (volumes=reuse)", name)
			continue
		}
		if exists && rs.existing != "" {
			// Replace: the old container is gone; its volume is reset to
			// the snapshot's data if nothing else holds it.
			if err := rs.cli.VolumeRemove(ctx, name, false); err == nil {
				exists = false
			}
		}
		if exists {
			for n := 1; ; n++ {
				cand := fmt.Sprintf("%s-restored-%d", v.Name, n)
				if _, err := rs.cli.VolumeInspect(ctx, cand); err != nil {
					if !isNotFound(err) {
						return engineErr("inspect volume "+cand, err)
					}
					name = cand
					break
				}
			}
			rs.say("volume %q exists; restored its data to new volume %q", v.Name, name)
		}
		if _, err := rs.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: v.Driver, DriverOpts: v.Options, Labels: v.Labels}); err != nil {
			return engineErr("create volume "+name, err)
		}
		rs.volNames[v.Name] = name
		fill = append(fill, VolumeInfo{Name: name, Destination: v.Name})
	}
	if len(fill) == 0 {
		return nil
	}
	// A volume the container mounts read-write is filled through the
	// container itself once created (no extra container); if any is
	// read-only, all go through a helper container now.
	if rs.fillHelper {
		return rs.fillVolumes(ctx, fill)
	}
	rs.pendingFill = fill
	return nil
}

// copySpool extracts a volume's spool into a container.
func (rs *restoreSession) copySpool(ctx context.Context, id string, v VolumeInfo) error {
	sp := rs.spools[v.Destination]
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("docker: spooled volume: %w", err)
	}
	if err := rs.cli.CopyToContainer(ctx, id, sp.parent, sp.f, container.CopyToContainerOptions{}); err != nil {
		return engineErr("fill volume "+v.Name, err)
	}
	return nil
}

// fillThrough copies the spooled volume data into the created (not yet
// started) container at the volumes' mount points.
func (rs *restoreSession) fillThrough(ctx context.Context, id string) error {
	for _, v := range rs.pendingFill {
		if err := rs.copySpool(ctx, id, v); err != nil {
			return err
		}
	}
	rs.pendingFill = nil
	return nil
}

// fillVolumes copies the spooled data into the volumes (Destination holds
// the captured volume's name here) through a helper container that mounts
// them all and is never started; it works for volumes the container mounts
// read-only and whatever the image holds at the mount points.
func (rs *restoreSession) fillVolumes(ctx context.Context, vols []VolumeInfo) error {
	hc := &container.HostConfig{NetworkMode: "none"}
	for _, v := range vols {
		sp := rs.spools[v.Destination]
		hc.Mounts = append(hc.Mounts, mount.Mount{
			Type: mount.TypeVolume, Source: v.Name, Target: sp.parent + "/" + sp.base,
			VolumeOptions: &mount.VolumeOptions{NoCopy: true},
		})
	}
	helper, err := rs.cli.ContainerCreate(ctx, &container.Config{
		Image:      rs.meta.Image.ID,
		Entrypoint: []string{"/ptest-snap-volume-fill"},
		Labels:     map[string]string{"ptest-snap.helper": "volume-fill"},
	}, hc, nil, nil, "")
	if err != nil {
		return engineErr("create volume helper", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_ = rs.cli.ContainerRemove(rctx, helper.ID, container.RemoveOptions{Force: true})
	}()
	for _, v := range vols {
		if err := rs.copySpool(ctx, helper.ID, v); err != nil {
			return err
		}
	}
	return nil
}

// createAndStart creates the container and starts it if it was running.
func (rs *restoreSession) createAndStart(ctx context.Context) error {
	cfg, hc, primary, err := rs.containerConfig(ctx)
	if err != nil {
		return err
	}
	id, err := rs.create(ctx, cfg, hc, primary)
	if err != nil {
		return err
	}
	if err := rs.fillThrough(ctx, id); err != nil {
		rs.removeQuietly(ctx, id)
		return err
	}
	st := rs.meta.DockerInfo.State
	if !st.Running && !st.Paused {
		return nil
	}
	err = rs.cli.ContainerStart(ctx, id, container.StartOptions{})
	if err != nil && isPortConflict(err) && !rs.remapPorts && len(hc.PortBindings) > 0 {
		// A host port was taken by something other than a container: drop
		// the container and let the engine pick every port.
		rs.removeQuietly(ctx, id)
		rs.remapPorts = true
		if cfg, hc, primary, err = rs.containerConfig(ctx); err != nil {
			return err
		}
		if id, err = rs.create(ctx, cfg, hc, primary); err != nil {
			return err
		}
		err = rs.cli.ContainerStart(ctx, id, container.StartOptions{})
	}
	if err != nil {
		rs.removeQuietly(ctx, id)
		return engineErr("start "+rs.name, err)
	}
	if st.Paused {
		if err := rs.cli.ContainerPause(ctx, id); err != nil {
			return engineErr("pause "+rs.name, err)
		}
	}
	return rs.reportPorts(ctx, id)
}

func (rs *restoreSession) create(ctx context.Context, cfg *container.Config, hc *container.HostConfig, primary string) (string, error) {
	var nc *network.NetworkingConfig
	if ep := rs.endpoint(primary); ep != nil {
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{primary: ep}}
	}
	resp, err := rs.cli.ContainerCreate(ctx, cfg, hc, nc, nil, rs.name)
	if err != nil {
		return "", engineErr("create container "+rs.name, err)
	}
	// API 1.41 takes one network at create; the others are connected now.
	for _, n := range rs.meta.Networks {
		if n.Name == primary || predefinedNetworks[n.Name] {
			continue
		}
		if err := rs.cli.NetworkConnect(ctx, n.Name, resp.ID, rs.endpoint(n.Name)); err != nil {
			rs.removeQuietly(ctx, resp.ID)
			return "", engineErr("connect "+rs.name+" to network "+n.Name, err)
		}
	}
	return resp.ID, nil
}

func (rs *restoreSession) removeQuietly(ctx context.Context, id string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = rs.cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true})
}

// endpoint is the endpoint config for a user-defined network, or nil.
func (rs *restoreSession) endpoint(name string) *network.EndpointSettings {
	if name == "" || predefinedNetworks[name] {
		return nil
	}
	for _, n := range rs.meta.Networks {
		if n.Name != name {
			continue
		}
		ep := &network.EndpointSettings{Aliases: n.Aliases}
		if n.Endpoint != nil {
			ep.IPAMConfig, ep.Links, ep.DriverOpts = n.Endpoint.IPAMConfig, n.Endpoint.Links, n.Endpoint.DriverOpts
		}
		return ep
	}
	return nil
}

// containerConfig is the captured config adjusted to this restore: the
// loaded image, the (possibly renamed) volumes, the host ports.
func (rs *restoreSession) containerConfig(ctx context.Context) (*container.Config, *container.HostConfig, string, error) {
	m := rs.meta
	cfg := *m.Config
	cfg.Image = m.Image.ID
	if cfg.Hostname == shortID(m.DockerInfo.ContainerID) {
		cfg.Hostname = "" // the engine's default, the new container's ID
	}
	//lint:ignore SA1019 API 1.41 still returns it; a copied MAC would clash with the original
	cfg.MacAddress = ""
	hc := *m.HostConfig
	hc.ContainerIDFile = ""

	// Volume mounts: every captured volume destination is mounted from
	// the restored volume; other binds and mounts stay as they were.
	volDest := map[string]string{}
	for _, mi := range m.Mounts {
		if mi.Type == "volume" && mi.Name != "" {
			volDest[mi.Destination] = mi.Name
		}
	}
	var binds []string
	for _, b := range hc.Binds {
		if _, ok := volDest[bindDestination(b)]; !ok {
			binds = append(binds, b)
		}
	}
	hc.Binds = binds
	var mounts []mount.Mount
	for _, mt := range hc.Mounts {
		if _, ok := volDest[mt.Target]; !(ok && mt.Type == mount.TypeVolume) {
			mounts = append(mounts, mt)
		}
	}
	dests := make([]string, 0, len(volDest))
	for d := range volDest {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	for _, d := range dests {
		name := volDest[d]
		newName := rs.volNames[name]
		if newName == "" {
			newName = name
		}
		rw := true
		for _, mi := range m.Mounts {
			if mi.Destination == d {
				rw = mi.RW
			}
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: newName, Target: d, ReadOnly: !rw, VolumeOptions: &mount.VolumeOptions{NoCopy: true}})
	}
	hc.Mounts = mounts

	bindings, err := rs.portBindings(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	hc.PortBindings = bindings

	primary := string(hc.NetworkMode)
	if predefinedNetworks[primary] || strings.HasPrefix(primary, "container:") {
		primary = ""
	}
	return &cfg, &hc, primary, nil
}

// bindDestination returns the container path of a "src:dst[:opts]" bind.
func bindDestination(b string) string {
	parts := strings.Split(b, ":")
	if len(parts) >= 2 {
		return parts[1]
	}
	return parts[0]
}

// portBindings keeps the captured host ports unless asked to remap or
// another running container publishes the same port.
func (rs *restoreSession) portBindings(ctx context.Context) (nat.PortMap, error) {
	orig := rs.meta.HostConfig.PortBindings
	if len(orig) == 0 {
		return orig, nil
	}
	used := map[string]bool{}
	if !rs.remapPorts {
		list, err := rs.cli.ContainerList(ctx, container.ListOptions{})
		if err != nil {
			return nil, engineErr("list containers", err)
		}
		for _, c := range list {
			for _, p := range c.Ports {
				if p.PublicPort != 0 {
					used[fmt.Sprintf("%d/%s", p.PublicPort, p.Type)] = true
				}
			}
		}
	}
	out := nat.PortMap{}
	for port, bs := range orig {
		for _, b := range bs {
			if b.HostPort != "" && (rs.remapPorts || used[b.HostPort+"/"+port.Proto()]) {
				why := "taken"
				if rs.remapPorts {
					why = "remapped as asked"
				}
				rs.say("port %s: host port %s %s; the engine picks a free one", port, b.HostPort, why)
				b.HostPort = ""
			}
			out[port] = append(out[port], b)
		}
	}
	return out, nil
}

// reportPorts tells which host ports a remapped container got.
func (rs *restoreSession) reportPorts(ctx context.Context, id string) error {
	remapped := false
	for _, msg := range rs.messages {
		if strings.HasPrefix(msg, "port ") {
			remapped = true
		}
	}
	if !remapped {
		return nil
	}
	c, err := rs.cli.ContainerInspect(ctx, id)
	if err != nil {
		return containerErr("inspect", rs.name, err)
	}
	if c.NetworkSettings == nil {
		return nil
	}
	ports := make([]string, 0, len(c.NetworkSettings.Ports))
	for p, bs := range c.NetworkSettings.Ports {
		for _, b := range bs {
			ports = append(ports, fmt.Sprintf("%s -> %s:%s", p, b.HostIP, b.HostPort))
		}
	}
	sort.Strings(ports)
	rs.say("published ports now: %s", strings.Join(ports, ", "))
	return nil
}

func isPortConflict(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")
}

// shortID is the 12-character form of an ID (without "sha256:").
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}
