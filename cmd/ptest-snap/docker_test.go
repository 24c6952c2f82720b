package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// TestDockerEngineRefusedOrUnreachable: a Docker engine whose socket refuses
// the user (a real EACCES from the real engine's socket) and an engine that
// is not there fail with the engine's exit code and different messages,
// neither saying the other's.
func TestDockerEngineRefusedOrUnreachable(t *testing.T) {
	requireDocker(t)
	requireEngine(t, "docker")
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)

	c, cmd := deniedCLI(t, "create", "--engine", "docker", "ptest-snap-cli-denied-"+suffix)
	r := c.runCmd(cmd)
	require.Equal(t, exitEngine, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	requireCleanStderr(t, r.stderr)
	assert.Contains(t, r.stderr, "permission denied by the Docker engine")
	assert.Contains(t, r.stderr, "add it to the docker group")
	assert.Contains(t, r.stderr, "hint: the engine was refused access")
	assert.NotContains(t, r.stderr, "Is the docker daemon running")

	c = newCLI(t)
	c.env = append(c.env, "DOCKER_HOST=unix:///nonexistent/docker.sock")
	r = c.fails(exitEngine, "create", "--engine", "docker", "ptest-snap-cli-unreachable-"+suffix)
	assert.Contains(t, r.stderr, "Is the docker daemon running")
	assert.Contains(t, r.stderr, "hint: what the engine needs is not reachable")
	assert.NotContains(t, r.stderr, "permission denied")
}

// nobody is the uid and gid the CLI runs as to be refused by the Docker
// socket (root:docker, 0660): in no group, so not in the docker group.
const nobody = 65534

// deniedCLI returns a cli and its command for a run with args that the
// Docker engine's socket refuses. As root (CI), the run is as nobody, with
// copies of the binaries, the store, home and TMPDIR reachable by that
// user. Any other user may well be in the docker group, so its run gets
// DOCKER_HOST naming the engine's socket through a directory it may not
// search: the connect fails with the same EACCES.
func deniedCLI(t *testing.T, args ...string) (*cli, *exec.Cmd) {
	t.Helper()
	// The engine plugin's client reads DOCKER_HOST, else this default.
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		var ok bool
		if sock, ok = strings.CutPrefix(h, "unix://"); !ok {
			t.Fatalf("the Docker engine is at %s, not a unix socket: no permission to withhold", h)
		}
	}
	if os.Geteuid() != 0 {
		c := newCLI(t)
		dir := t.TempDir()
		require.NoError(t, os.Symlink(sock, filepath.Join(dir, "docker.sock")))
		require.NoError(t, os.Chmod(dir, 0))
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		c.env = append(c.env, "DOCKER_HOST=unix://"+filepath.Join(dir, "docker.sock"))
		return c, c.command(args...)
	}
	base, err := os.MkdirTemp("", "ptest-snap-cli-denied-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	// The CLI finds its engines next to itself.
	for _, name := range []string{"ptest-snap", "ptest-snap-engine-docker"} {
		body, err := os.ReadFile(filepath.Join(binDir, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(base, name), body, 0o755))
	}
	home := filepath.Join(base, "home")
	require.NoError(t, os.Mkdir(home, 0o700))
	require.NoError(t, os.Chown(home, nobody, nobody))
	c := &cli{t: t, store: filepath.Join(home, "store"), home: home, dir: home,
		env: []string{"TMPDIR=" + home, "DOCKER_HOST=unix://" + sock}}
	cmd := c.command(args...)
	cmd.Path = filepath.Join(base, "ptest-snap")
	cmd.Args[0] = cmd.Path
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	return c, cmd
}
