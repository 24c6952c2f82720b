package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// The tests run against the real Docker engine. The machine has no
// registry and no images: TestMain builds a static helper binary and a
// FROM-scratch image holding it. Every object a test makes is named with
// runPrefix and removed by the test.

var (
	// dockerErr says why the engine cannot be used; tests skip on it, or
	// fail when PTEST_SNAP_REQUIRE_DOCKER=1.
	dockerErr error
	testCli   *client.Client
	// baseImage is the test image: /bin/helper, /data/keep.txt,
	// /data/delete-me.txt.
	baseImage string
	helperBin string
	runPrefix string
	// extraImages are images TestMain removes at the end (benchmarks').
	extraImages []string

	// The engine is set up on first need, so fuzz workers (which run
	// TestMain too) do not build images.
	setupOnce sync.Once
	setupTmp  string
)

func TestMain(m *testing.M) {
	if path := os.Getenv(unprivilegedExecEnv); path != "" {
		os.Exit(execUnprivileged(path))
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var b [4]byte
	_, _ = rand.Read(b[:])
	// PTEST_SNAP_DOCKER_TEST_PREFIX names what a run creates on a shared
	// engine (default "ptest-snap-test-").
	prefix := os.Getenv("PTEST_SNAP_DOCKER_TEST_PREFIX")
	if prefix == "" {
		prefix = "ptest-snap-test-"
	}
	runPrefix = prefix + hex.EncodeToString(b[:]) + "-"
	tmp, err := os.MkdirTemp("", "ptest-snap-docker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	setupTmp = tmp
	code := m.Run()
	if testCli != nil && baseImage != "" {
		for _, img := range append(extraImages, baseImage) {
			_, _ = testCli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	}
	return code
}

func setupDocker(tmp string) error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine not reachable: %w", err)
	}
	testCli = cli
	helperBin = filepath.Join(tmp, "helper")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", helperBin, "./internal/testhelper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build test helper: %v\n%s", err, out)
	}
	helper, err := os.ReadFile(helperBin)
	if err != nil {
		return err
	}
	baseImage = runPrefix + "base:latest"
	return buildImage(ctx, baseImage, map[string][]byte{
		"helper":        helper,
		"keep.txt":      []byte("from the image\n"),
		"delete-me.txt": []byte("deleted by the test\n"),
	}, "FROM scratch\nCOPY helper /bin/helper\nCOPY keep.txt delete-me.txt /data/\nCMD [\"/bin/helper\", \"sleep\"]\n")
}

// buildImage builds an image from a Dockerfile and files, sent as a tar
// build context over the API (no registry needed for FROM scratch).
func buildImage(ctx context.Context, tag string, files map[string][]byte, dockerfile string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files["Dockerfile"] = []byte(dockerfile)
	for name, data := range files {
		mode := int64(0o644)
		if name == "helper" {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := testCli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := readJSONMessages(resp.Body, nil); err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	return nil
}

// needDocker skips (or fails, when PTEST_SNAP_REQUIRE_DOCKER=1) a test
// without an engine.
func needDocker(t testing.TB) {
	t.Helper()
	setupOnce.Do(func() { dockerErr = setupDocker(setupTmp) })
	if dockerErr == nil {
		return
	}
	if os.Getenv("PTEST_SNAP_REQUIRE_DOCKER") == "1" {
		t.Fatalf("PTEST_SNAP_REQUIRE_DOCKER=1 but: %v", dockerErr)
	}
	t.Skipf("no Docker engine: %v", dockerErr)
}

// uniqueName returns a fresh name for a test object.
func uniqueName(t testing.TB, kind string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return runPrefix + kind + "-" + hex.EncodeToString(b[:])
}

// cleaner removes what a test made, in an order the engine accepts:
// containers first (by name prefix: restores make names from the
// original's), then images, volumes and networks they used.
type cleaner struct {
	prefixes []string
	images   []string
	networks []string
}

// newCleaner registers the test's cleanup.
func newCleaner(t testing.TB) *cleaner {
	cl := &cleaner{}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, p := range cl.prefixes {
			list, err := testCli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", p))})
			if err != nil {
				t.Logf("cleanup: %v", err)
				continue
			}
			for _, c := range list {
				_ = testCli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			}
		}
		for _, id := range cl.images {
			_, _ = testCli.ImageRemove(ctx, id, image.RemoveOptions{Force: true, PruneChildren: true})
		}
		for _, p := range cl.prefixes {
			list, err := testCli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", p))})
			if err != nil {
				continue
			}
			for _, v := range list.Volumes {
				if strings.HasPrefix(v.Name, p) {
					_ = testCli.VolumeRemove(ctx, v.Name, true)
				}
			}
		}
		for _, n := range cl.networks {
			_ = testCli.NetworkRemove(ctx, n)
		}
	})
	return cl
}

// prefix marks containers and volumes named prefix* as the test's.
func (cl *cleaner) prefix(p string) { cl.prefixes = append(cl.prefixes, p) }

// image marks an image (a restore's loaded image) as the test's.
func (cl *cleaner) image(id string) { cl.images = append(cl.images, id) }

// network marks a network as the test's.
func (cl *cleaner) network(name string) { cl.networks = append(cl.networks, name) }

// freePort returns a TCP port nothing listens on right now.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", ":0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// execIn runs the helper in a running container and returns its output.
func execIn(t testing.TB, id string, args ...string) string {
	t.Helper()
	ctx := context.Background()
	ex, err := testCli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: append([]string{"/bin/helper"}, args...), AttachStdout: true, AttachStderr: true})
	require.NoError(t, err)
	att, err := testCli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	require.NoError(t, err)
	raw, err := io.ReadAll(att.Reader)
	att.Close()
	require.NoError(t, err)
	ins, err := testCli.ContainerExecInspect(ctx, ex.ID)
	require.NoError(t, err)
	require.Equal(t, 0, ins.ExitCode, "exec %v: %s", args, raw)
	return demux(raw)
}

// demux strips the 8-byte frame headers of a non-TTY attach stream.
func demux(raw []byte) string {
	var out bytes.Buffer
	for len(raw) >= 8 {
		n := int(raw[4])<<24 | int(raw[5])<<16 | int(raw[6])<<8 | int(raw[7])
		raw = raw[8:]
		n = min(n, len(raw))
		out.Write(raw[:n])
		raw = raw[n:]
	}
	return out.String()
}

// readFile reads one file from a container (running or not) through the
// archive API.
func readFile(t testing.TB, id, path string) (string, bool) {
	t.Helper()
	rc, _, err := testCli.CopyFromContainer(context.Background(), id, path)
	if err != nil {
		if isNotFound(err) {
			return "", false
		}
		require.NoError(t, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	_, err = tr.Next()
	require.NoError(t, err)
	b, err := io.ReadAll(tr)
	require.NoError(t, err)
	return string(b), true
}

// runContainer creates and starts a container from the base image.
func runContainer(t testing.TB, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig, start bool) string {
	t.Helper()
	ctx := context.Background()
	if cfg.Image == "" {
		cfg.Image = baseImage
	}
	resp, err := testCli.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	require.NoError(t, err)
	if start {
		require.NoError(t, testCli.ContainerStart(ctx, resp.ID, container.StartOptions{}))
	}
	return resp.ID
}

// captureOf captures target with the real engine into memory.
func captureOf(t testing.TB, e *Engine, target string, parent *capture, chunks *chunkSet, options map[string]string) *capture {
	t.Helper()
	c := &capture{}
	req := &pluginapi.CaptureRequest{Target: target, Options: options}
	if parent != nil {
		req.Parent = parent.index()
	}
	require.NoError(t, e.Capture(context.Background(), req, &memWriter{c: c, parent: parent, chunks: chunks}))
	return c
}

func metaOf(t testing.TB, c *capture) *Metadata {
	t.Helper()
	m, err := decodeMetadata(c.meta)
	require.NoError(t, err)
	return m
}

func waitExit(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	okc, errc := testCli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case <-okc:
	case err := <-errc:
		require.NoError(t, err)
	}
}

func filtersLabel(label string) filters.Args { return filters.NewArgs(filters.Arg("label", label)) }

// statPath returns the tar header the archive API gives for a path.
func statPath(t testing.TB, id, p string) *tar.Header {
	t.Helper()
	rc, _, err := testCli.CopyFromContainer(context.Background(), id, p)
	require.NoError(t, err)
	defer rc.Close()
	hdr, err := tar.NewReader(rc).Next()
	require.NoError(t, err)
	return hdr
}
