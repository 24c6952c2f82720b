package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

func TestTarToEntriesExcludesAndOrder(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "vol/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "vol/cache/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "vol/cache/x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
		{Name: "vol/keep.txt", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1, Uid: 7, PAXRecords: map[string]string{"SCHILY.xattr.user.a": "b"}},
		{Name: "vol/link", Typeflag: tar.TypeLink, Linkname: "vol/keep.txt"},
		{Name: "vol/run.log", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
		{Name: "vol/to-log", Typeflag: tar.TypeLink, Linkname: "vol/run.log"},
	} {
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte("z"))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	c := &capture{}
	w := &memWriter{c: c}
	require.NoError(t, w.BeginStream(context.Background(), "volume:v"))
	skipped, err := tarToEntries(context.Background(), tar.NewReader(&buf), w, []string{"cache", "*.log"})
	require.NoError(t, err)
	assert.Equal(t, 4, skipped)
	var paths []string
	for _, ce := range c.entries {
		paths = append(paths, ce.entry.Path)
	}
	assert.Equal(t, []string{"keep.txt", "link"}, paths)
	assert.Equal(t, pluginapi.TypeHardlink, c.entries[1].entry.Type)
	assert.Equal(t, "keep.txt", c.entries[1].entry.LinkTarget)
	assert.Equal(t, []byte("b"), c.entries[0].entry.Xattrs["user.a"])
	assert.Equal(t, uint32(7), c.entries[0].entry.UID)

	// Round trip back to a tar.
	var out bytes.Buffer
	otw := tar.NewWriter(&out)
	for _, ce := range c.entries {
		require.NoError(t, writeEntryTar(otw, &ce.entry, bytes.NewReader(ce.body)))
	}
	require.NoError(t, otw.Close())
	tr := tar.NewReader(&out)
	h, err := tr.Next()
	require.NoError(t, err)
	assert.Equal(t, "keep.txt", h.Name)
	assert.Equal(t, "b", h.PAXRecords["SCHILY.xattr.user.a"])

	assert.Error(t, validateExcludes([]string{"["}))
}

func TestPreorderLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"a", "a/x", true},
		{"a/x", "a.b", true}, // a's contents come before its next sibling
		{"a.b", "a/x", false},
		{"a", "b", true},
		{"a/b/c", "a/c", true},
		{"a", "a", false},
	} {
		assert.Equal(t, tc.less, preorderLess(tc.a, tc.b), "%s < %s", tc.a, tc.b)
	}
}
