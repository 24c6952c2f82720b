package core

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// indexOnlyCounter counts the regular files an engine's index-only
// listings sent with and without their xattrs.
type indexOnlyCounter struct {
	pluginapi.Engine
	unread, read atomic.Int64
}

func (c *indexOnlyCounter) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if !req.IndexOnly {
		return c.Engine.Capture(ctx, req, w)
	}
	return c.Engine.Capture(ctx, req, &hookWriter{CaptureWriter: w, hook: func(e *pluginapi.Entry) {
		switch {
		case e.Type != pluginapi.TypeFile:
		case e.XattrsFromParent:
			c.unread.Add(1)
		default:
			c.read.Add(1)
		}
	}})
}

// An in-place restore's listing leaves files' xattrs unread, and the plan
// still rewrites a file whose xattrs alone changed (its ctime moved) and
// one the last restore left with the same content but another snapshot's
// xattrs; kept files are not touched. In process and through the plugin.
func TestRestoreInPlaceXattrsUnreadInListing(t *testing.T) {
	ctx := context.Background()
	for name, base := range dirEngines(t) {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			makeTree(t, src)
			a := filepath.Join(src, "a.txt")
			buf := make([]byte, 16)
			if _, err := unix.Lgetxattr(a, "user.ptest", buf); errors.Is(err, unix.ENOTSUP) {
				t.Skip("no user xattrs on this file system")
			}
			eng := &indexOnlyCounter{Engine: base}
			m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
			s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
			require.NoError(t, err)
			ref1 := snapTree(t, m, s1.ID)
			keptIno := inode(t, filepath.Join(src, "pkg", "x", "__init__.py"))

			// Only the xattr changes: same content, size and mtime.
			require.NoError(t, unix.Setxattr(a, "user.ptest", []byte("v2"), 0))
			res, err := m.Restore(ctx, RestoreOptions{Ref: s1.ID, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, ref1, src)
			assert.EqualValues(t, 1, res.Stats.Rewritten, "a.txt alone rewritten: %+v", res.Stats)
			assert.Positive(t, eng.unread.Load(), "files listed without their xattrs")
			assert.Equal(t, keptIno, inode(t, filepath.Join(src, "pkg", "x", "__init__.py")), "kept file untouched")

			// A second snapshot whose a.txt differs from the first's only
			// by its xattr, restored in place: the restore index is then
			// the second's, and a.txt's statistics are those it records.
			require.NoError(t, unix.Setxattr(a, "user.ptest", []byte("v2"), 0))
			s2, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
			require.NoError(t, err)
			ref2 := snapTree(t, m, s2.ID)
			_, err = m.Restore(ctx, RestoreOptions{Ref: s2.ID, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, ref2, src)
			_, err = m.Restore(ctx, RestoreOptions{Ref: s1.ID, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, ref1, src)
			n, err := unix.Lgetxattr(a, "user.ptest", buf)
			require.NoError(t, err)
			assert.Equal(t, "v1", string(buf[:n]))

			// Nothing left to do.
			res, err = m.Restore(ctx, RestoreOptions{Ref: s1.ID, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, ref1, src)
			assert.Zero(t, res.Stats.Rewritten, "%+v", res.Stats)
		})
	}
}

// dirEngines is the dir engine in process and as a plugin, launched for
// the test and stopped at its end.
func dirEngines(t *testing.T) map[string]pluginapi.Engine {
	t.Helper()
	return map[string]pluginapi.Engine{"in-process": newDirEngine(), "plugin": launchDirPlugin(t)}
}

// launchDirPlugin launches the dir engine's plugin for the test and stops
// it, and its host, at the test's end.
func launchDirPlugin(t *testing.T) *pluginapi.Plugin {
	t.Helper()
	host := pluginapi.NewHost(pluginapi.HostOptions{})
	t.Cleanup(func() { host.Close() })
	p, err := host.Launch(context.Background(), pluginapi.Spec{Name: "dir", Path: dirPluginPath(t)})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}
