package core

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/store"
)

func TestErrorsAreDistinct(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644, fixedTime)
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})

	_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, ID: "abc1", Name: "one"})
	require.NoError(t, err)
	_, err = m.Create(ctx, CreateOptions{Engine: "dir", Target: src, ID: "abc2"})
	require.NoError(t, err)
	_, err = m.Create(ctx, CreateOptions{Engine: "dir", Target: src, ID: "snapshot_1640000000"})
	require.NoError(t, err, "the original report's ID form is accepted")

	sentinels := []error{ErrNotFound, ErrAmbiguous, ErrNameTaken, ErrIDTaken, ErrTargetNotEmpty, ErrEngineNotFound, ErrInvalidID}
	nonEmpty := t.TempDir()
	writeFile(t, filepath.Join(nonEmpty, "keep"), []byte("mine"), 0o644, fixedTime)
	cases := []struct {
		name string
		want error
		run  func() error
	}{
		{"unknown id", ErrNotFound, func() error { _, err := m.Resolve(ctx, "zzz-unknown"); return err }},
		{"ambiguous prefix", ErrAmbiguous, func() error { _, err := m.Resolve(ctx, "abc"); return err }},
		{"duplicate name", ErrNameTaken, func() error {
			_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Name: "one"})
			return err
		}},
		{"duplicate id", ErrIDTaken, func() error {
			_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, ID: "abc1"})
			return err
		}},
		{"non-empty target", ErrTargetNotEmpty, func() error {
			_, err := m.Restore(ctx, RestoreOptions{Ref: "one", Target: nonEmpty})
			return err
		}},
		{"unknown engine", ErrEngineNotFound, func() error {
			_, err := m.Create(ctx, CreateOptions{Engine: "nope", Target: src})
			return err
		}},
		{"bad id", ErrInvalidID, func() error {
			_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, ID: "../x"})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			require.ErrorIs(t, err, tc.want)
			for _, other := range sentinels {
				if other != tc.want {
					assert.NotErrorIs(t, err, other)
				}
			}
		})
	}
	_, err = m.Resolve(ctx, "abc")
	assert.Contains(t, err.Error(), "abc1")
	assert.Contains(t, err.Error(), "abc2")
	assert.FileExists(t, filepath.Join(nonEmpty, "keep"))
	_, err = m.Resolve(ctx, "abc2")
	assert.NoError(t, err, "an exact ID wins over a prefix")

	snaps, err := m.Store().Snapshots(ctx)
	require.NoError(t, err)
	assert.Len(t, snaps, 3, "failed creates store nothing")
}

// corruptChunk rewrites a stored chunk's bytes directly in Badger.
func corruptChunk(t *testing.T, storeDir string, h store.Hash) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(storeDir, "db")).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	key := append([]byte{'c'}, h[:]...)
	require.NoError(t, db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if len(v) > 17 && v[0] == bulkLocatorMarker {
			// The value locates a bulk file (store/bulk_files.go): alter
			// the stored bytes in the file, not the locator, so the
			// restore meets data that fails its hash.
			return flipFileBytes(filepath.Join(storeDir, "bulk", hex.EncodeToString(v[1:17])))
		}
		v[len(v)/2] ^= 0x55
		v[len(v)-1] ^= 0x55
		return txn.Set(key, v)
	}))
}

// bulkLocatorMarker starts a store value that names a bulk file instead of
// holding the bytes (store/bulk_files.go, bulkMarker).
const bulkLocatorMarker = 0x81

// flipFileBytes alters a file's middle and last byte in place.
func flipFileBytes(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[len(b)/2] ^= 0x55
	b[len(b)-1] ^= 0x55
	return os.WriteFile(path, b, 0o644)
}

func TestRestoreCorruptChunkNamesFileAndLeavesNoCorruptFile(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	dir := t.TempDir()
	eng := map[string]pluginapi.Engine{"dir": newDirEngine()}
	m := openManagerAt(t, dir, eng)
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)

	// The big file's last chunk: a restore must fail before the file is
	// complete.
	root, err := m.Store().GetTree(ctx, snap.Streams[0].Root)
	require.NoError(t, err)
	dataTree, err := m.Store().GetTree(ctx, findNode(root, "data").Subtree)
	require.NoError(t, err)
	big := findNode(dataTree, "big.bin")
	require.Greater(t, len(big.Content), 1)
	require.NoError(t, m.Close())
	corruptChunk(t, dir, big.Content[len(big.Content)-1])

	m = openManagerAt(t, dir, eng)
	rep, err := m.Store().Verify(ctx, nil, nil)
	require.NoError(t, err)
	require.NotEmpty(t, rep.Problems)
	assert.Equal(t, "data/big.bin", rep.Problems[0].Path)

	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "data/big.bin")
	assert.Contains(t, err.Error(), snap.ID)
	if _, err := os.Lstat(filepath.Join(dst, "data", "big.bin")); err == nil {
		b, _ := os.ReadFile(filepath.Join(dst, "data", "big.bin"))
		want, _ := os.ReadFile(filepath.Join(src, "data", "big.bin"))
		assert.True(t, bytes.Equal(b, want), "a corrupt data/big.bin was left behind (%d bytes)", len(b))
	}

	// In place over a target whose big.bin differs: the old file stays.
	writeFile(t, filepath.Join(src, "data", "big.bin"), []byte("local"), 0o640, fixedTime)
	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: src, InPlace: true})
	require.ErrorIs(t, err, ErrCorrupt)
	b, err := os.ReadFile(filepath.Join(src, "data", "big.bin"))
	require.NoError(t, err)
	assert.Equal(t, "local", string(b))
}

func TestCreateCancelledOrFailingLeavesNothing(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	for i := 0; i < 20; i++ {
		writeFile(t, filepath.Join(src, "many", fmt.Sprintf("f%02d", i)), randBytes(200<<10), 0o644, fixedTime)
	}
	for _, tc := range []struct {
		name   string
		cancel bool
		want   error
	}{
		{"ctx cancelled", true, context.Canceled},
		{"engine fails", false, ErrEngine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			eng := &countingEngine{Engine: newDirEngine()}
			eng.onEntry = func(n int64) error {
				if n == 20 {
					if tc.cancel {
						cancel()
						return nil
					}
					return errors.New("engine crashed")
				}
				return nil
			}
			m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
			_, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src, Name: "x"})
			require.ErrorIs(t, err, tc.want)

			bg := context.Background()
			snaps, err := m.Store().Snapshots(bg)
			require.NoError(t, err)
			assert.Empty(t, snaps)
			_, err = m.Resolve(bg, "x")
			assert.ErrorIs(t, err, ErrNotFound)

			eng.onEntry = nil
			snap, err := m.Create(bg, CreateOptions{Engine: "dir", Target: src, Name: "x"})
			require.NoError(t, err)
			rep, err := m.Store().Verify(bg, nil, nil)
			require.NoError(t, err)
			assert.Empty(t, rep.Problems)
			dst := filepath.Join(t.TempDir(), "dst")
			_, err = m.Restore(bg, RestoreOptions{Ref: snap.ID, Target: dst})
			require.NoError(t, err)
			requireSameTree(t, src, dst)
		})
	}
}

func TestConcurrentCreatesWhileGC(t *testing.T) {
	ctx := context.Background()
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	base := t.TempDir()
	shared := randBytes(200 << 10)
	var srcs []string
	for i := 0; i < 8; i++ {
		src := filepath.Join(base, fmt.Sprint(i))
		writeFile(t, filepath.Join(src, "shared.bin"), shared, 0o644, fixedTime)
		writeFile(t, filepath.Join(src, "own.bin"), randBytes(300<<10+i), 0o644, fixedTime)
		for j := 0; j < 20; j++ {
			writeFile(t, filepath.Join(src, "small", fmt.Sprint(j)), []byte(fmt.Sprintf("file %d of %d", j, i)), 0o644, fixedTime)
		}
		srcs = append(srcs, src)
	}
	// A snapshot to delete, so GC has garbage to sweep.
	old, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: srcs[0]})
	require.NoError(t, err)
	require.NoError(t, m.Store().DeleteSnapshot(ctx, old.ID))

	gcCtx, stopGC := context.WithCancel(ctx)
	gcDone := make(chan error, 1)
	go func() {
		for gcCtx.Err() == nil {
			if _, err := m.Store().GC(gcCtx); err != nil && gcCtx.Err() == nil {
				gcDone <- err
				return
			}
		}
		gcDone <- nil
	}()
	var wg sync.WaitGroup
	snaps := make([]*store.Snapshot, len(srcs))
	errs := make([]error, len(srcs))
	for i, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			snaps[i], errs[i] = m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
		}()
	}
	wg.Wait()
	stopGC()
	require.NoError(t, <-gcDone)
	for _, err := range errs {
		require.NoError(t, err)
	}
	_, err = m.Store().GC(ctx)
	require.NoError(t, err)
	rep, err := m.Store().Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, len(srcs), rep.Snapshots)
	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: snaps[3].ID, Target: dst})
	require.NoError(t, err)
	requireSameTree(t, srcs[3], dst)
}
