package virtualenv

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pypj/ptest-snap/pluginapi"
)

// FuzzRewriteScript: relocating any bytes never panics, and relocating a
// script pip wrote there and back gives the same script.
func FuzzRewriteScript(f *testing.F) {
	f.Add("/a/venv", "/b/with space", "", "import sys\n", []byte("#!/a/venv/bin/python3\nx"))
	f.Add("/a/venv", "/"+strings.Repeat("l", 130), " -E", "", []byte("#!/bin/sh\n'''exec' \"/a/venv/bin/python\" \"$0\" \"$@\"\n' '''\n"))
	f.Add("/x", "/y", "", "\r\n", []byte("#!\n"))
	f.Fuzz(func(t *testing.T, oldPrefix, newPrefix, post, body string, raw []byte) {
		if !validPrefix(oldPrefix) || !validPrefix(newPrefix) {
			return
		}
		r := relocation{oldPrefix: oldPrefix, newPrefix: newPrefix}
		r.rewriteFile("bin/tool", raw)
		r.rewriteFile("bin/activate", raw)
		r.rewriteFile("pyvenv.cfg", raw)
		if strings.ContainsAny(post, "\n\r\"") || post != "" && !strings.HasPrefix(post, " ") ||
			strings.HasPrefix(post, ` "$0"`) || strings.HasSuffix(post, ` "$0" "$@"`) {
			return
		}
		script := string(buildShebang(oldPrefix+"/bin/python3", post)) + body
		moved, _ := r.rewriteFile("bin/tool", []byte(script))
		sb, ok := parseShebang(moved)
		if !ok || sb.exe != newPrefix+"/bin/python3" || sb.post != post {
			t.Fatalf("relocated %q to %q: %+v %v", script, moved, sb, ok)
		}
		back, _ := relocation{oldPrefix: newPrefix, newPrefix: oldPrefix}.rewriteFile("bin/tool", moved)
		if string(back) != script {
			t.Fatalf("round trip of %q gave %q", script, back)
		}
	})
}

// validPrefix: an absolute, clean venv path without quotes or newlines.
func validPrefix(p string) bool {
	return strings.HasPrefix(p, "/") && p != "/" && filepath.Clean(p) == p &&
		!strings.ContainsAny(p, "\"\n\r\x00")
}

// FuzzParsePyvenvCfg: any pyvenv.cfg parses without panic into trimmed,
// non-empty keys.
func FuzzParsePyvenvCfg(f *testing.F) {
	f.Add([]byte("home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n"))
	f.Add([]byte("=\n = x\nversion_info=3.1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := parsePyvenvCfg(data)
		for _, k := range cfg.keys {
			if k == "" || strings.TrimSpace(k) != k {
				t.Fatalf("key %q", k)
			}
		}
		majorMinor(cfg.version())
	})
}

// FuzzDecodeMetadata: hostile metadata is refused with an error, never a
// panic.
func FuzzDecodeMetadata(f *testing.F) {
	f.Add([]byte(`{"venv_path":"/v","python_version":"3.11.7","base_interpreter":{"path":"/usr/bin/python3"}}`))
	f.Add([]byte(`{"venv_path":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMetadata(pluginapi.Metadata{Version: MetadataVersion, JSON: data})
		if err == nil && (m.VenvPath == "" || m.PythonVersion == "") {
			t.Fatal("accepted metadata without venv_path or python_version")
		}
	})
}
