package virtualenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// pyvenvCfg is the parsed pyvenv.cfg: its keys in file order and their
// values. Python's site.py reads it as "key = value" lines, splitting at the
// first '=' and lower-casing nothing; so do we.
type pyvenvCfg struct {
	keys   []string
	values map[string]string
}

// parsePyvenvCfg parses the body of a pyvenv.cfg file.
func parsePyvenvCfg(data []byte) pyvenvCfg {
	cfg := pyvenvCfg{values: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		if key == "" {
			continue
		}
		if _, seen := cfg.values[key]; !seen {
			cfg.keys = append(cfg.keys, key)
		}
		cfg.values[key] = strings.TrimSpace(value)
	}
	return cfg
}

// readPyvenvCfg reads and parses venv/pyvenv.cfg.
func readPyvenvCfg(venv string) (pyvenvCfg, error) {
	data, err := os.ReadFile(venv + "/pyvenv.cfg")
	if err != nil {
		return pyvenvCfg{}, fmt.Errorf("read pyvenv.cfg: %w", err)
	}
	return parsePyvenvCfg(data), nil
}

// get returns the value of key, or "".
func (c pyvenvCfg) get(key string) string { return c.values[key] }

// version returns the Python version the venv was made for: "version"
// (venv), else "version_info" (virtualenv, e.g. "3.11.7.final.0") cut to
// major.minor.micro.
func (c pyvenvCfg) version() string {
	if v := c.values["version"]; v != "" {
		return v
	}
	if v := c.values["version_info"]; v != "" {
		parts := strings.Split(v, ".")
		if len(parts) > 3 {
			parts = parts[:3]
		}
		return strings.Join(parts, ".")
	}
	return ""
}

// majorMinor returns "X.Y" of a version string like "3.11.7", or "".
func majorMinor(version string) string {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return ""
	}
	return parts[0] + "." + parts[1]
}
