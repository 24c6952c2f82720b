package virtualenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pypj/ptest-snap/pluginapi"
)

// probeTimeout bounds running an interpreter to ask its version.
const probeTimeout = 30 * time.Second

// describeBase finds the venv's base interpreter from pyvenv.cfg and
// bin/python and records its identity. It runs the interpreter only when
// pyvenv.cfg does not say the version.
func describeBase(venv string, cfg pyvenvCfg) (BaseInterpreter, string, error) {
	base := BaseInterpreter{Home: cfg.get("home")}
	switch {
	case cfg.get("executable") != "":
		base.Path = cfg.get("executable")
	case cfg.get("base-executable") != "":
		base.Path = cfg.get("base-executable")
	}
	if base.Path == "" {
		// Follow bin/python's links until they leave the venv.
		p := filepath.Join(venv, "bin", "python")
		for i := 0; i < 16; i++ {
			t, err := os.Readlink(p)
			if err != nil {
				break
			}
			if !filepath.IsAbs(t) {
				t = filepath.Join(filepath.Dir(p), t)
			}
			p = t
			if !underPrefix(p, venv) {
				base.Path = p
				break
			}
		}
	}
	if base.Path == "" && base.Home != "" {
		for _, name := range []string{"python3", "python"} {
			if _, err := os.Stat(filepath.Join(base.Home, name)); err == nil {
				base.Path = filepath.Join(base.Home, name)
				break
			}
		}
	}
	if base.Path == "" {
		return base, "", fmt.Errorf("%w: %s: cannot tell the base interpreter (pyvenv.cfg has no home or executable, bin/python is not a link)",
			pluginapi.ErrInvalidTarget, venv)
	}
	if real, err := filepath.EvalSymlinks(base.Path); err == nil {
		base.Realpath = real
		if fi, err := os.Stat(real); err == nil {
			base.Size, base.MtimeNs = fi.Size(), fi.ModTime().UnixNano()
		}
	}
	base.Version = cfg.version()
	impl := cfg.get("implementation")
	if base.Version == "" {
		v, probedImpl, err := probeInterpreter(context.Background(), base.Path)
		if err != nil {
			return base, "", fmt.Errorf("%w: %s: pyvenv.cfg has no version and the base interpreter cannot tell: %v",
				pluginapi.ErrInvalidTarget, venv, err)
		}
		base.Version = v
		if impl == "" {
			impl = probedImpl
		}
	}
	if impl == "" {
		impl = "CPython"
		if strings.Contains(strings.ToLower(filepath.Base(base.Realpath+base.Path)), "pypy") {
			impl = "PyPy"
		}
	}
	return base, impl, nil
}

// probeInterpreter runs python and returns its version ("3.11.7") and
// implementation ("CPython").
func probeInterpreter(ctx context.Context, python string) (version, impl string, err error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-I", "-S", "-c",
		`import sys,platform;print("%d.%d.%d" % sys.version_info[:3], platform.python_implementation())`)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return "", "", fmt.Errorf("run %s: %v: %s", python, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", "", fmt.Errorf("run %s: %w", python, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 2 {
		return "", "", fmt.Errorf("run %s: unexpected output %q", python, out)
	}
	return fields[0], fields[1], nil
}

// resolveInterpreter checks, before a restore writes anything, that the
// interpreter the snapshot needs is here with the same major.minor version.
// With option python=/path it checks that one instead and returns it as the
// new base (home = its directory). The result is the relocation's
// interpreter half, with the new interpreter's version when it is another
// one ("" otherwise).
func resolveInterpreter(ctx context.Context, m *VenvMetadata, options map[string]string) (exe, home, version string, err error) {
	want := majorMinor(m.PythonVersion)
	if p := options["python"]; p != "" {
		if !filepath.IsAbs(p) {
			abs, err := exec.LookPath(p)
			if err != nil {
				return "", "", "", fmt.Errorf("%w: interpreter %q given by option python= not found: %v", pluginapi.ErrUnavailable, p, err)
			}
			p, _ = filepath.Abs(abs)
		}
		if _, err := os.Stat(p); err != nil {
			return "", "", "", fmt.Errorf("%w: interpreter %s given by option python= not found", pluginapi.ErrUnavailable, p)
		}
		v, _, err := probeInterpreter(ctx, p)
		if err != nil {
			return "", "", "", fmt.Errorf("%w: interpreter %s given by option python=: %v", pluginapi.ErrUnavailable, p, err)
		}
		if majorMinor(v) != want {
			return "", "", "", fmt.Errorf("%w: interpreter %s given by option python= is Python %s; the snapshot needs Python %s",
				pluginapi.ErrUnavailable, p, v, want)
		}
		if p == m.BaseInterpreter.Path {
			return m.BaseInterpreter.Path, m.BaseInterpreter.Home, "", nil
		}
		return p, filepath.Dir(p), v, nil
	}
	b := m.BaseInterpreter
	hint := fmt.Sprintf("install Python %s there, or pass the option python=/path/to/python%s", m.PythonVersion, want)
	real, err := filepath.EvalSymlinks(b.Path)
	if err != nil {
		return "", "", "", fmt.Errorf("%w: the snapshot's base interpreter %s (Python %s) is missing: %s",
			pluginapi.ErrUnavailable, b.Path, m.PythonVersion, hint)
	}
	if fi, err := os.Stat(real); err == nil && real == b.Realpath && fi.Size() == b.Size && fi.ModTime().UnixNano() == b.MtimeNs && b.Size > 0 {
		return b.Path, b.Home, "", nil // the very file captured: no need to run it
	}
	v, _, err := probeInterpreter(ctx, b.Path)
	if err != nil {
		return "", "", "", fmt.Errorf("%w: the snapshot's base interpreter %s (Python %s) does not run: %v; %s",
			pluginapi.ErrUnavailable, b.Path, m.PythonVersion, err, hint)
	}
	if majorMinor(v) != want {
		return "", "", "", fmt.Errorf("%w: the snapshot's base interpreter %s is now Python %s; the snapshot needs Python %s: %s",
			pluginapi.ErrUnavailable, b.Path, v, want, hint)
	}
	return b.Path, b.Home, "", nil
}
