package docker

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// A container's host config can reach past the container: privileged mode,
// host directories mounted in, devices, added capabilities, relaxed
// security options, the host's namespaces. Recreating that from a snapshot
// is what the user ran before when the snapshot was captured on this very
// engine, but from a snapshot imported from elsewhere it would let whoever
// made the archive run a container with that access here. So a capture of
// such a container records the engine's ID (Metadata.Server.EngineID), and
// a restore of it on another engine (or of a snapshot without the record)
// is refused unless the option allow-host-access=true says to go ahead.
// The ID is not a secret: this guards against restoring a foreign snapshot
// by mistake, not against one forged for this engine.

// hostAccessOption is the restore option that allows it.
const hostAccessOption = "allow-host-access"

// hostAccess lists what in hc reaches the host, in words; nil if nothing.
func hostAccess(hc *container.HostConfig) []string {
	if hc == nil {
		return nil
	}
	var why []string
	if hc.Privileged {
		why = append(why, "privileged")
	}
	for _, b := range hc.Binds {
		if src, _, _ := strings.Cut(b, ":"); strings.HasPrefix(src, "/") {
			why = append(why, "bind mount of "+src)
		}
	}
	for _, m := range hc.Mounts {
		if m.Type == mount.TypeBind {
			why = append(why, "bind mount of "+m.Source)
		}
	}
	if len(hc.Devices) > 0 || len(hc.DeviceRequests) > 0 {
		why = append(why, "host devices")
	}
	if len(hc.CapAdd) > 0 {
		why = append(why, "added capabilities "+strings.Join(hc.CapAdd, ","))
	}
	if len(hc.SecurityOpt) > 0 {
		why = append(why, "security options "+strings.Join(hc.SecurityOpt, ","))
	}
	for _, ns := range []struct {
		name string
		host bool
	}{
		{"network", hc.NetworkMode.IsHost()},
		{"pid", hc.PidMode.IsHost()},
		{"ipc", hc.IpcMode.IsHost()},
		{"uts", hc.UTSMode.IsHost()},
		{"user", hc.UsernsMode.IsHost()},
		{"cgroup", hc.CgroupnsMode.IsHost()},
	} {
		if ns.host {
			why = append(why, "the host's "+ns.name+" namespace")
		}
	}
	return why
}

// engineID returns the Docker engine's ID.
func engineID(ctx context.Context, cli *client.Client) (string, error) {
	info, err := cli.Info(ctx)
	if err != nil {
		return "", engineErr("info", err)
	}
	return info.ID, nil
}

// checkHostAccess refuses to recreate a container with host access from a
// snapshot captured on another engine, unless allowed (see above).
func checkHostAccess(ctx context.Context, cli *client.Client, m *Metadata, options map[string]string) error {
	why := hostAccess(m.HostConfig)
	if len(why) == 0 {
		return nil
	}
	allow, err := boolOption(options, hostAccessOption)
	if err != nil || allow {
		return err
	}
	id, err := engineID(ctx, cli)
	if err != nil {
		return err
	}
	if m.Server.EngineID != "" && m.Server.EngineID == id {
		return nil
	}
	return fmt.Errorf("docker: the snapshot's container has host access (%s) and was not captured on this Docker engine; restore with the option %s=true to recreate it anyway: %w",
		strings.Join(why, "; "), hostAccessOption, pluginapi.ErrUnsupported)
}
