package core

import (
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewIDSortsByTimeAndRoundTrips(t *testing.T) {
	base := time.Date(2026, 1, 28, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 200; i++ {
		id := NewID(base.Add(time.Duration(i) * time.Millisecond))
		require.Len(t, id, IDLen)
		got, ok := IDTime(id)
		require.True(t, ok, id)
		require.True(t, got.Equal(base.Add(time.Duration(i)*time.Millisecond)), "%s: %v", id, got)
		ids = append(ids, id)
	}
	assert.True(t, sort.StringsAreSorted(ids), "IDs must sort by creation time")

	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		id := NewID(base)
		require.False(t, seen[id], "duplicate ID %s", id)
		seen[id] = true
	}
	_, ok := IDTime("snapshot_1640000000")
	assert.False(t, ok)
}

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"snapshot_1640000000", true},
		{"a", true},
		{"v1.2-rc_3", true},
		{"", false},
		{"_x", false},
		{"-x", false},
		{"a/b", false},
		{"a b", false},
		{"..", false},
		{string(make([]byte, 129)), false},
	} {
		err := ValidateID(tc.in)
		if tc.ok {
			assert.NoError(t, err, tc.in)
		} else {
			assert.ErrorIs(t, err, ErrInvalidID, tc.in)
		}
	}
}

func TestAmbiguousErrorListsCandidates(t *testing.T) {
	err := error(&AmbiguousError{Ref: "01", Candidates: []string{"01a", "01b"}})
	assert.True(t, errors.Is(err, ErrAmbiguous))
	assert.Contains(t, err.Error(), "01a")
	assert.Contains(t, err.Error(), "01b")
}
