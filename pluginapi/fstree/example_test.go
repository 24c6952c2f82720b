package fstree_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/pluginapi/fstree"
)

// printWriter prints what a capture sends.
type printWriter struct{}

func (printWriter) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }

func (printWriter) BeginStream(_ context.Context, name string) error {
	fmt.Println("stream", name)
	return nil
}

func (printWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	if body != nil {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s %q\n", e.Type, e.Path, b)
		return nil
	}
	fmt.Println(strings.TrimSpace(fmt.Sprintf("%s %s %s", e.Type, e.Path, e.LinkTarget)))
	return nil
}

// An engine's Capture is one call: the stream's entries come in pre-order,
// siblings sorted, symlinks verbatim.
func ExampleCapture() {
	root, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(root)
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.WriteFile(filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(root, "notes.pyc"), []byte("cache"), 0o644)
	os.Symlink("bin/tool", filepath.Join(root, "tool"))

	err := fstree.Capture(context.Background(), root, fstree.CaptureOptions{
		Stream:   "rootfs",
		Excludes: []string{"*.pyc"},
	}, printWriter{})
	fmt.Println(err)
	// Output:
	// stream rootfs
	// dir bin
	// file bin/tool "#!/bin/sh\n"
	// symlink tool bin/tool
	// <nil>
}

// An engine's Restore is an Applier per stream, fed by ApplyAll.
func ExampleApplyAll() {
	target, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(target)
	var r pluginapi.RestoreReader = emptyReader{} // the host's reader in an engine
	a, err := fstree.NewApplier(target, fstree.ApplyOptions{InPlace: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(fstree.ApplyAll(context.Background(), r, map[string]*fstree.Applier{"rootfs": a}))
	// Output: <nil>
}

type emptyReader struct{}

func (emptyReader) Next(context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	return "", nil, nil, io.EOF
}
