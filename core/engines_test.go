package core

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/plugins/dir"
)

// pluginBuild is the once-per-test-binary build of the plugin.
var pluginBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// newDirEngine returns the directory engine, in-process.
func newDirEngine() pluginapi.Engine { return dir.New() }

// dirPluginPath returns the real ptest-snap-engine-dir binary: from
// $PTEST_SNAP_BIN (what `make test` sets), or built once into a temporary
// directory. It skips the test when neither is possible.
func dirPluginPath(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("PTEST_SNAP_BIN"); bin != "" {
		p := filepath.Join(bin, "ptest-snap-engine-dir")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	pluginBuild.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		pkg := filepath.Join(filepath.Dir(file), "..", "plugins", "dir", "cmd", "ptest-snap-engine-dir")
		if _, err := os.Stat(pkg); err != nil {
			pluginBuild.err = err
			return
		}
		out, err := os.MkdirTemp("", "ptest-snap-core-plugin-")
		if err != nil {
			pluginBuild.err = err
			return
		}
		pluginBuild.dir = out
		p := filepath.Join(out, "ptest-snap-engine-dir")
		cmd := exec.Command("go", "build", "-o", p, ".")
		cmd.Dir = pkg
		if b, err := cmd.CombinedOutput(); err != nil {
			pluginBuild.err = &buildError{out: string(b), err: err}
			return
		}
		pluginBuild.path = p
	})
	if pluginBuild.err != nil {
		t.Skipf("no ptest-snap-engine-dir binary (set PTEST_SNAP_BIN): %v", pluginBuild.err)
	}
	return pluginBuild.path
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// TestPluginRoundTrip drives create, incremental create, restore and
// in-place restore through the real plugin subprocess.
func TestPluginRoundTrip(t *testing.T) {
	path := dirPluginPath(t)
	ctx := context.Background()
	host := pluginapi.NewHost(pluginapi.HostOptions{})
	defer host.Close()
	p, err := host.Launch(ctx, pluginapi.Spec{Name: "dir", Path: path})
	require.NoError(t, err)
	defer p.Close()
	eng := &countingEngine{Engine: p}
	m := openManager(t, map[string]pluginapi.Engine{"dir": eng})

	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	s1, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	writeFile(t, filepath.Join(src, "a.txt"), []byte("plugin!\n"), 0o644, fixedTime)
	eng.bodies.Store(0)
	s2, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	require.Equal(t, s1.ID, s2.Parent)
	require.EqualValues(t, 1, eng.bodies.Load(), "only the changed file crosses the process boundary")

	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: s2.ID, Target: dst})
	require.NoError(t, err)
	requireSameTree(t, src, dst)

	keep := inode(t, filepath.Join(dst, "data", "big.bin"))
	writeFile(t, filepath.Join(dst, "extra"), []byte("x"), 0o644, fixedTime)
	writeFile(t, filepath.Join(dst, "a.txt"), []byte("other\n"), 0o644, fixedTime)
	res, err := m.Restore(ctx, RestoreOptions{Ref: s2.ID, Target: dst, InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, src, dst)
	require.Equal(t, keep, inode(t, filepath.Join(dst, "data", "big.bin")))
	require.Less(t, res.Stats.Bytes, int64(100))
}

// TestEngineErrorsNameTheEngineOnce checks that an engine's error names the
// engine once, whether the engine runs in-process (core names it) or as a
// plugin (the host already names it).
func TestEngineErrorsNameTheEngineOnce(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "missing")
	for name, eng := range dirEngines(t) {
		t.Run(name, func(t *testing.T) {
			m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
			_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: missing})
			require.ErrorIs(t, err, pluginapi.ErrTargetNotFound)
			assert.Equal(t, 1, strings.Count(err.Error(), `engine "dir"`), "%v", err)
		})
	}
}
