package virtualenv

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRewriteShebang(t *testing.T) {
	const body = "# -*- coding: utf-8 -*-\nimport sys\n"
	long := "/tmp/" + strings.Repeat("x", 120) + "/venv"
	tests := []struct {
		name      string
		old, new  string
		in, want  string
		unchanged bool
	}{
		{
			name: "simple to simple",
			old:  "/a/venv", new: "/b/other",
			in:   "#!/a/venv/bin/python3\n" + body,
			want: "#!/b/other/bin/python3\n" + body,
		},
		{
			name: "simple to space form",
			old:  "/a/venv", new: "/b/with space",
			in:   "#!/a/venv/bin/python3\n" + body,
			want: "#!/bin/sh\n'''exec' \"/b/with space/bin/python3\" \"$0\" \"$@\"\n' '''\n" + body,
		},
		{
			name: "space form to simple",
			old:  "/b/with space", new: "/a/venv",
			in:   "#!/bin/sh\n'''exec' \"/b/with space/bin/python3\" \"$0\" \"$@\"\n' '''\n" + body,
			want: "#!/a/venv/bin/python3\n" + body,
		},
		{
			name: "simple to long form, unquoted",
			old:  "/a/venv", new: long,
			in:   "#!/a/venv/bin/python3\n" + body,
			want: "#!/bin/sh\n'''exec' " + long + "/bin/python3 \"$0\" \"$@\"\n' '''\n" + body,
		},
		{
			name: "long form to simple",
			old:  long, new: "/a/venv",
			in:   "#!/bin/sh\n'''exec' " + long + "/bin/python3 \"$0\" \"$@\"\n' '''\n" + body,
			want: "#!/a/venv/bin/python3\n" + body,
		},
		{
			name: "interpreter arguments kept",
			old:  "/a/venv", new: "/b/v",
			in:   "#!/a/venv/bin/python -E\n" + body,
			want: "#!/b/v/bin/python -E\n" + body,
		},
		{
			name: "foreign interpreter untouched",
			old:  "/a/venv", new: "/b/v",
			in:        "#!/usr/bin/env python3\n" + body,
			unchanged: true,
		},
		{
			name: "sibling prefix untouched",
			old:  "/a/venv", new: "/b/v",
			in:        "#!/a/venv2/bin/python\n" + body,
			unchanged: true,
		},
		{
			name: "plain sh script untouched",
			old:  "/a/venv", new: "/b/v",
			in:        "#!/bin/sh\necho /a/venv\n",
			unchanged: true,
		},
		{
			name: "binary untouched",
			old:  "/a/venv", new: "/b/v",
			in:        "\x7fELF/a/venv/bin/python",
			unchanged: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := relocation{oldPrefix: tc.old, newPrefix: tc.new}
			require.True(t, r.wantsFile("bin/tool", int64(len(tc.in))))
			out, changed := r.rewriteFile("bin/tool", []byte(tc.in))
			if tc.unchanged {
				assert.False(t, changed)
				assert.Equal(t, tc.in, string(out))
				return
			}
			assert.True(t, changed)
			assert.Equal(t, tc.want, string(out))
		})
	}
}

func TestRewriteActivateAndPyvenvCfg(t *testing.T) {
	r := relocation{oldPrefix: "/a/venv", newPrefix: "/b/new venv"}
	act := "VIRTUAL_ENV=\"/a/venv\"\nexport VIRTUAL_ENV\nPATH=\"$VIRTUAL_ENV/bin:$PATH\"\n# /a/venv2 stays\n"
	out, changed := r.rewriteFile("bin/activate", []byte(act))
	assert.True(t, changed)
	assert.Equal(t, "VIRTUAL_ENV=\"/b/new venv\"\nexport VIRTUAL_ENV\nPATH=\"$VIRTUAL_ENV/bin:$PATH\"\n# /a/venv2 stays\n", string(out))

	csh := `setenv VIRTUAL_ENV "/a/venv"` + "\n"
	out, _ = r.rewriteFile("bin/activate.csh", []byte(csh))
	assert.Equal(t, `setenv VIRTUAL_ENV "/b/new venv"`+"\n", string(out))

	cfg := "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.7\nexecutable = /usr/bin/python3.11\ncommand = /usr/bin/python3 -m venv /a/venv\n"
	out, changed = r.rewriteFile("pyvenv.cfg", []byte(cfg))
	assert.True(t, changed)
	assert.Equal(t, strings.Replace(cfg, "venv /a/venv", "venv /b/new venv", 1), string(out))

	swap := relocation{oldPrefix: "/a/venv", newPrefix: "/a/venv",
		oldHome: "/usr/bin", newHome: "/opt/py/bin", oldExe: "/usr/bin/python3.11", newExe: "/opt/py/bin/python3.11"}
	assert.False(t, swap.wantsFile("bin/activate", 100))
	require.True(t, swap.wantsFile("pyvenv.cfg", 100))
	out, _ = swap.rewriteFile("pyvenv.cfg", []byte(cfg))
	assert.Equal(t, "home = /opt/py/bin\ninclude-system-site-packages = false\nversion = 3.11.7\nexecutable = /opt/py/bin/python3.11\ncommand = /usr/bin/python3 -m venv /a/venv\n", string(out))
	assert.Equal(t, "/opt/py/bin/python3.11", swap.rewriteSymlink("bin/python3", "/usr/bin/python3"))
	assert.Equal(t, "python3", swap.rewriteSymlink("bin/python", "python3"))
}

func TestRewriteSymlink(t *testing.T) {
	r := relocation{oldPrefix: "/a/venv", newPrefix: "/b/v", oldExe: "/usr/bin/python3", newExe: "/usr/bin/python3", oldHome: "/usr/bin", newHome: "/usr/bin"}
	assert.Equal(t, "lib", r.rewriteSymlink("lib64", "lib"))
	assert.Equal(t, "/usr/bin/python3", r.rewriteSymlink("bin/python3", "/usr/bin/python3"))
	assert.Equal(t, "/b/v/lib/x", r.rewriteSymlink("x", "/a/venv/lib/x"))
	assert.Equal(t, "/a/venvx/lib", r.rewriteSymlink("x", "/a/venvx/lib"))
	assert.False(t, r.wantsFile("lib/python3.11/site-packages/x.py", 10))
	assert.False(t, r.wantsFile("bin/python3.11", 20<<20))
	assert.False(t, relocation{}.active())
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"Hello_World":        "hello-world",
		"zope.interface":     "zope-interface",
		"Foo__Bar--baz..Qux": "foo-bar-baz-qux",
		"pip":                "pip",
	} {
		assert.Equal(t, want, normalizeName(in), in)
	}
}

func TestParsePyvenvCfg(t *testing.T) {
	cfg := parsePyvenvCfg([]byte("home = /usr/bin\ninclude-system-site-packages = false\nversion_info = 3.12.1.final.0\nprompt = 'a = b'\n\nbroken line\n"))
	assert.Equal(t, "/usr/bin", cfg.get("home"))
	assert.Equal(t, "3.12.1", cfg.version())
	assert.Equal(t, "'a = b'", cfg.get("prompt"))
	assert.Equal(t, []string{"home", "include-system-site-packages", "version_info", "prompt"}, cfg.keys)
	assert.Equal(t, "3.12", majorMinor(cfg.version()))
	assert.Equal(t, "", majorMinor("3"))
}
