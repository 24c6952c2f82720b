package pluginapi_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/pypj/ptest-snap/pluginapi"
)

// engineDir holds the test engines, built once per test binary: the
// testengine binary linked under each mode's name, and the directory
// engine when its package exists.
var engineDir string

// testModes are the names the testengine binary is linked under.
var testModes = []string{"good", "crash", "hang", "stopearly", "failearly", "stdout", "mute", "version", "tlscert", "tcp", "dotdot", "abs", "bigframe", "unsorted", "longbody", "badring", "hugemsg"}

func TestMain(m *testing.M) {
	if os.Getenv(hostChildEnv) != "" {
		os.Exit(hostChild())
	}
	os.Exit(run(m))
}

// hostChildEnv makes the test binary act as a bare host: it launches the
// engine at the path in the variable, prints the plugin's pid, and waits
// to be killed.
const hostChildEnv = "PTEST_SNAP_TEST_HOST_CHILD"

func hostChild() int {
	h := pluginapi.NewHost(pluginapi.HostOptions{})
	p, err := h.Launch(context.Background(), pluginapi.Spec{Name: "good", Path: os.Getenv(hostChildEnv)})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println(p.PID())
	select {}
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pluginapi-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	engineDir = dir
	bin := filepath.Join(dir, "testengine")
	if out, err := exec.Command("go", "build", "-o", bin, "./internal/testengine").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testengine: %v\n%s", err, out)
		return 1
	}
	for _, mode := range testModes {
		if err := os.Symlink(bin, filepath.Join(dir, pluginapi.BinaryPrefix+mode)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := buildDirEngine(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked on the host side: %v\n", err)
			return 1
		}
	}
	return code
}

// buildDirEngine builds the directory engine's binary if its command
// exists, or links the one in $PTEST_SNAP_BIN (`make test` built it).
func buildDirEngine(dir string) error {
	const pkg = "../plugins/dir/cmd/ptest-snap-engine-dir"
	if bin := os.Getenv("PTEST_SNAP_BIN"); bin != "" {
		built := filepath.Join(bin, pluginapi.BinaryPrefix+"dir")
		if _, err := os.Stat(built); err == nil {
			return os.Symlink(built, filepath.Join(dir, pluginapi.BinaryPrefix+"dir"))
		}
	}
	if _, err := os.Stat(filepath.Join(pkg, "main.go")); err != nil {
		return nil
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, pluginapi.BinaryPrefix+"dir"), pkg).CombinedOutput(); err != nil {
		return fmt.Errorf("build the dir engine: %v\n%s", err, out)
	}
	return nil
}

// spec returns the Spec of a test engine.
func spec(name string) pluginapi.Spec {
	return pluginapi.Spec{Name: name, Path: filepath.Join(engineDir, pluginapi.BinaryPrefix+name)}
}
