package core

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDiffPathsSizesTypesAndPackages(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	// A large unchanged subtree, to prove it is skipped.
	same := map[string]string{}
	for i := 0; i < 50; i++ {
		same[fmt.Sprintf("site/pkg%02d/__init__.py", i)] = fmt.Sprintf("pkg %d", i)
	}
	files := func(extra ...string) map[string]map[string]string {
		f := map[string]string{}
		for k, v := range same {
			f[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			f[extra[i]] = extra[i+1]
		}
		return map[string]map[string]string{"rootfs": f}
	}
	a := lcWrite(t, m, lcSnap{ID: "da", Created: retentionClock.Add(-time.Hour),
		Metadata: map[string]any{"installed_packages": map[string]string{"requests": "2.28.1", "six": "1.16.0", "idna": "3.4"}},
		Streams: files("keep", "k", "grow", "12345", "gone", "bye", "gonedir/x", "1", "gonedir/y", "22",
			"ln", "->a", "t2d", "was a file", "chmod", "m")})
	b := lcWrite(t, m, lcSnap{ID: "db", Name: "after",
		Metadata: map[string]any{"installed_packages": map[string]string{"requests": "2.31.0", "idna": "3.4", "urllib3": "2.0.7"}},
		Streams: files("keep", "k", "grow", "1234567890", "new", "hello", "newdir/z", "zz",
			"ln", "->b", "t2d/inner", "now a dir", "chmod", "m"),
		Modes: map[string]uint32{"chmod": 0o600}})

	res, err := m.Diff(ctx, "da", "after")
	require.NoError(t, err)
	assert.Equal(t, a.ID, res.From.ID)
	assert.Equal(t, b.ID, res.To.ID)
	got := map[string]PathChange{}
	var order []string
	for _, c := range res.Changes {
		got[string(c.Kind)+" "+c.Path] = c
		order = append(order, string(c.Kind)+" "+c.Path)
	}
	assert.Equal(t, []string{
		"M chmod", "- gone", "- gonedir", "- gonedir/x", "- gonedir/y", "M grow", "M ln", "+ new", "+ newdir", "+ newdir/z",
		"M t2d", "+ t2d/inner",
	}, order)
	g := got["M grow"]
	assert.True(t, g.ContentChanged)
	assert.Equal(t, int64(5), g.OldSize)
	assert.Equal(t, int64(10), g.NewSize)
	assert.True(t, got["M chmod"].ModeChanged)
	assert.False(t, got["M chmod"].ContentChanged)
	assert.Equal(t, uint32(0o600), got["M chmod"].NewMode)
	assert.True(t, got["M ln"].LinkChanged)
	assert.True(t, got["M t2d"].TypeChanged)
	assert.Equal(t, "file", got["M t2d"].OldType)
	assert.Equal(t, "dir", got["M t2d"].NewType)
	assert.Equal(t, 4, res.Added)
	assert.Equal(t, 4, res.Removed)
	assert.Equal(t, 4, res.Modified)
	// Added: new(5) + z(2) + inner(9) + growth(5); removed: gone(3) + x(1) + y(2) + t2d's file(10).
	assert.Equal(t, int64(5+2+9+5), res.AddedBytes)
	assert.Equal(t, int64(3+1+2+10), res.RemovedBytes)
	// Only the two roots and the changed dirs' trees were read, never site/.
	assert.LessOrEqual(t, res.TreesRead, 6)

	require.NotNil(t, res.Packages)
	assert.Equal(t, []PackageChange{{Name: "urllib3", New: "2.0.7"}}, res.Packages.Added)
	assert.Equal(t, []PackageChange{{Name: "six", Old: "1.16.0"}}, res.Packages.Removed)
	assert.Equal(t, []PackageChange{{Name: "requests", Old: "2.28.1", New: "2.31.0"}}, res.Packages.Changed)

	// Identical snapshots: nothing read, nothing changed.
	res, err = m.Diff(ctx, "da", "da")
	require.NoError(t, err)
	assert.Empty(t, res.Changes)
	assert.Zero(t, res.TreesRead)
}

func TestDiffStreamsAndNoPackages(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	lcWrite(t, m, lcSnap{ID: "s1", Streams: map[string]map[string]string{"rootfs": {"f": "1"}, "volume:old": {"v": "x"}}})
	lcWrite(t, m, lcSnap{ID: "s2", Metadata: map[string]any{"installed_packages": map[string]string{}},
		Streams: map[string]map[string]string{"rootfs": {"f": "1"}, "volume:new": {"w": "y"}}})
	res, err := m.Diff(ctx, "s1", "s2")
	require.NoError(t, err)
	assert.Equal(t, []string{"volume:new"}, res.StreamsAdded)
	assert.Equal(t, []string{"volume:old"}, res.StreamsRemoved)
	require.Len(t, res.Changes, 2)
	assert.Equal(t, PathChange{Kind: ChangeAdded, Stream: "volume:new", Path: "w", NewType: "file", NewSize: 1, NewMode: 0o644}, res.Changes[0])
	assert.Equal(t, "volume:old", res.Changes[1].Stream)
	assert.Nil(t, res.Packages, "only one side has a package list")
	_, err = m.Diff(ctx, "s1", "nope")
	require.ErrorIs(t, err, ErrNotFound)
}
