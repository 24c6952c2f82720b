package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPutGetChunk(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	data := []byte("hello, store")
	h, err := w.PutChunk(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, SumChunk(data), h)
	h2, err := w.PutChunk(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, h, h2)
	assert.Equal(t, int64(1), w.Stats().NewChunks, "second put is deduplicated")

	got, err := s.GetChunk(ctx, h)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	ok, err := s.HasChunk(ctx, h)
	require.NoError(t, err)
	assert.True(t, ok)

	_, err = s.GetChunk(ctx, SumChunk([]byte("absent")))
	assert.ErrorIs(t, err, ErrNotFound)
	w.Abort()
}

func TestCommitAndLookups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	files := testFiles(1, 50, 3000)
	a := writeSnapshot(t, s, "01A", files)
	files["new.py"] = []byte("print('new')\n")
	b := writeSnapshot(t, s, "01B", files)

	got, err := s.Snapshot(ctx, "01A")
	require.NoError(t, err)
	assert.Equal(t, a.Streams, got.Streams)
	assert.Equal(t, FormatMajor, got.FormatMajor)

	all, err := s.Snapshots(ctx)
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, "01A", all[0].ID)

	byEnv, err := s.SnapshotsByEnv(ctx, "dir", "env1")
	require.NoError(t, err)
	require.Len(t, byEnv, 2)
	assert.Equal(t, b.ID, byEnv[0].ID, "newest first")
	none, err := s.SnapshotsByEnv(ctx, "dir", "env")
	require.NoError(t, err)
	assert.Empty(t, none, "env ids are matched whole, not by prefix")

	ids, err := s.IDsWithPrefix(ctx, "01")
	require.NoError(t, err)
	assert.Equal(t, []string{"01A", "01B"}, ids)

	idx, err := s.ChangeIndex(ctx, "01B")
	require.NoError(t, err)
	assert.Len(t, idx["rootfs"], 51)
	assert.Equal(t, IndexRecord{Size: 3000, MtimeNs: 1, CtimeNs: 2, Inode: 3}, idx["rootfs"]["f0001.py"])

	_, err = s.Snapshot(ctx, "nope")
	assert.ErrorIs(t, err, ErrNotFound)

	// Names are unique.
	a.Name = "base"
	require.NoError(t, s.UpdateSnapshot(ctx, a))
	byName, err := s.SnapshotByName(ctx, "base")
	require.NoError(t, err)
	assert.Equal(t, "01A", byName.ID)
	b.Name = "base"
	assert.ErrorIs(t, s.UpdateSnapshot(ctx, b), ErrExists)
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	dup := &Snapshot{ID: "01C", Name: "base", Engine: "dir", EnvID: "env1", CreatedAt: time.Now(), Streams: a.Streams}
	assert.ErrorIs(t, w.Commit(ctx, dup, nil), ErrExists)
	_, err = s.Snapshot(ctx, "01C")
	assert.ErrorIs(t, err, ErrNotFound, "a failed commit leaves nothing visible")
	dup.Name = "other"
	require.NoError(t, w.Commit(ctx, dup, nil))
	_, err = s.ChangeIndex(ctx, "01C")
	assert.ErrorIs(t, err, ErrNotFound)

	// Delete, twice.
	require.NoError(t, s.DeleteSnapshot(ctx, "01A"))
	assert.ErrorIs(t, s.DeleteSnapshot(ctx, "01A"), ErrNotFound)
	_, err = s.SnapshotByName(ctx, "base")
	assert.ErrorIs(t, err, ErrNotFound)

	// Everything survives a reopen, and the files read back.
	require.NoError(t, s.Close())
	s2 := openTest(t, dir)
	rep, err := s2.Verify(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, 2, rep.Snapshots)
	root, err := s2.GetTree(ctx, b.Streams[0].Root)
	require.NoError(t, err)
	for _, n := range root.Nodes {
		if n.Type != NodeFile {
			continue
		}
		var body []byte
		for _, c := range n.Content {
			d, err := s2.GetChunk(ctx, c)
			require.NoError(t, err)
			body = append(body, d...)
		}
		assert.Equal(t, files[n.Name], body, n.Name)
	}
}

func TestNewerFormatsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir})
	require.NoError(t, err)
	snap := writeSnapshot(t, s, "old", testFiles(30, 3, 100))

	// A record written by a newer major version is refused by name.
	snap.FormatMajor = FormatMajor + 1
	rec, err := json.Marshal(snap)
	require.NoError(t, err)
	require.NoError(t, s.db.Update(func(txn *badger.Txn) error { return txn.Set(snapshotKey("old"), rec) }))
	_, err = s.Snapshot(ctx, "old")
	assert.ErrorIs(t, err, ErrNewerFormat)
	_, err = s.Snapshots(ctx)
	assert.ErrorIs(t, err, ErrNewerFormat)

	// A store of a newer layout is refused at Open.
	require.NoError(t, s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey("format"), []byte{StoreFormat + 1}) }))
	require.NoError(t, s.Close())
	_, err = Open(ctx, Options{Dir: dir})
	assert.ErrorIs(t, err, ErrNewerFormat)
	// And the failed Open released the lock.
	_, err = Open(ctx, Options{Dir: dir})
	assert.ErrorIs(t, err, ErrNewerFormat)
}

func TestClosedStore(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: t.TempDir()})
	require.NoError(t, err)
	w, err := s.NewWriter(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	assert.ErrorIs(t, s.Close(), ErrClosed)
	_, err = w.PutChunk(ctx, []byte("x"))
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.Snapshots(ctx)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = s.GetChunk(ctx, Hash{})
	assert.ErrorIs(t, err, ErrClosed)
}
