package pluginapi

import (
	"fmt"
	"strings"
)

// ValidatePath checks that p is a safe entry path: relative, slash-separated,
// non-empty, with no empty, "." or ".." elements and no NUL byte. Both the
// host and the engines call it on every path they receive, so a hostile
// plugin, store or archive cannot make a restore write outside its target.
//
// It walks p element by element without allocating: it runs for every
// entry of every capture and restore on both sides of the plugin boundary
// (strings.Split cost an allocation per entry, ~46k per venv-full create).
func ValidatePath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty path", ErrUnsafePath)
	}
	if p[0] == '/' {
		return fmt.Errorf("%w: %q is absolute", ErrUnsafePath, p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%w: %q contains a NUL byte", ErrUnsafePath, p)
	}
	for rest := p; ; {
		elem := rest
		i := strings.IndexByte(rest, '/')
		if i >= 0 {
			elem = rest[:i]
		}
		switch elem {
		case "":
			return fmt.Errorf("%w: %q has an empty element", ErrUnsafePath, p)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q element", ErrUnsafePath, p, elem)
		}
		if i < 0 {
			return nil
		}
		rest = rest[i+1:]
	}
}
