package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// unprivilegedExecEnv, when set, makes the test binary a launcher instead:
// it drops root for unprivilegedID and executes the program the variable
// names (see TestMain). The host starts it as the engine, so the real
// plugin runs as a user the Docker socket (root:docker, 0660) refuses.
const unprivilegedExecEnv = "PTEST_SNAP_TEST_EXEC_UNPRIVILEGED"

// unprivilegedID is the uid and gid the plugin runs as: "nobody", in no
// group, so certainly not in the docker group.
const unprivilegedID = 65534

// execUnprivileged is the launcher: it gives the plugin's socket directory
// (made 0700 by the host, as root) to unprivilegedID so the plugin can
// listen in it, drops to that user with no supplementary groups, and
// executes path in place of itself, keeping the host's environment and
// descriptors (the body ring). It returns only on failure.
func execUnprivileged(path string) int {
	fail := func(step string, err error) int {
		fmt.Fprintf(os.Stderr, "unprivileged launcher: %s: %v\n", step, err)
		return 1
	}
	if dir := os.Getenv(plugin.EnvUnixSocketDir); dir != "" {
		if err := os.Chown(dir, unprivilegedID, unprivilegedID); err != nil {
			return fail("socket directory", err)
		}
	}
	// The kernel keeps the parent-death signal across exec only on the
	// thread that set it, and clears it when the uid changes.
	runtime.LockOSThread()
	if err := syscall.Setgroups(nil); err != nil {
		return fail("setgroups", err)
	}
	if err := syscall.Setgid(unprivilegedID); err != nil {
		return fail("setgid", err)
	}
	if err := syscall.Setuid(unprivilegedID); err != nil {
		return fail("setuid", err)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		return fail("parent-death signal", errno)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, unprivilegedExecEnv+"=") })
	return fail("exec", syscall.Exec(path, []string{path}, env))
}

// pluginBinary returns the engine's plugin binary: $PTEST_SNAP_BIN's (CI
// builds it there), or one built for the test.
func pluginBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(os.Getenv("PTEST_SNAP_BIN"), "ptest-snap-engine-docker")
	if _, err := os.Stat(bin); os.Getenv("PTEST_SNAP_BIN") != "" && err == nil {
		return bin
	}
	bin = filepath.Join(t.TempDir(), "ptest-snap-engine-docker")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/ptest-snap-engine-docker").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// deniedEngine returns the Spec of the real plugin set up so that the
// real engine's socket refuses it with EACCES. As root (CI), the plugin
// runs as unprivilegedID through the launcher above, against the socket
// the tests use. Any other user may well be in the docker group, so the
// plugin gets DOCKER_HOST naming that socket through a directory it may
// not search: the connect fails with the same EACCES.
func deniedEngine(t *testing.T) pluginapi.Spec {
	t.Helper()
	sock, ok := strings.CutPrefix(testCli.DaemonHost(), "unix://")
	if !ok {
		t.Fatalf("the Docker engine is at %s, not a unix socket: no permission to withhold", testCli.DaemonHost())
	}
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		require.NoError(t, os.Symlink(sock, filepath.Join(dir, "docker.sock")))
		require.NoError(t, os.Chmod(dir, 0))
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(dir, "docker.sock"))
		return pluginapi.Spec{Name: Name, Path: pluginBinary(t)}
	}
	// The plugin must be executable by the unprivileged user: a copy in a
	// directory anyone may enter.
	dir, err := os.MkdirTemp("", "ptest-snap-docker-perm-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "ptest-snap-engine-docker")
	copyFile(t, pluginBinary(t), bin, 0o755)
	self, err := os.Executable()
	require.NoError(t, err)
	t.Setenv(unprivilegedExecEnv, bin)
	return pluginapi.Spec{Name: Name, Path: self}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}

// TestDockerSocketPermissionDenied: the real plugin, refused by the real Docker
// engine's socket, says "permission denied" (pluginapi.ErrPermissionDenied for the
// host), not the "is the daemon running?" of an unreachable engine.
func TestDockerSocketPermissionDenied(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	host := pluginapi.NewHost(pluginapi.HostOptions{Stderr: os.Stderr})
	defer host.Close()
	p, err := host.Launch(ctx, deniedEngine(t))
	require.NoError(t, err)
	defer p.Close()

	check := func(op string, err error) {
		t.Helper()
		require.ErrorIs(t, err, pluginapi.ErrPermissionDenied, op)
		assert.NotErrorIs(t, err, pluginapi.ErrUnavailable, op)
		assert.Contains(t, err.Error(), ErrPermissionDenied.Error(), op)
		assert.Contains(t, err.Error(), "connect: permission denied", op)
		assert.Contains(t, err.Error(), permissionAdvice, op)
		assert.NotContains(t, err.Error(), "Cannot connect", op)
	}
	_, err = p.Identify(ctx, uniqueName(t, "denied"), nil)
	check("identify", err)
	err = p.Capture(ctx, &pluginapi.CaptureRequest{Target: uniqueName(t, "denied")}, &memWriter{c: &capture{}})
	check("capture", err)
}
