package core

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

// Records, archives and JSON reports written by each format version are
// kept in testdata/formats/v<N>/ and must stay readable by every later
// build. Regenerate only the current version's files (-update), never an
// older one's.

// formatV1Files is the content of the v1 sample snapshot.
var formatV1Files = map[string]string{
	"rootfs:bin/":           "",
	"rootfs:bin/python":     "->/usr/bin/python3",
	"rootfs:lib/":           "",
	"rootfs:lib/site.py":    "import os\n",
	"rootfs:lib/hard":       "=>lib/site.py",
	"rootfs:pyvenv.cfg":     "home = /usr/bin\n",
	"volume:data:":          "",
	"volume:data:db.sqlite": "SQLite format 3",
}

func TestFormatV1StillLoads(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join("testdata", "formats", "v1")
	if *updateTestdata && store.FormatMajor == 1 && archiveVersion == 1 {
		writeFormatV1(t, dir)
	}
	rec, err := os.ReadFile(filepath.Join(dir, "record.json"))
	require.NoError(t, err)
	s, err := store.DecodeSnapshot(rec)
	require.NoError(t, err)
	assert.Equal(t, "v1sample", s.ID)
	assert.Equal(t, "sample", s.Name)
	assert.Equal(t, 1, s.FormatMajor)
	require.Len(t, s.Streams, 2)

	m := lcOpen(t)
	archive, err := os.ReadFile(filepath.Join(dir, "archive.ptsa"))
	require.NoError(t, err)
	rep, err := m.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.NoError(t, err)
	require.Len(t, rep.Snapshots, 1)
	got := lcReadAll(t, m, rep.Snapshots[0])
	// lcReadAll does not list the stream roots themselves.
	want := map[string]string{}
	for k, v := range formatV1Files {
		if k != "volume:data:" {
			want[k] = v
		}
	}
	assert.Equal(t, want, got)
	assert.Equal(t, s.Streams, rep.Snapshots[0].Streams)

	js, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	r, rec2, err := ParseSnapshotReport(js)
	require.NoError(t, err)
	assert.Equal(t, "v1sample", r.SnapshotID)
	assert.Equal(t, s.Streams, rec2.Streams)
	res, err := m.ImportJSON(ctx, bytes.NewReader(js), ImportOptions{})
	require.NoError(t, err)
	assert.True(t, res.AlreadyPresent)
}

func writeFormatV1(t *testing.T, dir string) {
	require.NoError(t, os.MkdirAll(dir, 0o755))
	m := lcOpen(t)
	streams := formatStreams(formatV1Files)
	s := lcWrite(t, m, lcSnap{ID: "v1sample", Name: "sample", Labels: map[string]string{"format": "v1"},
		Metadata: map[string]any{"installed_packages": map[string]string{"requests": "2.28.1"}}, Streams: streams})
	b, err := store.EncodeSnapshot(s)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "record.json"), b, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "archive.ptsa"), lcExport(t, m, "v1sample"), 0o644))
	js, err := m.ExportJSON(context.Background(), "v1sample")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "report.json"), js, 0o644))
}

// TestFormatV1LargeDirectoryStillLoads: an archive written by a format-1
// build (before large directories were split in fragments) holds a
// directory of 300 files as one tree chunk of about 20 kB. It imports under
// its hashes, reads, verifies and exports again; a new snapshot of the same
// files stores that directory as fragments.
func TestFormatV1LargeDirectoryStillLoads(t *testing.T) {
	ctx := context.Background()
	archive, err := os.ReadFile(filepath.Join("testdata", "formats", "v1", "large-dir.ptsa"))
	require.NoError(t, err)
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	rep, err := m.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.NoError(t, err)
	require.Len(t, rep.Snapshots, 1)
	snap := rep.Snapshots[0]
	assert.Equal(t, 1, snap.FormatMajor)

	all := lookupDir(t, m, snap, "all")
	raw, err := m.store.GetChunk(ctx, all)
	require.NoError(t, err)
	frags, err := store.TreeFragments(raw)
	require.NoError(t, err)
	assert.Nil(t, frags, "one version-1 chunk")
	assert.Greater(t, len(raw), 2<<10)
	files := lcReadAll(t, m, snap)
	assert.Len(t, files, 301) // the directory and its 300 files
	assert.Equal(t, "{\"n\": 042}\n", files["rootfs:all/aws_service_042.json"])

	vr, err := m.store.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, vr.Problems)
	again := lcExport(t, m, snap.ID)
	m2 := lcOpen(t)
	rep2, err := m2.Import(ctx, bytes.NewReader(again), ImportOptions{})
	require.NoError(t, err)
	assert.Equal(t, snap.Streams, rep2.Snapshots[0].Streams)

	dst := filepath.Join(t.TempDir(), "restored")
	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst})
	require.NoError(t, err)
	m3 := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	fresh, err := m3.Create(ctx, CreateOptions{Engine: "dir", Target: dst})
	require.NoError(t, err)
	all2 := lookupDir(t, m3, fresh, "all")
	assert.NotEqual(t, all, all2)
	raw2, err := m3.store.GetChunk(ctx, all2)
	require.NoError(t, err)
	frags2, err := store.TreeFragments(raw2)
	require.NoError(t, err)
	assert.Greater(t, len(frags2), 1, "stored as fragments now")
	assert.Equal(t, mustTree(t, m, all), mustTree(t, m3, all2))
}

// formatV2Files is the content of the v2 sample snapshot: the v1 sample
// and a directory large enough to be stored as fragments.
func formatV2Files() map[string]string {
	files := map[string]string{}
	for k, v := range formatV1Files {
		files[k] = v
	}
	for i := range 200 {
		files[fmt.Sprintf("rootfs:lib/schemas/aws_service_%03d.json", i)] = fmt.Sprintf("{\"n\": %d}\n", i)
	}
	return files
}

func TestFormatV2StillLoads(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join("testdata", "formats", "v2")
	if *updateTestdata && store.FormatMajor == 2 && archiveVersion == 1 {
		writeFormatV2(t, dir)
	}
	archive, err := os.ReadFile(filepath.Join(dir, "archive.ptsa"))
	require.NoError(t, err)
	m := lcOpen(t)
	rep, err := m.Import(ctx, bytes.NewReader(archive), ImportOptions{})
	require.NoError(t, err)
	require.Len(t, rep.Snapshots, 1)
	s := rep.Snapshots[0]
	assert.Equal(t, "v2sample", s.ID)
	assert.Equal(t, 2, s.FormatMajor)
	want := map[string]string{}
	for k, v := range formatV2Files() {
		if k != "volume:data:" {
			want[k] = v
		}
	}
	want["rootfs:lib/schemas/"] = ""
	assert.Equal(t, want, lcReadAll(t, m, s))
	raw, err := m.store.GetChunk(ctx, lookupDir(t, m, s, "lib/schemas"))
	require.NoError(t, err)
	frags, err := store.TreeFragments(raw)
	require.NoError(t, err)
	assert.Greater(t, len(frags), 1, "the large directory is a root and fragments")
	vr, err := m.store.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, vr.Problems)
}

func writeFormatV2(t *testing.T, dir string) {
	require.NoError(t, os.MkdirAll(dir, 0o755))
	m := lcOpen(t)
	streams := formatStreams(formatV2Files())
	lcWrite(t, m, lcSnap{ID: "v2sample", Name: "sample", Labels: map[string]string{"format": "v2"},
		Metadata: map[string]any{"installed_packages": map[string]string{"requests": "2.28.1"}}, Streams: streams})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "archive.ptsa"), lcExport(t, m, "v2sample"), 0o644))
}

// formatStreams splits a sample's files ("stream:path") by stream; the
// empty "volume:data:" entry only names the stream.
func formatStreams(files map[string]string) map[string]map[string]string {
	streams := map[string]map[string]string{"rootfs": {}, "volume:data": {}}
	for k, v := range files {
		if k == "volume:data:" {
			continue
		}
		for name := range streams {
			if p, ok := strings.CutPrefix(k, name+":"); ok {
				streams[name][p] = v
			}
		}
	}
	return streams
}
