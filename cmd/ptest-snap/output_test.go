package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/core"
	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.00 KiB"}, {1536, "1.50 KiB"},
		{12 << 20, "12.0 MiB"}, {482344960, "460 MiB"}, {5 << 30, "5.00 GiB"}, {-2048, "-2.00 KiB"},
	} {
		assert.Equal(t, tc.want, humanBytes(tc.in), tc.in)
	}
}

func TestHumanDuration(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"}, {850 * time.Microsecond, "850µs"}, {12 * time.Millisecond, "12ms"},
		{1240 * time.Millisecond, "1.24s"}, {42 * time.Second, "42.0s"},
		{125 * time.Second, "2m05s"}, {62 * time.Minute, "1h02m"}, {76 * time.Hour, "3d04h"},
	} {
		assert.Equal(t, tc.want, humanDuration(tc.in), tc.in)
	}
}

func TestHumanCount(t *testing.T) {
	assert.Equal(t, "0", humanCount(0))
	assert.Equal(t, "999", humanCount(999))
	assert.Equal(t, "38,542", humanCount(38542))
	assert.Equal(t, "1,000,000", humanCount(1000000))
	assert.Equal(t, "-1,234", humanCount(-1234))
}

func TestShortIDsAreUniquePrefixesOfAtLeastEight(t *testing.T) {
	ids := []string{
		"01kb4y4vq7d3m0f1x6h9w2c8ab",
		"01kb4y4vq7d3m0f1x6h9w2c8ac", // shares 25 characters with the first
		"01kb4y4vzzzzzzzzzzzzzzzzzz", // shares 8 with both
		"zzzzzzzzzzzzzzzzzzzzzzzzzz",
		"short",
	}
	got := shortIDs(ids)
	assert.Equal(t, "01kb4y4vq7d3m0f1x6h9w2c8ab", got[ids[0]])
	assert.Equal(t, "01kb4y4vq7d3m0f1x6h9w2c8ac", got[ids[1]])
	assert.Equal(t, "01kb4y4vz", got[ids[2]])
	assert.Equal(t, "zzzzzzzz", got[ids[3]])
	assert.Equal(t, "short", got[ids[4]])
	for id, s := range got {
		n := 0
		for _, other := range ids {
			if len(other) >= len(s) && other[:len(s)] == s {
				n++
			}
		}
		assert.Equal(t, 1, n, "%s → %s is not unique", id, s)
	}
}

func TestParseAge(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"1.5h", 90 * time.Minute, true},
		{"", 0, false},
		{"d", 0, false},
		{"30x", 0, false},
		{"abc", 0, false},
	} {
		got, err := parseAge(tc.in)
		if !tc.ok {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	got, err := parseWhen("2h", now)
	require.NoError(t, err)
	assert.Equal(t, now.Add(-2*time.Hour), got)
	got, err = parseWhen("2026-11-27T10:00:00Z", now)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), got)
	got, err = parseWhen("2026-11-27", now)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 11, 27, 0, 0, 0, 0, time.Local), got)
	_, err = parseWhen("yesterday", now)
	assert.Error(t, err)
}

func TestClassifyMapsSentinelsToExitCodes(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("restore x: %w", err) }
	for _, tc := range []struct {
		err  error
		want int
	}{
		{errors.New("plain"), exitFailure},
		{usageError{err: errors.New("bad flag")}, exitUsage},
		{wrap(store.ErrNotFound), exitNotFound},
		{wrap(pluginapi.ErrTargetNotFound), exitNotFound},
		{wrap(core.ErrEngineNotFound), exitNotFound},
		{wrap(store.ErrCorrupt), exitCorrupt},
		{wrap(store.ErrBusy), exitBusy},
		{wrap(core.ErrQuotaExceeded), exitQuota},
		{wrap(core.ErrEngine), exitEngine},
		{wrap(pluginapi.ErrInvalidTarget), exitEngine},
		{wrap(&core.AmbiguousError{Ref: "01", Candidates: []string{"01a", "01b"}}), exitUsage},
		{corruptError{errors.New("3 problems")}, exitCorrupt},
		{notFoundError{errors.New("no archive")}, exitNotFound},
		{interruptedError{errors.New("context canceled")}, exitInterrupted},
	} {
		code, _ := classify(tc.err)
		assert.Equal(t, tc.want, code, "%v", tc.err)
	}
}

func TestCleanMessageDropsTransportNoise(t *testing.T) {
	assert.Equal(t, "engine \"dir\": capture: target not found: /x",
		cleanMessage("engine \"dir\": capture: rpc error: code = NotFound desc = target not found: /x"))
	assert.Equal(t, "boom", cleanMessage("boom\ngoroutine 1 [running]:\nmain.main()"))
}

// TestJSONShapesAreDocumented checks that every field the CLI prints with
// --json is named in JSON.md (the documented contract).
func TestJSONShapesAreDocumented(t *testing.T) {
	doc := jsonDoc
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || ty.PkgPath() != reflect.TypeOf(app{}).PkgPath() {
			return
		}
		seen[ty] = true
		for i := 0; i < ty.NumField(); i++ {
			f := ty.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			assert.Contains(t, doc, `"`+name+`"`, "%s.%s (json %q) is not documented in JSON.md", ty.Name(), f.Name, name)
			walk(f.Type)
		}
	}
	for _, v := range []any{snapshotJSON{}, listJSON{}, restoreJSON{}, diffJSON{}, statsJSON{}, deleteJSON{},
		cleanupJSON{}, gcJSON{}, verifyJSON{}, exportJSON{}, importJSON{}, enginesJSON{}, versionJSON{}, errorJSON{}} {
		walk(reflect.TypeOf(v))
	}
	require.Greater(t, len(seen), 15, "the walk reached the nested types")
}
