package core

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
	"github.com/pypj/ptest-snap/plugins/dir"
	"github.com/pypj/ptest-snap/store"
)

// listingCounter counts the index-only captures (target listings) made
// through an engine; with unreported, it drops the engine's report of the
// files it wrote, as an engine without one answers.
type listingCounter struct {
	pluginapi.Engine
	listings   atomic.Int64
	unreported bool
}

func (c *listingCounter) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	res, err := c.Engine.Restore(ctx, req, r)
	if res != nil && c.unreported {
		res.Written = nil
	}
	return res, err
}

func (c *listingCounter) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if req.IndexOnly {
		c.listings.Add(1)
	}
	return c.Engine.Capture(ctx, req, w)
}

// An in-place restore through an engine that does not report the files it
// wrote, and that rewrites few files, records its restore index from the
// listing taken before it (the files it kept) instead of listing the
// target again; the files it rewrote are left out, and the next in-place
// restore still yields exactly the snapshot.
func TestRestoreInPlaceRecordsKeptFilesWithoutRelisting(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	for i := range 2 * relistDivisor {
		writeFile(t, filepath.Join(src, "many", fmt.Sprintf("f%03d.py", i)), []byte(fmt.Sprintf("x = %d\n", i)), 0o644, fixedTime)
	}
	eng := &listingCounter{Engine: newDirEngine(), unreported: true}
	m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst})
	require.NoError(t, err)

	// One file changed (same size and mtime: only ctime tells).
	changed := filepath.Join(dst, "many", "f007.py")
	writeFile(t, changed, []byte("y = 7\n"), 0o644, fixedTime)
	captures := eng.listings.Load()
	res, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst, InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, src, dst)
	assert.EqualValues(t, 1, eng.listings.Load()-captures, "the target is listed once, before the restore")
	assert.True(t, res.Stats.Planned)
	assert.EqualValues(t, len("x = 7\n"), res.Stats.Bytes, "only the changed file is rewritten: %+v", res.Stats)

	ri := m.loadRestoreIndex(ctx, "dir", dst)
	require.NotNil(t, ri)
	assert.Equal(t, snap.ID, ri.SnapshotID)
	files := ri.Files[dir.Stream]
	assert.NotContains(t, files, "many/f007.py", "a rewritten file's statistics are unknown")
	require.Contains(t, files, "many/f008.py", "a kept file is recorded")
	st, err := os.Stat(filepath.Join(dst, "many", "f008.py"))
	require.NoError(t, err)
	assert.Equal(t, st.ModTime().UnixNano(), files["many/f008.py"].MtimeNs)

	// A kept file changed behind the index's back is still caught, and the
	// file rewritten last time is rewritten again.
	other := filepath.Join(dst, "many", "f008.py")
	writeFile(t, other, []byte("y = 8\n"), 0o644, fixedTime)
	res, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst, InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, src, dst)
	assert.Greater(t, res.Stats.Unchanged, int64(2*relistDivisor-2))
}

func sampleRestoreIndex() *restoreIndex {
	return &restoreIndex{Engine: "virtualenv", Target: "/tmp/venv", SnapshotID: "01abc",
		Files: store.ChangeIndex{
			"rootfs": {
				"bin/python3": {Size: 123, MtimeNs: -1, CtimeNs: 1 << 62, Inode: 1<<64 - 1},
				"lib/a.py":    {Size: 0, MtimeNs: 1700000000123456789, CtimeNs: 1700000000123456790, Inode: 42},
			},
			"volume:data": {},
		}}
}

func TestRestoreIndexEncodingRoundTrip(t *testing.T) {
	for name, ri := range map[string]*restoreIndex{
		"sample": sampleRestoreIndex(),
		"empty":  {Engine: "dir", Files: store.ChangeIndex{}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := decodeRestoreIndex(encodeRestoreIndex(ri))
			require.NoError(t, err)
			assert.Equal(t, ri, got)
		})
	}
	data := encodeRestoreIndex(sampleRestoreIndex())
	// Version 2 (complete, same layout) is still read.
	v2 := append([]byte(restoreIndexMagicV2), data[len(restoreIndexMagic):]...)
	got, err := decodeRestoreIndex(v2)
	require.NoError(t, err)
	assert.Equal(t, sampleRestoreIndex(), got)
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"gob":       []byte("\x1f\x8b\x08\x00"),
		"truncated": data[:len(data)-1],
		"trailing":  append(slices.Clone(data), 0),
		"version 1": append([]byte("ptest-snap restore index 1\n"), data[len(restoreIndexMagic):]...),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeRestoreIndex(bad)
			require.ErrorIs(t, err, errBadRestoreIndex)
		})
	}
}

// A restore index file that does not decode is not used (and not fatal).
func TestLoadRestoreIndexIgnoresUnreadableFile(t *testing.T) {
	ctx := context.Background()
	m := openManager(t, map[string]pluginapi.Engine{"dir": newDirEngine()})
	ri := sampleRestoreIndex()
	ri.Engine = "dir"
	require.NoError(t, m.saveRestoreIndex(ctx, ri))
	got := m.loadRestoreIndex(ctx, "dir", ri.Target)
	require.NotNil(t, got)
	assert.Equal(t, ri, got)
	require.NoError(t, os.WriteFile(m.restoreIndexPath("dir", ri.Target), []byte("\x1f\x8b\x08\x00 old gob"), 0o600))
	assert.Nil(t, m.loadRestoreIndex(ctx, "dir", ri.Target))
}

func FuzzDecodeRestoreIndex(f *testing.F) {
	f.Add(encodeRestoreIndex(sampleRestoreIndex()))
	f.Add([]byte(restoreIndexMagic + "\x01a\x00\x00\x01"))
	f.Add([]byte(restoreIndexMagic + "\x00\x00\x00\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ri, err := decodeRestoreIndex(data)
		if err != nil {
			require.ErrorIs(t, err, errBadRestoreIndex)
			return
		}
		again, err := decodeRestoreIndex(encodeRestoreIndex(ri))
		require.NoError(t, err)
		require.Equal(t, ri, again)
	})
}

// With the engine's report of the files it wrote, no restore lists the
// target afterwards, however much it rewrote: the restore index holds the
// kept files as listed before and the written ones as the engine saw them
// last (a hard-linked file after its last link), so the next in-place
// restore rewrites nothing.
func TestRestoreRecordsWrittenFilesFromTheEngine(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	for i := range 2 * relistDivisor {
		writeFile(t, filepath.Join(src, "many", fmt.Sprintf("f%03d.py", i)), []byte(fmt.Sprintf("x = %d\n", i)), 0o644, fixedTime)
	}
	eng := &listingCounter{Engine: newDirEngine()}
	m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	dst := filepath.Join(t.TempDir(), "dst")
	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst})
	require.NoError(t, err)
	assert.Zero(t, eng.listings.Load(), "a restore to a new target does not list it")

	// Every file of many/ rewritten: far more than relistDivisor allows.
	require.NoError(t, os.RemoveAll(filepath.Join(dst, "many")))
	writeFile(t, filepath.Join(dst, "a.txt"), []byte("HELLO\n"), 0o644, fixedTime)
	res, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst, InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, src, dst)
	assert.EqualValues(t, 1, eng.listings.Load(), "listed once, before the restore")
	assert.Greater(t, res.Stats.Rewritten, int64(2*relistDivisor))

	ri := m.loadRestoreIndex(ctx, "dir", dst)
	require.NotNil(t, ri)
	for _, p := range []string{"many/f007.py", "a.txt", "bin/tool", "data/big.bin"} {
		st, err := os.Stat(filepath.Join(dst, filepath.FromSlash(p)))
		require.NoError(t, err)
		sys := st.Sys().(*syscall.Stat_t)
		require.Contains(t, ri.Files[dir.Stream], p)
		assert.Equal(t, store.IndexRecord{Size: st.Size(), MtimeNs: st.ModTime().UnixNano(), CtimeNs: sys.Ctim.Nano(), Inode: sys.Ino},
			ri.Files[dir.Stream][p], "%s: its statistics now", p)
	}

	res, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, Target: dst, InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, src, dst)
	assert.Zero(t, res.Stats.Rewritten, "%+v", res.Stats)
	assert.EqualValues(t, 2, eng.listings.Load())
}
