package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// level0Tables counts the level-0 tables of the open store's database.
func level0Tables(s *Store) int {
	n := 0
	for _, t := range s.db.Tables() {
		if t.Level == 0 {
			n++
		}
	}
	return n
}

// TestLevel0StaysBounded: each process that writes leaves one level-0
// table, no background compactor merges them, and the process that opens
// the store with l0CompactAt of them compacts level 0 at its Close — with
// every snapshot still readable.
func TestLevel0StaysBounded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	files := testFiles(41, 5, 200)
	for i := range 3 * l0CompactAt {
		s, err := Open(ctx, Options{Dir: dir})
		require.NoError(t, err)
		long, err := l0Long(s.opts)
		require.NoError(t, err)
		n := level0Tables(s)
		assert.Equal(t, n >= l0CompactAt, long, "open %d: %d level-0 tables", i, n)
		assert.LessOrEqual(t, n, l0CompactAt, "open %d", i)
		writeSnapshot(t, s, fmt.Sprintf("s%d", i), files)
		require.NoError(t, s.Close())
	}
	s := openTest(t, dir)
	assert.Less(t, level0Tables(s), l0CompactAt)
	for i := range 3 * l0CompactAt {
		_, err := s.Snapshot(ctx, fmt.Sprintf("s%d", i))
		assert.NoError(t, err, "s%d", i)
	}
}

// TestL0LongNewStore: a store without a database yet has no level 0.
func TestL0LongNewStore(t *testing.T) {
	long, err := l0Long(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	assert.False(t, long)
}
