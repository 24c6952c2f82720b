package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleSnapshot() *Snapshot {
	return &Snapshot{
		ID: "01JABCDEF", Name: "base", Labels: map[string]string{"k": "v"}, Engine: "virtualenv", EngineVersion: "1.0",
		EnvID: "/tmp/venv", Target: "/tmp/venv", Parent: "01JABCDEE", CreatedAt: time.Unix(1700000000, 5).UTC(),
		MetadataVersion: 1, Metadata: json.RawMessage(`{"python":"3.11"}`), Env: map[string]string{"A": "b"}, Ports: []int{80},
		Streams: []Stream{{Name: "rootfs", Root: SumChunk([]byte("root"))}},
		Stats:   SnapshotStats{Files: 3, Dirs: 1, LogicalBytes: 10, NewBytes: 5, StoredBytes: 2, Duration: time.Second},
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := sampleSnapshot()
	b, err := EncodeSnapshot(s)
	require.NoError(t, err)
	got, err := DecodeSnapshot(b)
	require.NoError(t, err)
	s.FormatMajor, s.FormatMinor = FormatMajor, FormatMinor
	assert.Equal(t, s, got)
}

func TestSnapshotExcludesRoundTrip(t *testing.T) {
	s := sampleSnapshot()
	s.Excludes = []string{"__pycache__", "data/*.tmp"}
	b, err := EncodeSnapshot(s)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"excludes":["__pycache__","data/*.tmp"]`)
	got, err := DecodeSnapshot(b)
	require.NoError(t, err)
	assert.Equal(t, []string{"__pycache__", "data/*.tmp"}, got.Excludes)
	assert.Equal(t, FormatMinor, got.FormatMinor)
	assert.True(t, FormatMajor > 1 || FormatMinor >= 1, "Excludes came with format 1.1")

	// A record without excludes does not mention them, and a format 1.0
	// record (written before the field existed) still loads, with none.
	b, err = EncodeSnapshot(sampleSnapshot())
	require.NoError(t, err)
	assert.NotContains(t, string(b), "excludes")
	old := []byte(`{"format_major":1,"format_minor":0,"id":"01OLD","engine":"dir","env_id":"/tmp/x",` +
		`"target":"/tmp/x","created_at":"2026-01-01T00:00:00Z","streams":[{"name":"rootfs","root":"` +
		SumChunk([]byte("root")).String() + `"}],"stats":{"files":1,"dirs":0,"logical_bytes":1,"new_bytes":1,"stored_bytes":1,"duration_ns":1}}`)
	got, err = DecodeSnapshot(old)
	require.NoError(t, err)
	assert.Equal(t, "01OLD", got.ID)
	assert.Equal(t, 0, got.FormatMinor)
	assert.Nil(t, got.Excludes)
}

func TestDecodeSnapshotRejects(t *testing.T) {
	good, err := EncodeSnapshot(sampleSnapshot())
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(good, &m))
	with := func(k string, v any) []byte {
		c := map[string]any{}
		for kk, vv := range m {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		b, _ := json.Marshal(c)
		return b
	}
	_, err = DecodeSnapshot(with("format_major", FormatMajor+1))
	assert.ErrorIs(t, err, ErrNewerFormat)
	assert.Contains(t, err.Error(), "01JABCDEF")
	// A newer minor version with an unknown field is read.
	got, err := DecodeSnapshot(with("format_minor", FormatMinor+3))
	require.NoError(t, err)
	assert.Equal(t, FormatMinor+3, got.FormatMinor)
	_, err = DecodeSnapshot(with("future_field", 1))
	assert.NoError(t, err)

	for name, b := range map[string][]byte{
		"no version":       with("format_major", nil),
		"no id":            with("id", ""),
		"trailing":         append(append([]byte(nil), good...), []byte(`{}`)...),
		"not json":         []byte("nope"),
		"duplicate stream": with("streams", []Stream{{Name: "a", Root: SumChunk(nil)}, {Name: "a", Root: SumChunk(nil)}}),
		"zero root":        with("streams", []Stream{{Name: "a"}}),
		"bad root":         with("streams", []map[string]string{{"name": "a", "root": "xyz"}}),
	} {
		_, err := DecodeSnapshot(b)
		assert.ErrorIs(t, err, ErrCorrupt, name)
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	good, _ := EncodeSnapshot(sampleSnapshot())
	f.Add(good)
	f.Add([]byte(`{"format_major":1,"id":"x","streams":[]}`))
	f.Add([]byte(`{"format_major":2,"id":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeSnapshot(data)
		if err != nil {
			return
		}
		b, err := EncodeSnapshot(s)
		require.NoError(t, err)
		s2, err := DecodeSnapshot(b)
		require.NoError(t, err)
		b2, err := EncodeSnapshot(s2)
		require.NoError(t, err)
		require.JSONEq(t, string(b), string(b2), "encode/decode is stable")
	})
}
