// Package virtualenv is the ptest-snap engine for Python virtual
// environments (venv and virtualenv).
//
// Capture records what a venv is as versioned JSON metadata (VenvMetadata:
// the original report's virtualenv_info fields venv_path, python_path,
// pip_path, active and installed_packages, plus editable installs, the
// Python version and implementation, the base interpreter's path, realpath
// and version, every pyvenv.cfg key, and the user's env vars and ports),
// read without running Python: pyvenv.cfg and the headers of
// *.dist-info/METADATA. Then it sends every file, directory and symlink of
// the venv as one stream ("venv") through pluginapi/fstree, symlinks
// verbatim, honouring excludes, the parent's change index and IndexOnly.
//
// Restore first checks that the base interpreter the snapshot needs is
// here with the same major.minor version (by its identity when it is the
// very file captured, else by running it), or the one the option
// python=/path/to/python3.X names, and refuses with ErrUnavailable before
// writing anything. In place it rewrites only the entries the host did not
// mark Unchanged and deletes what the snapshot lacks, restoring modes and
// mtimes so .pyc caches stay valid. To another path it relocates the venv:
// the old prefix is rewritten in pyvenv.cfg, in the shebangs of bin/
// scripts (both forms pip writes, choosing the one pip would write for the
// new path) and in the activate scripts. Compiled .pyc files are left
// alone: Python fixes co_filename on import.
package virtualenv
