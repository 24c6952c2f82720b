package docker

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestEngineErrClassifies(t *testing.T) {
	// The client's text when the socket refuses the user.
	perm := errors.New("permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.41/containers/x/json\": dial unix /var/run/docker.sock: connect: permission denied")
	err := engineErr("inspect", perm)
	assert.ErrorIs(t, err, ErrPermissionDenied)
	assert.ErrorIs(t, err, pluginapi.ErrPermissionDenied)
	assert.NotErrorIs(t, err, pluginapi.ErrUnavailable)
	assert.Contains(t, err.Error(), permissionAdvice)

	err = engineErr("inspect", fmt.Errorf("open: %w", fs.ErrPermission))
	assert.ErrorIs(t, err, ErrPermissionDenied)

	err = engineErr("inspect", errors.New("no space left on device"))
	assert.NotErrorIs(t, err, pluginapi.ErrUnavailable)
	assert.NotErrorIs(t, err, ErrPermissionDenied)
	assert.NotErrorIs(t, err, pluginapi.ErrPermissionDenied)
	assert.Nil(t, engineErr("x", nil))
}
