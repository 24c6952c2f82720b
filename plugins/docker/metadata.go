package docker

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/pypj/ptest-snap/pluginapi"
)

// MetadataVersion is the version of the metadata JSON this engine writes.
// Restore refuses a newer version with pluginapi.ErrUnsupported. Version 2
// adds the "image-base" stream (an engine of version 1 does not know it).
const MetadataVersion = 2

// Metadata is the engine's metadata JSON. DockerInfo is the summary the
// original report kept (plus what a reader wants to see); Config, HostConfig,
// Networks and Volumes are what a restore recreates the container from, in
// Docker's own JSON for the container parts so nothing is lost in
// translation.
type Metadata struct {
	SchemaVersion int        `json:"schema_version"`
	DockerInfo    DockerInfo `json:"docker_info"`
	// Image is the image captured in the "image" stream.
	Image ImageInfo `json:"image"`
	// Config and HostConfig are the container's, as inspected.
	Config     *container.Config     `json:"config"`
	HostConfig *container.HostConfig `json:"host_config"`
	// Networks the container is attached to, with each network's own
	// configuration so a missing one can be recreated.
	Networks []NetworkInfo `json:"networks"`
	// Volumes are the container's volume mounts; each has a stream
	// "volume:<name>".
	Volumes []VolumeInfo `json:"volumes"`
	// Mounts are all the container's mounts (bind, volume, tmpfs), as seen.
	Mounts []MountInfo `json:"mounts"`
	// Request holds the user-given configuration of the capture request.
	Request RequestInfo `json:"request"`
	// Server is the Docker engine that was captured from.
	Server ServerInfo `json:"server"`
}

// DockerInfo is the original report's docker_info, grown to everything a
// reader of `ptest-snap show` wants at a glance.
type DockerInfo struct {
	ContainerName string `json:"container_name"`
	ContainerID   string `json:"container_id"`
	// ImageName is the image the container was created from, as given.
	ImageName string `json:"image_name"`
	// ImageID is that image's ID.
	ImageID string `json:"image_id"`
	// SnapshotImage is the ID of the image captured: by default one
	// synthesized from the container's changes over its image, which no
	// engine has until a restore loads it; with "keep-image" (or when a
	// commit was needed) the commit of the container, possibly flattened,
	// removed from the engine after the capture unless "keep-image" is set.
	SnapshotImage  string            `json:"snapshot_image"`
	Cmd            []string          `json:"cmd"`
	Entrypoint     []string          `json:"entrypoint"`
	EnvVars        map[string]string `json:"env_vars"`
	WorkingDir     string            `json:"working_dir"`
	User           string            `json:"user"`
	Labels         map[string]string `json:"labels"`
	ExposedPorts   []string          `json:"exposed_ports"`
	PortMappings   []PortMapping     `json:"port_mappings"`
	Volumes        []string          `json:"volumes"`
	Networks       []string          `json:"networks"`
	ResourceLimits ResourceLimits    `json:"resource_limits"`
	RestartPolicy  RestartPolicy     `json:"restart_policy"`
	State          State             `json:"state"`
}

// PortMapping is one published port.
type PortMapping struct {
	ContainerPort string `json:"container_port"` // "8080/tcp"
	HostIP        string `json:"host_ip"`
	HostPort      string `json:"host_port"`
}

// ResourceLimits are the container's limits (0: unlimited).
type ResourceLimits struct {
	MemoryBytes     int64  `json:"memory_bytes"`
	MemorySwapBytes int64  `json:"memory_swap_bytes"`
	NanoCPUs        int64  `json:"nano_cpus"`
	CPUShares       int64  `json:"cpu_shares"`
	CPUQuota        int64  `json:"cpu_quota"`
	CPUPeriod       int64  `json:"cpu_period"`
	CpusetCpus      string `json:"cpuset_cpus"`
	PidsLimit       int64  `json:"pids_limit"`
}

// RestartPolicy is the container's restart policy.
type RestartPolicy struct {
	Name              string `json:"name"`
	MaximumRetryCount int    `json:"maximum_retry_count"`
}

// State is the container's state when captured.
type State struct {
	Status   string `json:"status"` // created, running, paused, exited, ...
	Running  bool   `json:"running"`
	Paused   bool   `json:"paused"`
	ExitCode int    `json:"exit_code"`
}

// ImageInfo describes the "image" stream.
type ImageInfo struct {
	ID string `json:"id"`
	// DiffIDs are the layers' diff IDs (sha256 of each layer tar), bottom
	// first.
	DiffIDs []string `json:"diff_ids"`
	// Flattened says the commit had more layers than the threshold and was
	// replaced by an export + import of the container (one layer).
	Flattened bool `json:"flattened"`
}

// NetworkInfo is one network the container is attached to.
type NetworkInfo struct {
	Name     string                    `json:"name"`
	ID       string                    `json:"id"`
	Driver   string                    `json:"driver"`
	Aliases  []string                  `json:"aliases"`
	Endpoint *network.EndpointSettings `json:"endpoint"`
	// Create is the network's own configuration; nil for the predefined
	// networks (bridge, host, none), which are never created.
	Create *network.CreateOptions `json:"create,omitempty"`
}

// VolumeInfo is one volume mount; its data is the stream "volume:<Name>".
type VolumeInfo struct {
	Name        string            `json:"name"`
	Destination string            `json:"destination"`
	Driver      string            `json:"driver"`
	RW          bool              `json:"rw"`
	Labels      map[string]string `json:"labels,omitempty"`
	Options     map[string]string `json:"options,omitempty"`
	// Root is the volume's root directory (not an entry of its stream).
	Root *RootAttrs `json:"root,omitempty"`
}

// RootAttrs are a directory's mode, owner and mtime.
type RootAttrs struct {
	Mode    uint32 `json:"mode"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	MtimeNs int64  `json:"mtime_ns"`
}

// MountInfo is one mount of any type, as inspected.
type MountInfo struct {
	Type        string `json:"type"`
	Name        string `json:"name,omitempty"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	RW          bool   `json:"rw"`
}

// RequestInfo is the user-given configuration of the capture request.
type RequestInfo struct {
	Env   map[string]string `json:"env,omitempty"`
	Ports []int             `json:"ports,omitempty"`
}

// ServerInfo names the Docker engine captured from.
type ServerInfo struct {
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
	// EngineID is the engine's ID, recorded when the container has host
	// access (see host_access.go).
	EngineID string `json:"engine_id,omitempty"`
}

// volumeStream is the stream name of a volume's data.
func volumeStream(name string) string { return "volume:" + name }

// imageStream is the stream name of the committed image.
const imageStream = "image"

// baseStream is the stream name of the committed image's base layers (see
// image_capture.go); it follows imageStream.
const baseStream = "image-base"

// encodeMetadata returns m as the engine's versioned metadata.
func encodeMetadata(m *Metadata) (pluginapi.Metadata, error) {
	m.SchemaVersion = MetadataVersion
	b, err := json.Marshal(m)
	if err != nil {
		return pluginapi.Metadata{}, fmt.Errorf("docker: encode metadata: %w", err)
	}
	return pluginapi.Metadata{Version: MetadataVersion, JSON: b}, nil
}

// decodeMetadata parses the metadata of a restore request.
func decodeMetadata(pm pluginapi.Metadata) (*Metadata, error) {
	if pm.Version > MetadataVersion {
		return nil, fmt.Errorf("docker: metadata version %d is newer than this engine's %d: %w", pm.Version, MetadataVersion, pluginapi.ErrUnsupported)
	}
	var m Metadata
	if err := json.Unmarshal(pm.JSON, &m); err != nil {
		return nil, fmt.Errorf("docker: decode metadata: %w", err)
	}
	if m.SchemaVersion > MetadataVersion {
		return nil, fmt.Errorf("docker: metadata schema %d is newer than this engine's %d: %w", m.SchemaVersion, MetadataVersion, pluginapi.ErrUnsupported)
	}
	if m.Config == nil || m.HostConfig == nil || m.Image.ID == "" {
		return nil, fmt.Errorf("docker: metadata lacks the container's config or image")
	}
	return &m, nil
}

// envMap turns KEY=value lines into a map.
func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// dockerInfo fills the summary from an inspected container.
func dockerInfo(c *container.InspectResponse) DockerInfo {
	cfg, hc := c.Config, c.HostConfig
	di := DockerInfo{
		ContainerName: strings.TrimPrefix(c.Name, "/"),
		ContainerID:   c.ID,
		ImageName:     cfg.Image,
		ImageID:       c.Image,
		Cmd:           cfg.Cmd,
		Entrypoint:    cfg.Entrypoint,
		EnvVars:       envMap(cfg.Env),
		WorkingDir:    cfg.WorkingDir,
		User:          cfg.User,
		Labels:        cfg.Labels,
	}
	for p := range cfg.ExposedPorts {
		di.ExposedPorts = append(di.ExposedPorts, string(p))
	}
	sort.Strings(di.ExposedPorts)
	for p, bindings := range hc.PortBindings {
		for _, b := range bindings {
			di.PortMappings = append(di.PortMappings, PortMapping{ContainerPort: string(p), HostIP: b.HostIP, HostPort: b.HostPort})
		}
	}
	sort.Slice(di.PortMappings, func(i, j int) bool {
		a, b := di.PortMappings[i], di.PortMappings[j]
		if a.ContainerPort != b.ContainerPort {
			return a.ContainerPort < b.ContainerPort
		}
		return a.HostIP+":"+a.HostPort < b.HostIP+":"+b.HostPort
	})
	for _, m := range c.Mounts {
		if m.Type == "volume" {
			di.Volumes = append(di.Volumes, m.Name+":"+m.Destination)
		}
	}
	if c.NetworkSettings != nil {
		for name := range c.NetworkSettings.Networks {
			di.Networks = append(di.Networks, name)
		}
		sort.Strings(di.Networks)
	}
	r := hc.Resources
	di.ResourceLimits = ResourceLimits{
		MemoryBytes: r.Memory, MemorySwapBytes: r.MemorySwap, NanoCPUs: r.NanoCPUs,
		CPUShares: r.CPUShares, CPUQuota: r.CPUQuota, CPUPeriod: r.CPUPeriod, CpusetCpus: r.CpusetCpus,
	}
	if r.PidsLimit != nil {
		di.ResourceLimits.PidsLimit = *r.PidsLimit
	}
	di.RestartPolicy = RestartPolicy{Name: string(hc.RestartPolicy.Name), MaximumRetryCount: hc.RestartPolicy.MaximumRetryCount}
	if c.State != nil {
		di.State = State{Status: c.State.Status, Running: c.State.Running, Paused: c.State.Paused, ExitCode: c.State.ExitCode}
	}
	return di
}
