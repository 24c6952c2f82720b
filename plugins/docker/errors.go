package docker

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/pypj/ptest-snap/pluginapi"
)

// ErrPermissionDenied is returned (wrapped together with
// pluginapi.ErrPermissionDenied, which crosses the plugin boundary) when
// the Docker engine's socket refuses this user, so the caller can tell it
// from an engine that is not running (pluginapi.ErrUnavailable).
var ErrPermissionDenied = errors.New("permission denied by the Docker engine")

// permissionAdvice ends the message of ErrPermissionDenied: only the
// plugin knows which socket refused and why, so the remedy travels in the
// message; the host's hint for the sentinel is generic.
const permissionAdvice = "this user may not open the engine's socket: add it to the docker group, or set DOCKER_HOST to a socket it may open"

// engineErr classifies an error from the Docker client: an unreachable
// engine becomes pluginapi.ErrUnavailable, a refused socket
// ErrPermissionDenied and pluginapi.ErrPermissionDenied; anything else is
// only given context.
func engineErr(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case isPermission(err):
		return fmt.Errorf("docker: %s: %w (%w): %v; %s", op, ErrPermissionDenied, pluginapi.ErrPermissionDenied, err, permissionAdvice)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("docker: %s: engine %w: %v", op, pluginapi.ErrUnavailable, err)
	}
	return fmt.Errorf("docker: %s: %w", op, err)
}

// containerErr is engineErr for a call naming a container: not found becomes
// pluginapi.ErrTargetNotFound.
func containerErr(op, target string, err error) error {
	if err != nil && cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: %s: container %q: %w", op, target, pluginapi.ErrTargetNotFound)
	}
	return engineErr(fmt.Sprintf("%s %q", op, target), err)
}

func isPermission(err error) bool {
	if errors.Is(err, fs.ErrPermission) {
		return true
	}
	// The client formats a refused socket as text, without wrapping the
	// syscall error.
	msg := err.Error()
	return strings.Contains(msg, "permission denied") && strings.Contains(msg, "connect")
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
