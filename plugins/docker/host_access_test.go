package docker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestHostAccessNamesWhatReachesTheHost(t *testing.T) {
	assert.Empty(t, hostAccess(&container.HostConfig{
		Binds:  []string{"named-vol:/data"},
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: "v", Target: "/v"}, {Type: mount.TypeTmpfs, Target: "/t"}},
	}))
	why := hostAccess(&container.HostConfig{
		Privileged:  true,
		Binds:       []string{"/etc:/host-etc:ro"},
		Mounts:      []mount.Mount{{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/s"}},
		CapAdd:      []string{"SYS_ADMIN"},
		NetworkMode: "host",
		PidMode:     "host",
	})
	assert.Equal(t, []string{
		"privileged", "bind mount of /etc", "bind mount of /var/run/docker.sock",
		"added capabilities SYS_ADMIN", "the host's network namespace", "the host's pid namespace",
	}, why)
}

// TestHostBindFromAnotherEngineIsRefused: a container with a host bind
// mount restores on the engine it was captured on; the same snapshot as if
// captured elsewhere is refused before anything is read, unless allowed.
func TestHostBindFromAnotherEngineIsRefused(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "hostbind")
	cl := newCleaner(t)
	cl.prefix(name)
	hostDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(hostDir, "h.txt"), []byte("on the host"), 0o644))
	id := runContainer(t, name, &container.Config{}, &container.HostConfig{Binds: []string{hostDir + ":/host"}}, nil, true)
	e := New()
	defer e.Close()
	c := captureOf(t, e, name, nil, nil, nil)
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	assert.NotEmpty(t, m.Server.EngineID)
	require.NoError(t, testCli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}))

	// As if captured on another engine.
	foreign := *m
	foreign.Server.EngineID = "ANOTHER:ENGINE"
	fm, err := encodeMetadata(&foreign)
	require.NoError(t, err)
	req := c.restoreRequest("")
	req.Metadata = fm
	rd := &reader{c: c}
	_, err = e.Restore(ctx, req, rd)
	require.ErrorIs(t, err, pluginapi.ErrUnsupported)
	assert.Contains(t, err.Error(), "bind mount of "+hostDir)
	assert.Contains(t, err.Error(), hostAccessOption+"=true")
	assert.Equal(t, 0, rd.i, "nothing is read before refusing")

	req.Options[hostAccessOption] = "true"
	res, err := e.Restore(ctx, req, &reader{c: c})
	require.NoError(t, err)
	got, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.Equal(t, "on the host", execIn(t, got.ID, "cat", "/host/h.txt"))
	require.NoError(t, testCli.ContainerRemove(ctx, got.ID, container.RemoveOptions{Force: true}))

	// Captured here: restored without the option.
	res, err = e.Restore(ctx, c.restoreRequest(""), &reader{c: c})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(res.Target, name))
}
