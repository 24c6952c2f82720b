package pluginapi

import (
	"fmt"
	"strings"
)

// ValidatePath checks that p is a safe entry path: relative, slash-separated,
// non-empty, with no empty, "." or ".." elements and no NUL byte. Both the
// host and the engines call it on every path they receive, so a hostile
// plugin, store or archive cannot make a restore write outside its target.
func ValidatePath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty path", ErrUnsafePath)
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: %q is absolute", ErrUnsafePath, p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%w: %q contains a NUL byte", ErrUnsafePath, p)
	}
	for _, elem := range strings.Split(p, "/") {
		switch elem {
		case "":
			return fmt.Errorf("%w: %q has an empty element", ErrUnsafePath, p)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q element", ErrUnsafePath, p, elem)
		}
	}
	return nil
}
