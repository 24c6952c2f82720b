package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireDocker skips the test when no Docker engine answers, unless
// PTEST_SNAP_REQUIRE_DOCKER=1 (CI), where that is a failure.
func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		if os.Getenv("PTEST_SNAP_REQUIRE_DOCKER") == "1" {
			t.Fatalf("PTEST_SNAP_REQUIRE_DOCKER=1 but the Docker engine is not reachable: %v\n%s", err, out)
		}
		t.Skipf("no Docker engine: %v", err)
	}
}

// docker runs the docker CLI and returns its trimmed output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	require.NoError(t, err, "docker %s: %s", strings.Join(args, " "), out)
	return strings.TrimSpace(string(out))
}

// busyboxImage imports a one-layer image holding the static busybox (no
// registry is reachable) and returns its tag.
func busyboxImage(t *testing.T, tag string) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		if os.Getenv("PTEST_SNAP_REQUIRE_DOCKER") == "1" {
			t.Fatalf("busybox (busybox-static) is needed to build the test image")
		}
		t.Skip("busybox-static is not installed")
	}
	body, err := os.ReadFile(bb)
	require.NoError(t, err)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "tmp/", "data/"} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}))
	}
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(body))}))
	_, err = tw.Write(body)
	require.NoError(t, err)
	for _, l := range []string{"sh", "cat", "sleep", "echo"} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bin/" + l, Typeflag: tar.TypeSymlink, Linkname: "busybox"}))
	}
	require.NoError(t, tw.Close())
	cmd := exec.Command("docker", "import", "-", tag)
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "docker import: %s", out)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
}

// TestDockerSnapshotAndRestoreAsNewContainer snapshots a running container
// through the CLI, removes it, and restores it as a new container with the
// same files and environment.
func TestDockerSnapshotAndRestoreAsNewContainer(t *testing.T) {
	requireDocker(t)
	requireEngine(t, "docker")
	c := newCLI(t)
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	image := "ptest-snap-cli-test:" + suffix
	name, restored := "ptest-snap-cli-"+suffix, "ptest-snap-cli-restored-"+suffix
	busyboxImage(t, image)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name, restored).Run() })

	docker(t, "run", "-d", "--name", name, "-e", "GREETING=hello", "--label", "suite=cli", image,
		"/bin/sh", "-c", "echo written-at-runtime > /data/state.txt; exec sleep 3600")
	require.Eventually(t, func() bool {
		out, err := exec.Command("docker", "exec", name, "cat", "/data/state.txt").Output()
		return err == nil && strings.TrimSpace(string(out)) == "written-at-runtime"
	}, 30*time.Second, 100*time.Millisecond)

	var s snapshotJSON
	c.jsonOK(&s, "create", "--engine", "docker", "--name", "web", "--port", "8080", name)
	assert.Equal(t, "docker", s.Engine)
	assert.NotEmpty(t, s.Streams)

	// export --json shows the original report's docker_info.
	r := c.ok("export", "--json", "web")
	assert.Contains(t, r.stdout, "docker_info")

	docker(t, "rm", "-f", name)
	var rj restoreJSON
	c.jsonOK(&rj, "restore", "web", "--name", restored)
	// The restore loaded the snapshot's image (untagged): remove it with
	// the container, so the suite leaves the engine as it found it.
	loaded := docker(t, "inspect", "--format", "{{.Image}}", restored)
	t.Cleanup(func() {
		_ = exec.Command("docker", "rm", "-f", restored).Run()
		_ = exec.Command("docker", "rmi", "-f", loaded).Run()
	})
	assert.Equal(t, s.ID, rj.SnapshotID)
	assert.Equal(t, "written-at-runtime", docker(t, "exec", restored, "cat", "/data/state.txt"))
	assert.Contains(t, docker(t, "inspect", "--format", "{{.Config.Env}}", restored), "GREETING=hello")
	assert.Equal(t, "cli", docker(t, "inspect", "--format", `{{index .Config.Labels "suite"}}`, restored))

	// Restoring again under the same name is refused unless --replace.
	c.fails(exitFailure, "restore", "web", "--name", restored)
	c.ok("restore", "web", "--name", restored, "--replace")
	assert.Equal(t, "written-at-runtime", docker(t, "exec", restored, "cat", "/data/state.txt"))

	// An in-place restore is not something containers do: a clear engine error.
	r = c.fails(exitEngine, "restore", "web", "--in-place")
	assert.Contains(t, r.stderr, "in place")

	// A container that does not exist.
	c.fails(exitNotFound, "create", "--engine", "docker", "no-such-container-"+suffix)
}
