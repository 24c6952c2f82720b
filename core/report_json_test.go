package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/store"
)

func TestExportJSONOriginalShape(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	venvMeta := map[string]any{
		"schema": 1, "venv_path": "/tmp/test_env/venv", "python_path": "/tmp/test_env/venv/bin/python",
		"pip_path": "/tmp/test_env/venv/bin/pip", "active": false,
		"installed_packages": map[string]string{"requests": "2.28.1"}, "allocated_ports": []int{8080, 8081},
	}
	lcWrite(t, m, lcSnap{ID: "snapshot_1640000000", EnvID: "env_1640000000_abc12345", Engine: "virtualenv", Metadata: venvMeta,
		Labels: map[string]string{"ci": "1"}, Streams: lcFiles("f", "x")})
	b, err := m.ExportJSON(ctx, "snapshot_1640000000")
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	for _, k := range []string{"snapshot_id", "env_id", "path", "status", "created_at", "config", "resource_usage", "allocated_ports", "virtualenv_info", "ptest_snap"} {
		assert.Contains(t, got, k)
	}
	assert.NotContains(t, got, "docker_info")
	assert.Equal(t, "snapshot_1640000000", got["snapshot_id"])
	assert.Equal(t, "env_1640000000_abc12345", got["env_id"])
	assert.Equal(t, "/envs/env_1640000000_abc12345", got["path"])
	assert.Equal(t, "active", got["status"])
	assert.Equal(t, "2026-11-28T12:00:00+00:00", got["created_at"])
	assert.Equal(t, []any{8080.0, 8081.0}, got["allocated_ports"])
	vi := got["virtualenv_info"].(map[string]any)
	assert.Equal(t, "/tmp/test_env/venv", vi["venv_path"])
	assert.Equal(t, "/tmp/test_env/venv/bin/python", vi["python_path"])
	assert.Equal(t, map[string]any{"requests": "2.28.1"}, vi["installed_packages"])
	assert.Equal(t, 1.0, got["resource_usage"].(map[string]any)["files"])

	dockerMeta := map[string]any{"schema_version": 1, "docker_info": map[string]any{
		"container_name": "ptest_env_abc123", "image_name": "python:3.9-slim", "container_id": "abc123def456",
		"snapshot_image": "ptest_env_abc123_snapshot_1640000000"}}
	lcWrite(t, m, lcSnap{ID: "dock", Engine: "docker", Metadata: dockerMeta, Streams: lcFiles("f", "y")})
	b, err = m.ExportJSON(ctx, "dock")
	require.NoError(t, err)
	got = nil
	require.NoError(t, json.Unmarshal(b, &got))
	assert.NotContains(t, got, "virtualenv_info")
	assert.Equal(t, "ptest_env_abc123", got["docker_info"].(map[string]any)["container_name"])
	assert.Equal(t, "ptest_env_abc123_snapshot_1640000000", got["docker_info"].(map[string]any)["snapshot_image"])
}

func TestImportJSONOnlyWhenDataPresent(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	s := lcWrite(t, m, lcSnap{ID: "j1", Name: "jay", Streams: lcFiles("d/f", "content", "g", "gee")})
	b, err := m.ExportJSON(ctx, "jay")
	require.NoError(t, err)

	res, err := m.ImportJSON(ctx, bytes.NewReader(b), ImportOptions{})
	require.NoError(t, err)
	assert.True(t, res.AlreadyPresent)

	// Deleted but not yet collected: the JSON brings it back.
	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"jay"}})
	require.NoError(t, err)
	res, err = m.ImportJSON(ctx, bytes.NewReader(b), ImportOptions{})
	require.NoError(t, err)
	assert.False(t, res.AlreadyPresent)
	back, err := m.Resolve(ctx, "jay")
	require.NoError(t, err)
	assert.Equal(t, s.Streams, back.Streams)
	assert.Equal(t, lcReadAll(t, m, s), lcReadAll(t, m, back))

	// Another store has none of the data: refused, nothing added.
	other := lcOpen(t)
	_, err = other.ImportJSON(ctx, bytes.NewReader(b), ImportOptions{})
	require.ErrorIs(t, err, ErrReportDataMissing)
	assert.Empty(t, lcSnapIDs(t, other))
}

func TestImportJSONValidation(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	lcWrite(t, m, lcSnap{ID: "v1", Streams: lcFiles("f", "x")})
	good, err := m.ExportJSON(ctx, "v1")
	require.NoError(t, err)
	original := `{"snapshot_id": "snapshot_1640000000", "env_id": "env_1640000000_abc12345", "path": "/tmp/test_env",
	  "status": "active", "created_at": "2026-01-28T12:00:00", "config": {}, "resource_usage": {},
	  "allocated_ports": [8080, 8081], "virtualenv_info": {"venv_path": ".../venv"}}`
	for _, tc := range []struct {
		name string
		json string
		want error
	}{
		{"original tool's JSON", original, ErrReportNoData},
		{"not JSON", "snapshot!", ErrReportFormat},
		{"no snapshot_id", `{"env_id": "e", "created_at": "2026-01-28T12:00:00"}`, ErrReportFormat},
		{"bad created_at", `{"snapshot_id": "s", "env_id": "e", "created_at": "yesterday"}`, ErrReportFormat},
		{"newer JSON format", strings.Replace(string(good), `"format_version": 1`, `"format_version": 9`, 1), ErrNewerFormat},
		{"newer record", strings.Replace(string(good), fmt.Sprintf(`"format_major": %d`, store.FormatMajor), `"format_major": 99`, 1), ErrNewerFormat},
		{"id mismatch", strings.Replace(string(good), `"snapshot_id": "v1"`, `"snapshot_id": "v2"`, 1), ErrReportFormat},
		{"foreign format", strings.Replace(string(good), ReportFormat, "something-else", 1), ErrReportFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.ImportJSON(ctx, strings.NewReader(tc.json), ImportOptions{})
			require.ErrorIs(t, err, tc.want)
		})
	}
	assert.Equal(t, []string{"v1"}, lcSnapIDs(t, m))
}
