package virtualenv

import (
	"bytes"
	"path"
	"strings"
)

// maxSimpleShebang is the longest "#!exe args\n" line pip (distlib) writes
// on Linux; a longer one, or an interpreter path with a space, gets the
// "#!/bin/sh" + "”'exec'" form instead, because the kernel would cut it.
const maxSimpleShebang = 127

// relocation says how a restored venv differs from the captured one: its
// path and, when the user picked another interpreter (option python=), its
// base interpreter. The zero value changes nothing.
type relocation struct {
	oldPrefix, newPrefix string // absolute venv paths
	oldHome, newHome     string // pyvenv.cfg "home"; equal unless swapped
	oldExe, newExe       string // base interpreter; equal unless swapped
	newVersion           string // the swapped-in interpreter's version, or ""
}

// moves reports whether the venv's path changes.
func (r relocation) moves() bool { return r.oldPrefix != r.newPrefix }

// swaps reports whether the base interpreter changes.
func (r relocation) swaps() bool { return r.oldExe != r.newExe || r.oldHome != r.newHome }

// active reports whether anything must be rewritten.
func (r relocation) active() bool { return r.moves() || r.swaps() }

// maxScriptSize bounds the bin/ files inspected for a shebang: scripts are
// a few hundred bytes, and a larger file there is a binary (a --copies
// interpreter) that must stream to disk rather than be buffered whole.
const maxScriptSize = 1 << 20

// wantsFile reports whether the file at rel (a stream path) of size bytes
// may need its content rewritten: pyvenv.cfg and the scripts directly under
// bin/. Only those are buffered; every other body streams straight to disk.
func (r relocation) wantsFile(rel string, size int64) bool {
	if !r.active() {
		return false
	}
	if rel == "pyvenv.cfg" {
		return true
	}
	if !r.moves() {
		return false
	}
	dir, _ := path.Split(rel)
	return dir == "bin/" && size <= maxScriptSize
}

// rewriteFile returns the relocated content of the file at rel, and whether
// it changed.
func (r relocation) rewriteFile(rel string, data []byte) ([]byte, bool) {
	if rel == "pyvenv.cfg" {
		out := r.rewritePyvenvCfg(data)
		return out, !bytes.Equal(out, data)
	}
	if !r.moves() || !bytes.HasPrefix(data, []byte("#!")) && !isActivateScript(rel) {
		return data, false
	}
	if isActivateScript(rel) {
		out := replacePrefix(data, r.oldPrefix, r.newPrefix)
		return out, !bytes.Equal(out, data)
	}
	sb, ok := parseShebang(data)
	if !ok || !underPrefix(sb.exe, r.oldPrefix) {
		return data, false
	}
	exe := r.newPrefix + sb.exe[len(r.oldPrefix):]
	out := append(buildShebang(exe, sb.post), data[sb.bodyStart:]...)
	return out, !bytes.Equal(out, data)
}

// rewriteSymlink returns the target a symlink at rel should have after the
// relocation: links to the old base interpreter follow option python=, and
// absolute links into the old venv follow the venv. Relative links (lib64 →
// lib, python → python3) stay as they are.
func (r relocation) rewriteSymlink(rel, target string) string {
	if !path.IsAbs(target) {
		return target
	}
	if r.swaps() && (target == r.oldExe || path.Dir(target) == r.oldHome) {
		return r.newExe
	}
	if r.moves() && underPrefix(target, r.oldPrefix) {
		return r.newPrefix + target[len(r.oldPrefix):]
	}
	return target
}

// rewritePyvenvCfg rewrites "home", "executable" and "version" for a
// swapped interpreter and the old venv prefix anywhere (the "command" line).
func (r relocation) rewritePyvenvCfg(data []byte) []byte {
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		key, _, ok := bytes.Cut(line, []byte("="))
		if !ok {
			continue
		}
		k := string(bytes.TrimSpace(key))
		eol := line[len(bytes.TrimRight(line, "\r\n")):]
		switch {
		case k == "home" && r.swaps():
			lines[i] = append([]byte("home = "+r.newHome), eol...)
			continue
		case (k == "executable" || k == "base-executable") && r.swaps():
			lines[i] = append([]byte(k+" = "+r.newExe), eol...)
			continue
		case k == "version" && r.swaps() && r.newVersion != "":
			lines[i] = append([]byte("version = "+r.newVersion), eol...)
			continue
		}
		if r.moves() {
			lines[i] = replacePrefix(line, r.oldPrefix, r.newPrefix)
		}
	}
	return bytes.Join(lines, nil)
}

// isActivateScript reports whether rel is one of the activate scripts
// venv and virtualenv write (activate, activate.csh, activate.fish,
// activate.nu, Activate.ps1, ...).
func isActivateScript(rel string) bool {
	dir, name := path.Split(rel)
	return dir == "bin/" && strings.HasPrefix(strings.ToLower(name), "activate") && !strings.HasSuffix(name, ".py")
}

// underPrefix reports whether p is prefix or lies below it.
func underPrefix(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// replacePrefix replaces every occurrence of old in data that is a whole
// path prefix: the byte after it is not a character that could continue a
// file name, so "/a/venv" does not match inside "/a/venv2".
func replacePrefix(data []byte, old, new string) []byte {
	if old == "" || old == new {
		return data
	}
	ob := []byte(old)
	var out []byte
	rest := data
	for {
		i := bytes.Index(rest, ob)
		if i < 0 {
			break
		}
		end := i + len(ob)
		if end < len(rest) && continuesName(rest[end]) {
			out = append(out, rest[:end]...)
			rest = rest[end:]
			continue
		}
		out = append(out, rest[:i]...)
		out = append(out, new...)
		rest = rest[end:]
	}
	if out == nil {
		return data
	}
	return append(out, rest...)
}

// continuesName reports whether c may continue a path element.
func continuesName(c byte) bool {
	return c == '-' || c == '_' || c == '.' ||
		'0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80
}

// shebang is a parsed script header.
type shebang struct {
	exe       string // the interpreter, unquoted
	post      string // what follows it on the line (" -E"), or ""
	bodyStart int    // offset of the script after the header
}

// parseShebang parses the two headers pip writes:
//
//	#!/venv/bin/python3
//
// and, for long paths or paths with a space,
//
//	#!/bin/sh
//	'''exec' "/venv path/bin/python3" "$0" "$@"
//	' '''
func parseShebang(data []byte) (shebang, bool) {
	first, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !bytes.HasPrefix(first, []byte("#!")) {
		return shebang{}, false
	}
	if string(bytes.TrimRight(first, "\r")) == "#!/bin/sh" {
		second, rest2, ok := bytes.Cut(rest, []byte("\n"))
		third, _, ok3 := bytes.Cut(rest2, []byte("\n"))
		const head, tail = `'''exec' `, ` "$0" "$@"`
		if ok && ok3 && len(second) >= len(head)+len(tail) && bytes.HasPrefix(second, []byte(head)) && bytes.HasSuffix(second, []byte(tail)) &&
			string(third) == `' '''` {
			exe, post, ok := splitInterpreter(string(second[len(head) : len(second)-len(tail)]))
			if !ok {
				return shebang{}, false
			}
			return shebang{exe: exe, post: post, bodyStart: len(first) + len(second) + len(third) + 3}, true
		}
		return shebang{}, false
	}
	line := strings.TrimRight(string(first[2:]), "\r")
	exe, post, ok := splitInterpreter(line)
	if !ok {
		return shebang{}, false
	}
	return shebang{exe: exe, post: post, bodyStart: len(first) + 1}, true
}

// splitInterpreter splits `"/p a/python" -E` or `/p/python -E` into the
// interpreter and the rest of the line.
func splitInterpreter(s string) (exe, post string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return "", "", false
		}
		return s[1 : end+1], s[end+2:], true
	}
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i], s[i:], true
	}
	return s, "", s != ""
}

// buildShebang writes the header pip would write for interpreter exe: the
// simple "#!" line when it fits and has no space, else the /bin/sh form.
func buildShebang(exe, post string) []byte {
	if !strings.Contains(exe, " ") && len(exe)+len(post)+3 <= maxSimpleShebang {
		return []byte("#!" + exe + post + "\n")
	}
	quoted := exe
	if strings.Contains(exe, " ") {
		quoted = `"` + exe + `"`
	}
	return []byte("#!/bin/sh\n'''exec' " + quoted + post + " \"$0\" \"$@\"\n' '''\n")
}
