package fstree

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// cancelAfterCtx reports itself cancelled from its n+1st Err call on, so
// a test can stop Finish after it has restored some directories' metadata
// (read-only ones included).
type cancelAfterCtx struct {
	context.Context
	left atomic.Int64
}

func cancelAfter(n int64) *cancelAfterCtx {
	c := &cancelAfterCtx{Context: context.Background()}
	c.left.Store(n)
	return c
}

func (c *cancelAfterCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// failingReader yields recs, then fails instead of ending.
type failingReader struct {
	memReader
}

var errCorruptChunk = errors.New("chunk checksum mismatch (test)")

func (r *failingReader) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	s, e, b, err := r.memReader.Next(ctx)
	if err == io.EOF {
		return "", nil, nil, errCorruptChunk
	}
	return s, e, b, err
}

// abandonStream is buildTree's capture plus many small files (queued for
// the workers when the restore is abandoned) and a symlink to a directory
// outside the target, which the removal must not follow.
func abandonStream(t *testing.T, outside string) []record {
	src := buildTree(t)
	for i := range 200 {
		writeFile(t, filepath.Join(src, "many", strings.Repeat("f", 1+i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))), "small body", 0o644)
	}
	require.NoError(t, os.Symlink(outside, filepath.Join(src, "escape")))
	return capture(t, src, CaptureOptions{}).recs
}

// TestAbandonedNewTargetIsRemoved abandons restores to a new target in
// every way one ends early: the Applier created the target (and a parent)
// and removes them; a target that existed empty is emptied and kept. The
// directory behind a symlink in the stream is untouched.
func TestAbandonedNewTargetIsRemoved(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "keep"), "not ours", 0o644)
	recs := abandonStream(t, outside)
	half := len(recs) / 2

	abandons := map[string]func(t *testing.T, a *Applier) error{
		"close midway": func(t *testing.T, a *Applier) error {
			for i := range half {
				require.NoError(t, a.Apply(context.Background(), &recs[i].e, bodyOf(recs[i])))
			}
			return a.Close()
		},
		"reader fails": func(t *testing.T, a *Applier) error {
			err := ApplyAll(context.Background(), &failingReader{memReader{recs: recs[:half]}}, map[string]*Applier{"rootfs": a})
			require.ErrorIs(t, err, errCorruptChunk)
			return nil
		},
		"cancelled while applying": func(t *testing.T, a *Applier) error {
			ctx := cancelAfter(int64(half))
			err := ApplyAll(ctx, &memReader{recs: recs}, map[string]*Applier{"rootfs": a})
			require.ErrorIs(t, err, context.Canceled)
			return a.Close() // a second Close does nothing
		},
		"finish cancelled": func(t *testing.T, a *Applier) error {
			for i := range recs {
				require.NoError(t, a.Apply(context.Background(), &recs[i].e, bodyOf(recs[i])))
			}
			// The directories the stream has passed have their
			// metadata (readonly 0555 among them when root runs the
			// test, which finishes every one early), then the context
			// ends as Finish begins.
			err := a.Finish(cancelAfter(0))
			require.ErrorIs(t, err, context.Canceled)
			return a.Close()
		},
	}
	for name, abandon := range abandons {
		t.Run(name, func(t *testing.T) {
			t.Run("created", func(t *testing.T) {
				base := t.TempDir()
				target := filepath.Join(base, "made", "target")
				a, err := NewApplier(target, ApplyOptions{})
				require.NoError(t, err)
				require.NoError(t, abandon(t, a))
				assert.NoDirExists(t, filepath.Join(base, "made"), "the target and the parent the Applier created are gone")
				assert.DirExists(t, base)
				assert.FileExists(t, filepath.Join(outside, "keep"))
			})
			t.Run("existed empty", func(t *testing.T) {
				target := t.TempDir()
				require.NoError(t, os.Chmod(target, 0o750))
				a, err := NewApplier(target, ApplyOptions{})
				require.NoError(t, err)
				require.NoError(t, abandon(t, a))
				fi, err := os.Lstat(target)
				require.NoError(t, err, "a target that existed stays")
				assert.True(t, fi.IsDir())
				assert.Equal(t, fs.FileMode(0o750), fi.Mode().Perm())
				names, err := os.ReadDir(target)
				require.NoError(t, err)
				assert.Empty(t, names)
				assert.FileExists(t, filepath.Join(outside, "keep"))
			})
		})
	}
}

// TestAbandonedNewTargetKeepsDirectoryMovedThere: if the target directory
// was replaced by another one while the restore ran, the abandon empties
// only what it holds open and does not remove the stranger's directory.
func TestAbandonedNewTargetKeepsDirectoryMovedThere(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "target")
	a, err := NewApplier(target, ApplyOptions{})
	require.NoError(t, err)
	require.NoError(t, a.Apply(context.Background(), &pluginapi.Entry{Path: "f", Type: pluginapi.TypeFile, Mode: 0o644, Size: 1}, strings.NewReader("x")))
	require.NoError(t, os.Rename(target, filepath.Join(base, "moved")))
	writeFile(t, filepath.Join(target, "theirs"), "someone else's", 0o644)
	require.NoError(t, a.Close())
	assert.FileExists(t, filepath.Join(target, "theirs"))
	names, err := os.ReadDir(filepath.Join(base, "moved"))
	require.NoError(t, err)
	assert.Empty(t, names, "what the Applier wrote is removed where it went")
}

// TestAbandonedInPlace: an in-place restore abandoned midway, or whose
// Finish fails, keeps the target (entries it did not reach as they were)
// and leaves no temporary names; a directory it was recreating appears
// whole or not at all.
func TestAbandonedInPlace(t *testing.T) {
	src := buildTree(t)
	snap := capture(t, src, CaptureOptions{})
	for _, how := range []string{"close midway", "finish fails"} {
		t.Run(how, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			require.NoError(t, restore(t, snap.recs, dst, ApplyOptions{}))
			writeFile(t, filepath.Join(dst, "lib/pkg/mod.py"), "modified", 0o644)
			writeFile(t, filepath.Join(dst, "z-added"), "added", 0o644)
			require.NoError(t, os.RemoveAll(filepath.Join(dst, "lib"))) // recreated fresh
			before := capture(t, dst, CaptureOptions{}).recs

			a, err := NewApplier(dst, ApplyOptions{InPlace: true, Workers: 4})
			require.NoError(t, err)
			var applied []string
			for _, r := range snap.recs {
				if how == "close midway" && r.e.Path == "lib/pkg-extra" {
					break // midway through recreating lib
				}
				e := r.e
				require.NoError(t, a.Apply(context.Background(), &e, bodyOf(r)))
				applied = append(applied, e.Path)
			}
			if how == "close midway" {
				require.NoError(t, a.Close())
			} else {
				require.ErrorIs(t, a.Finish(cancelAfter(0)), context.Canceled)
			}

			after := capture(t, dst, CaptureOptions{}).recs
			for _, p := range paths(after) {
				assert.NotContains(t, p, ".ptest-snap-", "temporary name left behind")
			}
			// Every entry not applied is exactly as before; those applied
			// are as the snapshot has them (directory metadata aside,
			// which Finish sets last). Hard links are compared as the
			// files they name: which name a capture reports as the link
			// moves when one of them is replaced.
			was := byPath(flattenLinks(before))
			snapshot := byPath(flattenLinks(snap.recs))
			for _, r := range flattenLinks(after) {
				if contains(applied, r.e.Path) {
					if r.e.Type != pluginapi.TypeDir {
						want := snapshot[r.e.Path]
						assert.Equal(t, want.body, r.body, r.e.Path)
						assert.Equal(t, want.e.Mode, r.e.Mode, r.e.Path)
					}
					continue
				}
				w, ok := was[r.e.Path]
				if assert.True(t, ok, "%s appeared", r.e.Path) {
					assert.Equal(t, w, r, r.e.Path)
				}
			}
			assert.FileExists(t, filepath.Join(dst, "z-added"), "in place, extras are deleted only by a successful Finish")
			if how == "close midway" {
				assert.NoDirExists(t, filepath.Join(dst, "lib"), "a recreated directory appears only whole")
			} else {
				assert.FileExists(t, filepath.Join(dst, "lib/pkg-extra/z.py"), "written whole before Finish failed")
			}
		})
	}
}

func bodyOf(r record) io.Reader {
	if !r.hasBody {
		return nil
	}
	return strings.NewReader(string(r.body))
}

func byPath(recs []record) map[string]record {
	m := make(map[string]record, len(recs))
	for _, r := range recs {
		m[r.e.Path] = r
	}
	return m
}

func contains(ps []string, p string) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
