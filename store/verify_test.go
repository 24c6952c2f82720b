package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/pypj/ptest-snap/compress"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// badgerValue returns the value Badger keeps under key: the stored value
// itself, or a bulk file's locator.
func badgerValue(t *testing.T, s *Store, key []byte) []byte {
	t.Helper()
	var v []byte
	require.NoError(t, s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	}))
	return v
}

// alter flips one byte in the middle of a stored value: in its bulk file
// when it has one, as bit rot of the file would, else in Badger.
func alter(t *testing.T, s *Store, key []byte) {
	t.Helper()
	if v := badgerValue(t, s, key); isBulkLoc(v) {
		l, err := decodeBulkLoc(v)
		require.NoError(t, err)
		p := s.files.path(l.id)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		b[l.off+l.n/2] ^= 0x5a
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return
	}
	require.NoError(t, s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[len(v)/2] ^= 0x5a
		return txn.SetEntry(badger.NewEntry(key, v).WithMeta(item.UserMeta()))
	}))
}

// alterPacked flips a byte of a packed chunk inside its pack, storing the
// pack back raw (uncompressed), as bit rot of that chunk would look: into
// the pack's bulk file when it has one.
func alterPacked(t *testing.T, s *Store, h Hash) {
	t.Helper()
	v, err := s.value(chunkKey(h))
	require.NoError(t, err)
	id, off, n, err := decodeRef(v)
	require.NoError(t, err)
	pv, err := s.value(packKey(id))
	require.NoError(t, err)
	raw, err := s.codec.Decode(nil, pv)
	require.NoError(t, err)
	raw[off+n/2] ^= 0x5a
	enc := append([]byte{byte(compress.MethodRaw)}, binary.AppendUvarint(nil, uint64(len(raw)))...)
	enc = append(enc, raw...)
	if loc := badgerValue(t, s, packKey(id)); isBulkLoc(loc) {
		l, err := decodeBulkLoc(loc)
		require.NoError(t, err)
		require.Zero(t, l.off)
		// The locator's length is kept: the file is rewritten whole and
		// the locator with it.
		require.NoError(t, os.WriteFile(s.files.path(l.id), enc, 0o644))
		l.n, l.raw = int64(len(enc)), int64(len(raw))
		require.NoError(t, s.db.Update(func(txn *badger.Txn) error {
			return txn.SetEntry(badger.NewEntry(packKey(id), l.encode()).WithMeta(metaFile))
		}))
		return
	}
	require.NoError(t, s.db.Update(func(txn *badger.Txn) error { return txn.Set(packKey(id), enc) }))
}

func TestVerifyFindsCorruption(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	files := testFiles(20, 30, 2000)
	files["big.so"] = bytes.Repeat([]byte("compressible large library "), 40000) // ~1 MB, not packed
	snap := writeSnapshot(t, s, "snap", files)

	rep, err := s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	require.Empty(t, rep.Problems)

	bigH := SumChunk(files["big.so"][:0]) // placeholder, replaced below
	root, err := s.GetTree(ctx, snap.Streams[0].Root)
	require.NoError(t, err)
	var smallH Hash
	for _, n := range root.Nodes {
		switch n.Name {
		case "big.so":
			bigH = n.Content[0]
		case "f0003.py":
			smallH = n.Content[0]
		}
	}

	// A large chunk's bytes.
	alter(t, s, chunkKey(bigH))
	_, err = s.GetChunk(ctx, bigH)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), bigH.String(), "the error names the chunk")

	// A pack holding the small files.
	v, err := s.value(chunkKey(smallH))
	require.NoError(t, err)
	require.True(t, isRef(v), "small chunks are packed")
	id, _, _, err := decodeRef(v)
	require.NoError(t, err)
	alterPacked(t, s, smallH)
	s.packCache.drop(id)
	_, err = s.GetChunk(ctx, smallH)
	require.ErrorIs(t, err, ErrCorrupt)

	rep, err = s.Verify(ctx, nil, nil)
	require.NoError(t, err)
	var paths []string
	for _, p := range rep.Problems {
		assert.Equal(t, "snap", p.SnapshotID)
		assert.Equal(t, "rootfs", p.Stream)
		assert.ErrorIs(t, p.Err, ErrCorrupt)
		paths = append(paths, p.Path)
	}
	assert.Contains(t, paths, "big.so")
	assert.Contains(t, paths, "a-sub/big.so", "every path that needs the chunk is named")
	assert.Contains(t, paths, "f0003.py")
	assert.Contains(t, paths, "a-sub/f0003.py")

	// A missing tree is reported as missing, with its path.
	sub := root.Nodes[0]
	require.Equal(t, NodeDir, sub.Type)
	require.NoError(t, s.db.Update(func(txn *badger.Txn) error { return txn.Delete(chunkKey(sub.Subtree)) }))
	rep, err = s.Verify(ctx, []string{"snap"}, nil)
	require.NoError(t, err)
	found := false
	for _, p := range rep.Problems {
		if p.Path == "a-sub" {
			found = true
			assert.ErrorIs(t, p.Err, ErrNotFound)
		}
	}
	assert.True(t, found, "missing subtree reported: %v", rep.Problems)

	_, err = s.Verify(ctx, []string{"nope"}, nil)
	assert.ErrorIs(t, err, ErrNotFound)
}
