package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenAfterCrashLeftEmptyFiles: a process killed between creating a
// memtable or value-log file and sizing it leaves a 0-byte file, on which
// Badger's Open fails ("Create a new file", badger issue #2207). The store
// opens anyway, with its data.
func TestOpenAfterCrashLeftEmptyFiles(t *testing.T) {
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s, err := Open(ctx, Options{Dir: dir})
			require.NoError(t, err)
			snap := writeSnapshot(t, s, "one", testFiles(3, 20, 3000))
			require.NoError(t, s.Close())

			empty := filepath.Join(dbDir(dir), name)
			require.NoError(t, os.WriteFile(empty, nil, 0o644))
			s, err = Open(ctx, Options{Dir: dir})
			require.NoError(t, err)
			defer s.Close()
			_, err = s.Snapshot(ctx, snap.ID)
			require.NoError(t, err)
			rep, err := s.Verify(ctx, nil, nil)
			require.NoError(t, err)
			assert.Empty(t, rep.Problems)
			writeSnapshot(t, s, "two", testFiles(4, 20, 3000))
		})
	}
}
