package core

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	streams := map[string]map[string]string{"rootfs": {}, "volume:data": {}}
	for k, v := range formatV1Files {
		if k == "volume:data:" {
			continue
		}
		for name := range streams {
			if p, ok := strings.CutPrefix(k, name+":"); ok {
				streams[name][p] = v
			}
		}
	}
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
