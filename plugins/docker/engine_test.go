package docker

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// fullContainer starts a container with everything a restore must bring
// back: changed and deleted image files, a named volume with data, env, an
// entrypoint and a command, a user, a published port, memory, CPU and pids
// limits, a label, a custom network.
type fullContainer struct {
	name, id, vol, net string
	port               int
	cl                 *cleaner
}

func startFullContainer(t *testing.T) *fullContainer {
	ctx := context.Background()
	fc := &fullContainer{name: uniqueName(t, "full"), port: freePort(t), cl: newCleaner(t)}
	fc.vol, fc.net = fc.name+"-vol", fc.name+"-net"
	fc.cl.prefix(fc.name)
	fc.cl.network(fc.net)
	_, err := testCli.NetworkCreate(ctx, fc.net, network.CreateOptions{Driver: "bridge", Labels: map[string]string{"purpose": "ptest-snap-test"}})
	require.NoError(t, err)
	_, err = testCli.VolumeCreate(ctx, volume.CreateOptions{Name: fc.vol, Labels: map[string]string{"purpose": "ptest-snap-test"}})
	require.NoError(t, err)
	fc.id = runContainer(t, fc.name,
		&container.Config{
			Entrypoint:   []string{"/bin/helper"},
			Cmd:          []string{"serve", ":8080"},
			User:         "0:0",
			Env:          []string{"GREETING=hello world", "EMPTY="},
			Labels:       map[string]string{"ptest-snap.test": "full"},
			ExposedPorts: nat.PortSet{"8080/tcp": {}},
			WorkingDir:   "/data",
		},
		&container.HostConfig{
			NetworkMode:   container.NetworkMode(fc.net),
			PortBindings:  nat.PortMap{"8080/tcp": {{HostPort: strconv.Itoa(fc.port)}}},
			Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: fc.vol, Target: "/vol"}},
			Resources:     container.Resources{Memory: 64 << 20, NanoCPUs: 5e8, PidsLimit: ptrTo(int64(64))},
			RestartPolicy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 2},
		},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{fc.net: {Aliases: []string{"svc"}}}},
		true)
	execIn(t, fc.id, "write", "/data/new.txt", "written in the container")
	execIn(t, fc.id, "rm", "/data/delete-me.txt")
	execIn(t, fc.id, "write", "/vol/sub/v.txt", "volume data")
	execIn(t, fc.id, "chown", "/vol", "1234", "4321")
	execIn(t, fc.id, "chmod", "/vol", "750")
	return fc
}

func TestCaptureRestoreFullContainer(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	fc := startFullContainer(t)
	e := New()
	defer e.Close()

	id, err := e.Identify(ctx, fc.name, nil)
	require.NoError(t, err)
	assert.Equal(t, fc.id, id.EnvID)
	assert.Equal(t, fc.name, id.Target)

	c := captureOf(t, e, fc.name, nil, nil, nil)
	m := metaOf(t, c)
	fc.cl.image(m.Image.ID)
	assert.Equal(t, []string{volumeStream(fc.vol), imageStream, baseStream}, c.streams)
	assert.Equal(t, fc.name, m.DockerInfo.ContainerName)
	assert.Equal(t, fc.id, m.DockerInfo.ContainerID)
	assert.Equal(t, baseImage, m.DockerInfo.ImageName)
	baseImg, err := testCli.ImageInspect(ctx, baseImage)
	require.NoError(t, err)
	assert.Equal(t, baseImg.ID, m.DockerInfo.ImageID)
	assert.Equal(t, "hello world", m.DockerInfo.EnvVars["GREETING"])
	assert.Equal(t, int64(64<<20), m.DockerInfo.ResourceLimits.MemoryBytes)
	assert.Equal(t, int64(5e8), m.DockerInfo.ResourceLimits.NanoCPUs)
	assert.Equal(t, int64(64), m.DockerInfo.ResourceLimits.PidsLimit)
	assert.Equal(t, []string{"/bin/helper"}, m.DockerInfo.Entrypoint)
	assert.Equal(t, []string{"serve", ":8080"}, m.DockerInfo.Cmd)
	assert.Equal(t, "0:0", m.DockerInfo.User)
	assert.Equal(t, "/data", m.DockerInfo.WorkingDir)
	assert.Equal(t, "full", m.DockerInfo.Labels["ptest-snap.test"])
	assert.Equal(t, "on-failure", m.DockerInfo.RestartPolicy.Name)
	assert.Equal(t, []PortMapping{{ContainerPort: "8080/tcp", HostPort: strconv.Itoa(fc.port)}}, m.DockerInfo.PortMappings)
	assert.True(t, m.DockerInfo.State.Running)
	assert.Equal(t, []string{fc.vol + ":/vol"}, m.DockerInfo.Volumes)
	require.Len(t, m.Networks, 1)
	assert.Equal(t, fc.net, m.Networks[0].Name)
	assert.Contains(t, m.Networks[0].Aliases, "svc")
	assert.Equal(t, "bridge", m.Networks[0].Driver)
	require.NotNil(t, m.Networks[0].Create)
	// The commit image was removed after the capture.
	_, err = testCli.ImageInspect(ctx, m.Image.ID)
	assert.True(t, isNotFound(err), "commit image left behind: %v", err)
	// The container runs again (unpaused).
	ins, err := testCli.ContainerInspect(ctx, fc.id)
	require.NoError(t, err)
	assert.True(t, ins.State.Running)
	assert.False(t, ins.State.Paused)

	// Remove everything, then restore.
	require.NoError(t, testCli.ContainerRemove(ctx, fc.id, container.RemoveOptions{Force: true}))
	require.NoError(t, testCli.VolumeRemove(ctx, fc.vol, true))
	require.NoError(t, testCli.NetworkRemove(ctx, fc.net))

	res, err := e.Restore(ctx, c.restoreRequest(""), &reader{c: c})
	require.NoError(t, err)
	t.Logf("restore messages: %q", res.Messages)
	assert.Equal(t, fc.name, res.Target)

	got, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.True(t, got.State.Running)
	assert.Equal(t, m.Config.Cmd, got.Config.Cmd)
	assert.Equal(t, []string{"/bin/helper"}, []string(got.Config.Entrypoint))
	assert.Equal(t, "0:0", got.Config.User)
	assert.Equal(t, m.Config.Env, got.Config.Env)
	assert.Equal(t, m.Config.Labels, got.Config.Labels)
	assert.Equal(t, "/data", got.Config.WorkingDir)
	assert.Equal(t, int64(64<<20), got.HostConfig.Memory)
	assert.Equal(t, int64(5e8), got.HostConfig.NanoCPUs)
	require.NotNil(t, got.HostConfig.PidsLimit)
	assert.Equal(t, int64(64), *got.HostConfig.PidsLimit)
	assert.Equal(t, container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 2}, got.HostConfig.RestartPolicy)
	assert.Equal(t, m.HostConfig.PortBindings, got.HostConfig.PortBindings)
	require.Contains(t, got.NetworkSettings.Networks, fc.net)
	assert.Contains(t, got.NetworkSettings.Networks[fc.net].Aliases, "svc")
	net, err := testCli.NetworkInspect(ctx, fc.net, network.InspectOptions{})
	require.NoError(t, err)
	assert.Equal(t, "ptest-snap-test", net.Labels["purpose"])

	// Files: changed, deleted, from the image, in the volume.
	assert.Equal(t, "written in the container", execIn(t, got.ID, "cat", "/data/new.txt"))
	assert.Equal(t, "from the image\n", execIn(t, got.ID, "cat", "/data/keep.txt"))
	_, ok := readFile(t, got.ID, "/data/delete-me.txt")
	assert.False(t, ok, "a file deleted before the capture came back")
	assert.Equal(t, "volume data", execIn(t, got.ID, "cat", "/vol/sub/v.txt"))
	// The volume's root keeps its owner and mode.
	root := statPath(t, got.ID, "/vol")
	assert.Equal(t, 1234, root.Uid)
	assert.Equal(t, 4321, root.Gid)
	assert.Equal(t, int64(0o750), root.Mode&0o7777)
	env := execIn(t, got.ID, "env")
	assert.Contains(t, env, "GREETING=hello world\n")
	vol, err := testCli.VolumeInspect(ctx, fc.vol)
	require.NoError(t, err)
	assert.Equal(t, "ptest-snap-test", vol.Labels["purpose"])

	// Ports are remapped when asked, even where the captured ones are
	// free (the restored container is stopped first), and the restore
	// says so.
	require.NoError(t, testCli.ContainerStop(ctx, got.ID, container.StopOptions{}))
	req := c.restoreRequest("")
	req.Options["name"] = fc.name + "-remapped"
	req.Options["remap-ports"] = "true"
	res, err = e.Restore(ctx, req, &reader{c: c})
	require.NoError(t, err)
	assert.Contains(t, strings.Join(res.Messages, "\n"), "remapped as asked")
	remapped, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.Equal(t, "", remapped.HostConfig.PortBindings["8080/tcp"][0].HostPort, "the engine picks the host port")
	require.NotEmpty(t, remapped.NetworkSettings.Ports["8080/tcp"])
}

func ptrTo[T any](v T) *T { return &v }

func TestRestoreWhileOriginalRuns(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	fc := startFullContainer(t)
	e := New()
	defer e.Close()
	c := captureOf(t, e, fc.id, nil, nil, nil)
	m := metaOf(t, c)
	fc.cl.image(m.Image.ID)

	rd := &reader{c: c}
	res, err := e.Restore(ctx, c.restoreRequest(""), rd)
	require.NoError(t, err)
	t.Logf("restore messages: %q", res.Messages)
	assert.Equal(t, fc.name+"-restored-1", res.Target)
	msgs := strings.Join(res.Messages, "\n")
	// The original's image is in the engine: the base layers are not read.
	assert.Contains(t, msgs, "not read")
	assert.Less(t, rd.i, len(c.entries))
	assert.Contains(t, msgs, "restored as")
	assert.Contains(t, msgs, "port 8080/tcp")
	assert.Contains(t, msgs, fc.vol+"-restored-1")

	got, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.True(t, got.State.Running)
	hostPort := got.NetworkSettings.Ports["8080/tcp"]
	require.NotEmpty(t, hostPort)
	assert.NotEqual(t, strconv.Itoa(fc.port), hostPort[0].HostPort)
	assert.Equal(t, "volume data", execIn(t, got.ID, "cat", "/vol/sub/v.txt"))
	// The original is untouched.
	orig, err := testCli.ContainerInspect(ctx, fc.id)
	require.NoError(t, err)
	assert.True(t, orig.State.Running)
	assert.Equal(t, strconv.Itoa(fc.port), orig.NetworkSettings.Ports["8080/tcp"][0].HostPort)

	// A name given as the "name" option (how the core passes --name).
	req := c.restoreRequest("")
	req.Options["name"] = fc.name + "-named"
	rd = &reader{c: c}
	res, err = e.Restore(ctx, req, rd)
	require.NoError(t, err)
	assert.Equal(t, fc.name+"-named", res.Target)
	// The first restore loaded the image: by default this one stops
	// reading at the image stream.
	assert.Contains(t, strings.Join(res.Messages, "\n"), "already in the engine")
	assert.Less(t, rd.i, len(c.entries))
	named, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.Equal(t, "written in the container", execIn(t, named.ID, "cat", "/data/new.txt"))
	assert.Contains(t, strings.Join(res.Messages, "\n"), fc.vol+"-restored-2")

	// An explicit name that exists is refused without Replace...
	_, err = e.Restore(ctx, c.restoreRequest(fc.name), &reader{c: c})
	assert.ErrorIs(t, err, pluginapi.ErrTargetExists)
	// ...and replaces the original with it.
	execIn(t, fc.id, "write", "/data/new.txt", "changed after the snapshot")
	execIn(t, fc.id, "write", "/vol/sub/v.txt", "changed after the snapshot")
	// (Loading the image although the engine has it, when asked to.)
	req = c.restoreRequest(fc.name)
	req.Replace = true
	req.Options["skip-present-image"] = "false"
	rd = &reader{c: c}
	res, err = e.Restore(ctx, req, rd)
	require.NoError(t, err)
	t.Logf("replace messages: %q", res.Messages)
	assert.Equal(t, len(c.entries), rd.i, "the whole stream is read")
	assert.Contains(t, strings.Join(res.Messages, "\n"), "loaded image")
	assert.NotContains(t, strings.Join(res.Messages, "\n"), "already in the engine")
	assert.Equal(t, fc.name, res.Target)
	got, err = testCli.ContainerInspect(ctx, fc.name)
	require.NoError(t, err)
	assert.NotEqual(t, fc.id, got.ID)
	assert.True(t, got.State.Running)
	assert.Equal(t, "written in the container", execIn(t, got.ID, "cat", "/data/new.txt"))
	assert.Equal(t, "volume data", execIn(t, got.ID, "cat", "/vol/sub/v.txt"))
	assert.Equal(t, strconv.Itoa(fc.port), got.NetworkSettings.Ports["8080/tcp"][0].HostPort)
}

func TestStoppedContainer(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "stopped")
	cl := newCleaner(t)
	cl.prefix(name)
	id := runContainer(t, name, &container.Config{Cmd: []string{"/bin/helper", "write", "/data/out.txt", "ran once"}, Labels: map[string]string{"k": "v"}}, nil, nil, true)
	waitExit(t, id)
	e := New()
	defer e.Close()
	c := captureOf(t, e, name, nil, nil, nil)
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	assert.False(t, m.DockerInfo.State.Running)
	assert.Equal(t, "exited", m.DockerInfo.State.Status)
	assert.Equal(t, 0, m.DockerInfo.State.ExitCode)
	assert.Equal(t, []string{imageStream, baseStream}, c.streams)

	require.NoError(t, testCli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}))
	res, err := e.Restore(ctx, c.restoreRequest(""), &reader{c: c})
	require.NoError(t, err)
	got, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.False(t, got.State.Running, "a stopped container must be restored stopped")
	assert.Equal(t, m.Config.Cmd, got.Config.Cmd)
	assert.Equal(t, "v", got.Config.Labels["k"])
	out, ok := readFile(t, got.ID, "/data/out.txt")
	assert.True(t, ok)
	assert.Equal(t, "ran once", out)

	// A container that failed: its exit code is in the metadata.
	failed := name + "-failed"
	id = runContainer(t, failed, &container.Config{Cmd: []string{"/bin/helper", "exit", "3"}}, nil, nil, true)
	waitExit(t, id)
	c = captureOf(t, e, failed, nil, nil, nil)
	m = metaOf(t, c)
	cl.image(m.Image.ID)
	assert.Equal(t, "exited", m.DockerInfo.State.Status)
	assert.Equal(t, 3, m.DockerInfo.State.ExitCode)
}

func TestSecondSnapshotStoresLittle(t *testing.T) {
	needDocker(t)
	name := uniqueName(t, "incr")
	cl := newCleaner(t)
	cl.prefix(name)
	id := runContainer(t, name, &container.Config{}, nil, nil, true)
	execIn(t, id, "random", "/data/big.bin", strconv.Itoa(4<<20), "1")
	e := New()
	defer e.Close()
	chunks := newChunkSet()

	c1 := captureOf(t, e, name, nil, chunks, nil)
	first := chunks.newBytes
	assert.Greater(t, first, int64(4<<20))

	// Unchanged container: every layer is marked Unchanged and not sent,
	// the container's own too (written from the same changes, it is the
	// same tar, so it has the same chain ID and name).
	c2 := captureOf(t, e, name, c1, chunks, nil)
	unchangedNew := chunks.newBytes - first
	unchanged, sent := c2.layerStats()
	t.Logf("first %d new bytes; unchanged container: sent %d, new %d, layers unchanged %d, sent %d", first, c2.sentBytes, unchangedNew, unchanged, sent)
	diffIDs := metaOf(t, c1).Image.DiffIDs
	assert.Equal(t, diffIDs, metaOf(t, c2).Image.DiffIDs)
	assert.Equal(t, len(diffIDs), unchanged, "every layer should be unchanged")
	assert.Equal(t, 0, sent)
	assert.Less(t, unchangedNew, int64(64<<10))

	// 256 KiB more: the top layer is new but mostly the same files.
	execIn(t, id, "random", "/data/more.bin", strconv.Itoa(256<<10), "2")
	before := chunks.newBytes
	c3 := captureOf(t, e, name, c2, chunks, nil)
	added := chunks.newBytes - before
	unchanged, sent = c3.layerStats()
	t.Logf("after a 256 KiB change: sent %d, new %d", c3.sentBytes, added)
	assert.Equal(t, len(diffIDs)-1, unchanged)
	assert.Equal(t, 1, sent)
	assert.Less(t, added, int64(256<<10+64<<10))

	// The replayed capture restores.
	ctx := context.Background()
	m := metaOf(t, c3)
	cl.image(m.Image.ID)
	res, err := e.Restore(ctx, c3.restoreRequest(""), &reader{c: c3})
	require.NoError(t, err)
	got, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.Equal(t, execIn(t, id, "cat", "/data/more.bin"), execIn(t, got.ID, "cat", "/data/more.bin"))
}

func TestFlattenKeepsLayerCountBounded(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "flat")
	cl := newCleaner(t)
	cl.prefix(name)
	runContainer(t, name, &container.Config{}, nil, nil, true)
	e := New()
	defer e.Close()
	opts := map[string]string{"flatten-layers": "2"}
	target := name
	for cycle := 0; cycle < 3; cycle++ {
		c := captureOf(t, e, target, nil, nil, opts)
		m := metaOf(t, c)
		cl.image(m.Image.ID)
		t.Logf("cycle %d: %d layers, flattened %v", cycle, len(m.Image.DiffIDs), m.Image.Flattened)
		assert.LessOrEqual(t, len(m.Image.DiffIDs), 2)
		if cycle == 1 {
			assert.True(t, m.Image.Flattened, "the second cycle commits 3 layers and must flatten")
		}
		res, err := e.Restore(ctx, c.restoreRequest(""), &reader{c: c})
		require.NoError(t, err)
		target = res.Target
		got, err := testCli.ContainerInspect(ctx, target)
		require.NoError(t, err)
		assert.True(t, got.State.Running)
		assert.Equal(t, "from the image\n", execIn(t, got.ID, "cat", "/data/keep.txt"))
		execIn(t, got.ID, "write", fmt.Sprintf("/data/cycle-%d", cycle), "x")
	}
}

func TestMissingContainer(t *testing.T) {
	needDocker(t)
	e := New()
	defer e.Close()
	name := uniqueName(t, "absent")
	_, err := e.Identify(context.Background(), name, nil)
	assert.ErrorIs(t, err, pluginapi.ErrTargetNotFound)
	err = e.Capture(context.Background(), &pluginapi.CaptureRequest{Target: name}, &memWriter{c: &capture{}})
	assert.ErrorIs(t, err, pluginapi.ErrTargetNotFound)
}

func TestEngineUnreachable(t *testing.T) {
	e := NewWithOptions(Options{ClientOpts: []client.Opt{client.WithHost("unix:///nonexistent/docker.sock"), client.WithAPIVersionNegotiation()}})
	defer e.Close()
	_, err := e.Identify(context.Background(), "anything", nil)
	require.ErrorIs(t, err, pluginapi.ErrUnavailable)
	assert.NotErrorIs(t, err, ErrPermissionDenied)
	assert.NotErrorIs(t, err, pluginapi.ErrPermissionDenied)
	err = e.Capture(context.Background(), &pluginapi.CaptureRequest{Target: "anything"}, &memWriter{c: &capture{}})
	assert.ErrorIs(t, err, pluginapi.ErrUnavailable)
}

func TestEngineUnreachableFromEnv(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent")
	e := New()
	defer e.Close()
	_, err := e.Identify(context.Background(), "anything", nil)
	assert.ErrorIs(t, err, pluginapi.ErrUnavailable)
}

// TestRestoreWithoutOriginalImage: when the container's image is gone from
// the engine, a restore reads the "image-base" stream and loads every layer.
func TestRestoreWithoutOriginalImage(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "noorig")
	cl := newCleaner(t)
	cl.prefix(name)
	img := name + "-img:latest"
	cl.image(img)
	helper, err := os.ReadFile(helperBin)
	require.NoError(t, err)
	require.NoError(t, buildImage(ctx, img, map[string][]byte{"helper": helper, "own.txt": []byte("own layer\n")},
		"FROM scratch\nCOPY helper /bin/helper\nCOPY own.txt /data/\nCMD [\"/bin/helper\", \"sleep\"]\n"))
	id := runContainer(t, name, &container.Config{Image: img}, nil, nil, true)
	execIn(t, id, "write", "/data/new.txt", "written in the container")
	e := New()
	defer e.Close()
	c := captureOf(t, e, name, nil, nil, nil)
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	assert.Equal(t, []string{imageStream, baseStream}, c.streams)

	require.NoError(t, testCli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}))
	_, err = testCli.ImageRemove(ctx, img, image.RemoveOptions{PruneChildren: true})
	require.NoError(t, err)
	rd := &reader{c: c}
	res, err := e.Restore(ctx, c.restoreRequest(""), rd)
	require.NoError(t, err)
	t.Logf("restore messages: %q", res.Messages)
	assert.Equal(t, len(c.entries), rd.i, "the whole stream is read")
	assert.NotContains(t, strings.Join(res.Messages, "\n"), "not read")
	got, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.Equal(t, "own layer\n", execIn(t, got.ID, "cat", "/data/own.txt"))
	assert.Equal(t, "written in the container", execIn(t, got.ID, "cat", "/data/new.txt"))
}
