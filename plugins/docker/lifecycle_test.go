package docker

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// failingWriter collects a capture but fails (or cancels the capture's
// context) at the first entry of the named stream, to check that a running
// container is unpaused on every way out.
type failingWriter struct {
	memWriter
	stream string
	cancel context.CancelFunc
	// paused records whether the container was paused when it failed.
	check func()
}

var errWriterFailed = errors.New("host refused the entry")

func (w *failingWriter) WriteEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if w.cur == w.stream {
		if w.check != nil {
			w.check()
		}
		if w.cancel != nil {
			w.cancel()
			<-ctx.Done()
			return ctx.Err()
		}
		return errWriterFailed
	}
	return w.memWriter.WriteEntry(ctx, e, body)
}

func TestCaptureUnpausesOnEveryPath(t *testing.T) {
	needDocker(t)
	name := uniqueName(t, "pause")
	cl := newCleaner(t)
	cl.prefix(name)
	id := runContainer(t, name, &container.Config{},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: name + "-vol", Target: "/vol"}}}, nil, true)
	execIn(t, id, "write", "/vol/a", "a")
	e := New()
	defer e.Close()
	state := func() *container.State {
		c, err := testCli.ContainerInspect(context.Background(), id)
		require.NoError(t, err)
		return c.State
	}

	for _, tc := range []struct {
		name   string
		stream string
		cancel bool
		// paused while the stream is read; if not, the unpause (which runs
		// beside the image's streams) must end while the capture still
		// waits in this stream, not once it returns.
		paused bool
	}{
		{"volume fails", volumeStream(name + "-vol"), false, true},
		{"volume cancelled", volumeStream(name + "-vol"), true, true},
		{"image fails", imageStream, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &failingWriter{memWriter: memWriter{c: &capture{}}, stream: tc.stream}
			w.check = func() {
				if tc.paused {
					assert.True(t, state().Paused, "not paused while reading %s", tc.stream)
					return
				}
				assert.Eventually(t, func() bool { return !state().Paused }, 30*time.Second, 10*time.Millisecond, "paused while reading %s", tc.stream)
			}
			if tc.cancel {
				w.cancel = cancel
			}
			err := e.Capture(ctx, &pluginapi.CaptureRequest{Target: name}, w)
			require.Error(t, err)
			if tc.cancel {
				assert.ErrorIs(t, err, context.Canceled)
			} else {
				assert.ErrorIs(t, err, errWriterFailed)
			}
			st := state()
			assert.True(t, st.Running)
			assert.False(t, st.Paused, "capture left the container paused")
		})
	}
}

func TestPausedContainerStaysPaused(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "paused")
	cl := newCleaner(t)
	cl.prefix(name)
	id := runContainer(t, name, &container.Config{}, nil, nil, true)
	require.NoError(t, testCli.ContainerPause(ctx, id))
	e := New()
	defer e.Close()
	c := captureOf(t, e, name, nil, nil, nil)
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	assert.True(t, m.DockerInfo.State.Paused)
	got, err := testCli.ContainerInspect(ctx, id)
	require.NoError(t, err)
	assert.True(t, got.State.Paused, "a container the user paused must stay paused")

	res, err := e.Restore(ctx, c.restoreRequest(name+"-copy"), &reader{c: c})
	require.NoError(t, err)
	got, err = testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.True(t, got.State.Paused)
	require.NoError(t, testCli.ContainerUnpause(ctx, got.ID))
}

// TestThroughPlugin runs the engine as the host does: the real plugin
// binary, launched over go-plugin, with errors crossing the gRPC boundary.
func TestThroughPlugin(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	bin := pluginBinary(t)
	host := pluginapi.NewHost(pluginapi.HostOptions{Stderr: os.Stderr})
	defer host.Close()
	p, err := host.Launch(ctx, pluginapi.Spec{Name: Name, Path: bin})
	require.NoError(t, err)
	info, err := p.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, Name, info.Name)
	assert.True(t, info.Has(pluginapi.CapParentIndex))

	_, err = p.Identify(ctx, uniqueName(t, "absent"), nil)
	assert.ErrorIs(t, err, pluginapi.ErrTargetNotFound)

	name := uniqueName(t, "plugin")
	cl := newCleaner(t)
	cl.prefix(name)
	id := runContainer(t, name, &container.Config{Env: []string{"A=1"}},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: name + "-vol", Target: "/vol"}}}, nil, true)
	execIn(t, id, "write", "/vol/d/f", "through the plugin")
	// More than the shared body ring holds (16 MiB), for the early end below.
	execIn(t, id, "random", "/data/r.bin", "24000000", "7")
	c := &capture{}
	require.NoError(t, p.Capture(ctx, &pluginapi.CaptureRequest{Target: name}, &memWriter{c: c}))
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	c2 := &capture{}
	require.NoError(t, p.Capture(ctx, &pluginapi.CaptureRequest{Target: name, Parent: c.index()}, &memWriter{c: c2, parent: c}))
	// The container did not change: every layer, its own too, is Unchanged.
	unchanged, sent := c2.layerStats()
	assert.Equal(t, len(m.Image.DiffIDs), unchanged)
	assert.Equal(t, 0, sent)
	cl.image(metaOf(t, c2).Image.ID)

	res, err := p.Restore(ctx, c2.restoreRequest(""), &reader{c: c2})
	require.NoError(t, err)
	got, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.Contains(t, got.Config.Env, "A=1")
	assert.Equal(t, "through the plugin", execIn(t, got.ID, "cat", "/vol/d/f"))
	assert.Equal(t, execIn(t, id, "cat", "/data/r.bin"), execIn(t, got.ID, "cat", "/data/r.bin"))

	// Again, with the image now in the engine: by default the engine ends
	// the call at the image's first entry and the host, with more left to
	// send than the ring holds, stops and takes its answer. (The timeout
	// turns a regression into a failure rather than a hung test.)
	rd := &reader{c: c2}
	early, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err = p.Restore(early, c2.restoreRequest(""), rd)
	require.NoError(t, early.Err())
	require.NoError(t, err)
	assert.Contains(t, strings.Join(res.Messages, "\n"), "already in the engine")
	got, err = testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.True(t, got.State.Running)
	assert.Equal(t, "through the plugin", execIn(t, got.ID, "cat", "/vol/d/f"))
}

// TestVolumeMountedTwiceReadOnly: a volume mounted read-write and again
// read-only is captured once and filled through a helper container.
func TestVolumeMountedTwiceReadOnly(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "rovol")
	cl := newCleaner(t)
	cl.prefix(name)
	vol := name + "-vol"
	id := runContainer(t, name, &container.Config{}, &container.HostConfig{Mounts: []mount.Mount{
		{Type: mount.TypeVolume, Source: vol, Target: "/vol"},
		{Type: mount.TypeVolume, Source: vol, Target: "/ro", ReadOnly: true},
	}}, nil, true)
	execIn(t, id, "write", "/vol/f", "shared")
	execIn(t, id, "chmod", "/vol", "700")
	e := New()
	defer e.Close()
	c := captureOf(t, e, name, nil, nil, nil)
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	assert.Equal(t, []string{volumeStream(vol), imageStream, baseStream}, c.streams)
	require.NoError(t, testCli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}))
	require.NoError(t, testCli.VolumeRemove(ctx, vol, true))

	res, err := e.Restore(ctx, c.restoreRequest(""), &reader{c: c})
	require.NoError(t, err)
	got, err := testCli.ContainerInspect(ctx, res.Target)
	require.NoError(t, err)
	assert.Equal(t, "shared", execIn(t, got.ID, "cat", "/ro/f"))
	assert.Equal(t, "shared", execIn(t, got.ID, "cat", "/vol/f"))
	assert.Equal(t, int64(0o700), statPath(t, got.ID, "/vol").Mode&0o7777)
	for _, mt := range got.Mounts {
		assert.Equal(t, vol, mt.Name)
		assert.Equal(t, mt.Destination == "/vol", mt.RW, mt.Destination)
	}
	// No helper container is left behind.
	list, err := testCli.ContainerList(ctx, container.ListOptions{All: true, Filters: filtersLabel("ptest-snap.helper")})
	require.NoError(t, err)
	assert.Empty(t, list)
}
