package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestNewChangeSet(t *testing.T) {
	ch := func(kind container.ChangeType, p string) container.FilesystemChange {
		return container.FilesystemChange{Kind: kind, Path: p}
	}
	cs, err := newChangeSet([]container.FilesystemChange{
		ch(container.ChangeModify, "/d1"),
		ch(container.ChangeDelete, "/d1/sub"), // replaced: it has something under it
		ch(container.ChangeAdd, "/d1/sub/new"),
		ch(container.ChangeDelete, "/gone"), // deleted with its subtree
		ch(container.ChangeDelete, "/gone/child"),
		ch(container.ChangeDelete, "/a-b"),
		ch(container.ChangeDelete, "/a/b"),
		ch(container.ChangeModify, "/a"),
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"d1": true, "d1/sub": true, "d1/sub/new": true, "a": true}, cs.present)
	assert.Equal(t, map[string]bool{"d1/sub": true}, cs.opaque)
	// Preorder, and nothing under a deleted directory.
	assert.Equal(t, []string{"a/b", "a-b", "gone"}, cs.whiteouts)
	assert.Equal(t, "", cs.commonRoot())

	cs, err = newChangeSet([]container.FilesystemChange{ch(container.ChangeAdd, "/w/x"), ch(container.ChangeAdd, "/w/x/y"), ch(container.ChangeModify, "/w/z")})
	require.NoError(t, err)
	assert.Equal(t, "w", cs.commonRoot())

	_, err = newChangeSet([]container.FilesystemChange{ch(container.ChangeAdd, "/x"), ch(container.ChangeModify, "/x")})
	assert.ErrorIs(t, err, errNotDiffable, "a path reported twice")
}

func TestChainIDs(t *testing.T) {
	// Chain IDs as Docker computes them (layer.CreateChainID).
	a := "sha256:" + strings.Repeat("a", 64)
	b := "sha256:" + strings.Repeat("b", 64)
	sum := sha256.Sum256([]byte(a + " " + b))
	assert.Equal(t, []string{a, "sha256:" + hex.EncodeToString(sum[:])}, chainIDs([]string{a, b}))
}

// busyboxImage imports a root file system of Debian's busybox-static with
// a few directories, a hard-linked pair and a symlink.
func busyboxImage(t *testing.T, cl *cleaner, tag string) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox-static not installed: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		require.NoError(t, tw.WriteHeader(h))
		_, err := tw.Write(body)
		require.NoError(t, err)
	}
	for _, d := range []string{"bin", "d1", "d1/sub", "d2", "d3", "d3/x", "hl", "keep", "tmp"} {
		add(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "bin/busybox", Mode: 0o755}, bb)
	for _, app := range []string{"sh", "sleep", "rm", "mkdir", "ln", "chmod", "chown", "mkfifo", "mv", "touch", "cat"} {
		add(&tar.Header{Name: "bin/" + app, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Name: "d1/a"}, []byte("a\n"))
	add(&tar.Header{Name: "d1/sub/b"}, []byte("b\n"))
	add(&tar.Header{Name: "d2/c"}, []byte("c\n"))
	add(&tar.Header{Name: "d3/x/y"}, []byte("y\n"))
	add(&tar.Header{Name: "hl/one"}, []byte("linked\n"))
	add(&tar.Header{Name: "hl/two", Typeflag: tar.TypeLink, Linkname: "hl/one"}, nil)
	add(&tar.Header{Name: "keep/k"}, []byte("kept\n"))
	add(&tar.Header{Name: "top.txt"}, []byte("top\n"))
	require.NoError(t, tw.Close())
	ctx := context.Background()
	rc, err := testCli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, tag, image.ImportOptions{})
	require.NoError(t, err)
	require.NoError(t, readJSONMessages(rc, nil))
	rc.Close()
	cl.image(tag)
}

// exportListing lists a container's file system as `docker export` has it:
// each path's type, mode, owner, mtime, link, and content digest; hard links
// as links. The files Docker makes per container (hosts, resolv.conf, ...)
// are left out.
func exportListing(t *testing.T, id string) map[string]string {
	t.Helper()
	rc, err := testCli.ContainerExport(context.Background(), id)
	require.NoError(t, err)
	defer rc.Close()
	skip := map[string]bool{".dockerenv": true, "etc": true, "etc/hosts": true, "etc/hostname": true, "etc/resolv.conf": true, "etc/mtab": true,
		"dev": true, "dev/console": true, "dev/pts": true, "dev/shm": true, "proc": true, "sys": true}
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		name := strings.TrimSuffix(hdr.Name, "/")
		if skip[name] {
			continue
		}
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		out[name] = fmt.Sprintf("%c %o %d:%d %d %q %x", hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.ModTime.Unix(), hdr.Linkname, sum[:6])
	}
}

// TestDiffCaptureRestoresTheSameFiles: deletions (a file, a directory
// with its subtree, a directory replaced by a new one), new hard links and
// symlinks, a fifo, a chmod and chown of image directories, new nested
// directories: the restored container's file system equals the
// original's, entry for entry (type, mode, owner, mtime, link, content).
// No commit is made: the base layers are named by chain ID, and a second
// capture of the unchanged container sends no layer.
func TestDiffCaptureRestoresTheSameFiles(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "diff")
	cl := newCleaner(t)
	cl.prefix(name)
	img := name + "-bb:latest"
	busyboxImage(t, cl, img)
	id := runContainer(t, name, &container.Config{Image: img, Cmd: []string{"/bin/sleep", "100000"}}, nil, nil, true)
	script := `set -e
rm -rf /d1 && mkdir /d1 && echo new > /d1/a && mkdir /d1/fresh && echo f > /d1/fresh/f
rm /d2/c && ln /d1/a /d2/link && ln -s /d3 /d2/sym
rm -rf /d3/x
mkdir -p /new/deep/er && echo deep > /new/deep/er/file && mkfifo /new/fifo
echo changed >> /hl/one
chmod 700 /keep && chown 12:34 /keep
echo root > /rootfile
rm /top.txt`
	ex, err := testCli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: []string{"/bin/sh", "-c", script}, AttachStdout: true, AttachStderr: true})
	require.NoError(t, err)
	att, err := testCli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	require.NoError(t, err)
	raw, _ := io.ReadAll(att.Reader)
	att.Close()
	ins, err := testCli.ContainerExecInspect(ctx, ex.ID)
	require.NoError(t, err)
	require.Equal(t, 0, ins.ExitCode, "%s", demux(raw))
	want := exportListing(t, id)

	e := New()
	defer e.Close()
	c := captureOf(t, e, name, nil, nil, nil)
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	assertChainNamed(t, c, m)

	res, err := e.Restore(ctx, c.restoreRequest(name+"-restored"), &reader{c: c})
	require.NoError(t, err)
	got := exportListing(t, res.Target)
	assert.Equal(t, want, got)
	assert.Contains(t, got, "d1/fresh/f")
	assert.NotContains(t, got, "d1/sub")
	assert.NotContains(t, got, "d3/x")
	assert.NotContains(t, got, "top.txt")

	// The unchanged container: the same layer, every layer unchanged.
	c2 := captureOf(t, e, name, c, nil, nil)
	unchanged, sent := c2.layerStats()
	assert.Equal(t, 0, sent)
	assert.Equal(t, len(m.Image.DiffIDs), unchanged)
}

// assertChainNamed checks that a capture took the commit-free path: its
// manifest lists the base layers by chain ID, and "image-base" has them.
func assertChainNamed(t *testing.T, c *capture, m *Metadata) {
	t.Helper()
	chains := chainIDs(m.Image.DiffIDs)
	var manifest []struct{ Layers []string }
	var base []string
	for _, ce := range c.entries {
		if ce.stream == imageStream && ce.entry.Path == manifestName {
			require.NoError(t, json.Unmarshal(ce.body, &manifest))
		}
		if ce.stream == baseStream && strings.HasSuffix(ce.entry.Path, "/layer.tar") && ce.entry.Type == pluginapi.TypeDir {
			base = append(base, ce.entry.Path)
		}
	}
	require.Len(t, manifest, 1)
	layers := manifest[0].Layers
	require.Len(t, layers, len(chains))
	for i, ch := range chains[:len(chains)-1] {
		assert.Regexp(t, `^[0-9]{4}-`+regexp.QuoteMeta(chainLayerPath(ch))+`$`, layers[i])
	}
	assert.Equal(t, chainLayerPath(chains[len(chains)-1]), layers[len(layers)-1])
	want := slices.Clone(layers[:len(layers)-1])
	sort.Strings(want)
	assert.Equal(t, want, base)
}

func TestBaseLayerPathsPutTheLargestFirst(t *testing.T) {
	d := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	ids := []string{d('a'), d('b'), d('c')}
	chains := chainIDs(ids)
	// History is newest first; an empty layer (size 0) has no rootfs entry.
	history := []image.HistoryResponseItem{{Size: 5}, {Size: 0}, {Size: 100}, {Size: 7}}
	assert.Equal(t, []string{"0001-" + chainLayerPath(chains[0]), "0000-" + chainLayerPath(chains[1]), "0002-" + chainLayerPath(chains[2])},
		baseLayerPaths(ids, history))
	// A history that does not map onto the layers: bottom first.
	assert.Equal(t, []string{"0000-" + chainLayerPath(chains[0]), "0001-" + chainLayerPath(chains[1]), "0002-" + chainLayerPath(chains[2])},
		baseLayerPaths(ids, history[:2]))
	for _, p := range baseLayerPaths(ids, history) {
		assert.Regexp(t, contentNamedLayer, p)
	}
}

// TestDiffCaptureVolumeInsideChanges: a volume mounted inside the changed
// directory is not read into the image (the capture exports instead of
// reading the directory through the archive API, which would include the
// volume); its data comes back from its own stream.
func TestDiffCaptureVolumeInsideChanges(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "diffvol")
	cl := newCleaner(t)
	cl.prefix(name)
	vol := name + "-vol"
	_, err := testCli.VolumeCreate(ctx, volume.CreateOptions{Name: vol})
	require.NoError(t, err)
	t.Cleanup(func() { _ = testCli.VolumeRemove(context.Background(), vol, true) })
	id := runContainer(t, name, &container.Config{}, &container.HostConfig{
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/work/vol"}},
	}, nil, true)
	execIn(t, id, "write", "/work/a.txt", "in the layer")
	execIn(t, id, "write", "/work/vol/v.txt", "in the volume")
	e := New()
	defer e.Close()
	c := captureOf(t, e, name, nil, nil, nil)
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	assertChainNamed(t, c, m)
	for _, ce := range c.entries {
		if ce.stream == imageStream {
			assert.NotContains(t, string(ce.body), "in the volume", ce.entry.Path)
		}
	}
	require.NoError(t, testCli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}))
	require.NoError(t, testCli.VolumeRemove(ctx, vol, true))
	res, err := e.Restore(ctx, c.restoreRequest(""), &reader{c: c})
	require.NoError(t, err)
	assert.Equal(t, "in the layer", execIn(t, res.Target, "cat", "/work/a.txt"))
	assert.Equal(t, "in the volume", execIn(t, res.Target, "cat", "/work/vol/v.txt"))
}

// TestKeepImageCommits: keep-image=true still commits, and the commit
// image stays in the engine.
func TestKeepImageCommits(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "keep")
	cl := newCleaner(t)
	cl.prefix(name)
	id := runContainer(t, name, &container.Config{}, nil, nil, true)
	execIn(t, id, "write", "/data/k.txt", "kept")
	e := New()
	defer e.Close()
	c := captureOf(t, e, name, nil, nil, map[string]string{"keep-image": "true"})
	m := metaOf(t, c)
	cl.image(m.Image.ID)
	_, err := testCli.ImageInspect(ctx, m.Image.ID)
	require.NoError(t, err, "the commit image is kept")
	res, err := e.Restore(ctx, c.restoreRequest(name+"-restored"), &reader{c: c})
	require.NoError(t, err)
	assert.Equal(t, "kept", execIn(t, res.Target, "cat", "/data/k.txt"))
}
