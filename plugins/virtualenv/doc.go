// Package virtualenv is the ptest-snap engine for Python virtual
// environments (venv and virtualenv).
//
// Capture records what a venv is — its base interpreter, pyvenv.cfg, the
// installed distributions read from *.dist-info without running Python — as
// versioned JSON metadata, then every file, directory and symlink of the venv
// as one stream ("venv") through pluginapi/fstree. Restore checks that the
// base interpreter the snapshot needs is there with the same major.minor
// version, then either resets the venv in place (rewriting only what
// differs) or writes it to a new path, relocating it: the old prefix is
// rewritten in pyvenv.cfg, in the shebangs of bin/ scripts (both forms pip
// writes) and in the activate scripts. Compiled .pyc files are left alone:
// Python fixes co_filename on import.
package virtualenv
