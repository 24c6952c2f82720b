package fstree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pypj/ptest-snap/pluginapi"
)

// RealDir returns the absolute real path (symlinks resolved) of the
// directory target: the identity a file engine gives an environment, so the
// same directory reached through a symlink is the same environment. what
// names the target in errors ("directory", "virtualenv path"). A missing
// target wraps pluginapi.ErrTargetNotFound; an empty one, or anything that is
// not a directory, wraps pluginapi.ErrInvalidTarget.
func RealDir(target, what string) (string, error) {
	if target == "" {
		return "", fmt.Errorf("%w: no %s given", pluginapi.ErrInvalidTarget, what)
	}
	abs, err := filepath.Abs(target)
	if err != nil {
		return "", fmt.Errorf("%w: %s %s: %v", pluginapi.ErrInvalidTarget, what, target, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s %s: no such directory", pluginapi.ErrTargetNotFound, what, abs)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s %s: %v", pluginapi.ErrInvalidTarget, what, abs, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%w: %s %s: %v", pluginapi.ErrInvalidTarget, what, abs, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: %s %s: not a directory", pluginapi.ErrInvalidTarget, what, abs)
	}
	return real, nil
}
