package core

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/store"
)

func lcIDs(snaps []*store.Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	return out
}

func TestDeleteByIDPrefixAndNameTogether(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	a := lcWrite(t, m, lcSnap{ID: "aaa111", Streams: lcFiles("f", "1")})
	b := lcWrite(t, m, lcSnap{ID: "bbb222", Name: "base", Streams: lcFiles("f", "2")})
	c := lcWrite(t, m, lcSnap{ID: "ccc333", Streams: lcFiles("f", "3")})
	keep := lcWrite(t, m, lcSnap{ID: "ddd444", Streams: lcFiles("f", "4")})

	rep, err := m.Delete(ctx, DeleteOptions{Refs: []string{"aaa111", "base", "ccc", "bbb2"}})
	require.NoError(t, err)
	assert.Equal(t, []string{a.ID, b.ID, c.ID}, lcIDs(rep.Snapshots), "a snapshot named twice is deleted once")
	all, err := m.Store().Snapshots(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{keep.ID}, lcIDs(all))
	_, err = m.Resolve(ctx, "base")
	require.ErrorIs(t, err, ErrNotFound, "the name is free again")
}

func TestDeleteDryRunAndBadRefDeleteNothing(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	lcWrite(t, m, lcSnap{ID: "x1", Streams: lcFiles("f", "1")})
	lcWrite(t, m, lcSnap{ID: "x2", Streams: lcFiles("f", "2")})

	rep, err := m.Delete(ctx, DeleteOptions{Refs: []string{"x1"}, DryRun: true})
	require.NoError(t, err)
	assert.True(t, rep.DryRun)
	assert.Equal(t, []string{"x1"}, lcIDs(rep.Snapshots))

	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"x1", "nope"}})
	require.ErrorIs(t, err, ErrNotFound)
	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"x1", "x"}})
	require.ErrorIs(t, err, ErrAmbiguous)
	assert.Contains(t, err.Error(), "x1, x2")
	_, err = m.Delete(ctx, DeleteOptions{})
	require.ErrorIs(t, err, ErrInvalidOptions)

	all, err := m.Store().Snapshots(ctx)
	require.NoError(t, err)
	assert.Len(t, all, 2, "nothing was deleted")
}

func TestDeleteEmitsEventsAndGCReclaims(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	var mu sync.Mutex
	var got []Event
	unsub := m.Subscribe(func(e Event) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	})
	defer unsub()
	big := strings.Repeat("unique content that only this snapshot holds ", 4000)
	s := lcWrite(t, m, lcSnap{ID: "gone", Name: "n1", Streams: lcFiles("big", big, "small", "x")})
	lcWrite(t, m, lcSnap{ID: "stays", Streams: lcFiles("small", "x")})
	u0, err := m.Store().Usage(ctx)
	require.NoError(t, err)

	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"gone"}})
	require.NoError(t, err)
	st, err := m.GC(ctx)
	require.NoError(t, err)
	assert.Greater(t, st.ChunksDeleted, int64(0))
	u1, err := m.Store().Usage(ctx)
	require.NoError(t, err)
	assert.Less(t, u1.StoredBytes, u0.StoredBytes)
	assert.Less(t, u1.ChunkBytes, u0.ChunkBytes-int64(len(big))+1)

	m.CloseEvents() // flushes delivery
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 2)
	assert.Equal(t, EventSnapshotDeleting, got[0].Type)
	assert.Equal(t, EventSnapshotDeleted, got[1].Type)
	for _, e := range got {
		assert.Equal(t, s.ID, e.SnapshotID)
		assert.Equal(t, "n1", e.Name)
		assert.Equal(t, "dir", e.Engine)
		assert.Equal(t, "env1", e.EnvID)
		assert.Equal(t, int64(len(big)+1), e.Bytes)
		assert.Equal(t, int64(2), e.Files)
	}
}

// TestGCWithOptionsReportsPhases checks that the store's GC progress reaches
// the caller through Manager.GCWithOptions and through Cleanup: every phase,
// in order, with the mark phase counting the snapshots kept.
func TestGCWithOptionsReportsPhases(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	collect := func() (*[]store.GCProgress, func(store.GCProgress)) {
		var got []store.GCProgress
		return &got, func(p store.GCProgress) { got = append(got, p) }
	}
	phases := func(got []store.GCProgress) []store.GCPhase {
		var out []store.GCPhase
		for _, p := range got {
			if len(out) == 0 || out[len(out)-1] != p.Phase {
				out = append(out, p.Phase)
			}
		}
		return out
	}
	lastOf := func(got []store.GCProgress, ph store.GCPhase) store.GCProgress {
		var last store.GCProgress
		for _, p := range got {
			if p.Phase == ph {
				last = p
			}
		}
		return last
	}

	lcWrite(t, m, lcSnap{ID: "gone", Streams: lcFiles("big", strings.Repeat("only here ", 3000))})
	lcWrite(t, m, lcSnap{ID: "stays", Streams: lcFiles("small", "x")})
	_, err := m.Delete(ctx, DeleteOptions{Refs: []string{"gone"}})
	require.NoError(t, err)
	got, fn := collect()
	st, err := m.GCWithOptions(ctx, GCOptions{Progress: fn})
	require.NoError(t, err)
	require.Greater(t, st.ChunksDeleted, int64(0))
	assert.Equal(t, []store.GCPhase{store.GCMark, store.GCSweep, store.GCRepack, store.GCVlog}, phases(*got))
	assert.Equal(t, store.GCProgress{Phase: store.GCMark, Done: 1, Total: 1}, lastOf(*got, store.GCMark))
	sweep := lastOf(*got, store.GCSweep)
	assert.Equal(t, sweep.Total, sweep.Done)
	assert.Equal(t, st.ChunksDeleted, sweep.Total)

	// Nothing to delete: no vlog phase.
	got, fn = collect()
	_, err = m.GCWithOptions(ctx, GCOptions{Progress: fn})
	require.NoError(t, err)
	assert.Equal(t, []store.GCPhase{store.GCMark, store.GCSweep, store.GCRepack}, phases(*got))

	// Cleanup passes its GC's progress on.
	lcWrite(t, m, lcSnap{ID: "old", Created: retentionClock.Add(-40 * 24 * time.Hour), Streams: lcFiles("f", "old only")})
	got, fn = collect()
	rep, err := m.Cleanup(ctx, CleanupOptions{GC: true, GCProgress: fn})
	require.NoError(t, err)
	require.Equal(t, []string{"old"}, lcIDs(rep.Removed))
	require.NotNil(t, rep.GC)
	assert.Equal(t, []store.GCPhase{store.GCMark, store.GCSweep, store.GCRepack, store.GCVlog}, phases(*got))
}

func TestCleanupDefaultAgeAndDryRun(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	day := 24 * time.Hour
	old := lcWrite(t, m, lcSnap{ID: "old", Created: retentionClock.Add(-31 * day), Streams: lcFiles("f", "1")})
	older := lcWrite(t, m, lcSnap{ID: "older", EnvID: "env2", Created: retentionClock.Add(-40 * day), Streams: lcFiles("f", "2")})
	lcWrite(t, m, lcSnap{ID: "new", Created: retentionClock.Add(-29 * day), Streams: lcFiles("f", "3")})

	rep, err := m.Cleanup(ctx, CleanupOptions{DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, DefaultCleanupAge, rep.Policy.OlderThan)
	assert.ElementsMatch(t, []string{old.ID, older.ID}, lcIDs(rep.Removed))
	assert.Equal(t, 1, rep.Kept)
	require.Len(t, rep.Groups, 2)
	all, _ := m.Store().Snapshots(ctx)
	assert.Len(t, all, 3, "dry run deletes nothing")

	rep, err = m.Cleanup(ctx, CleanupOptions{EnvID: "env1", GC: true})
	require.NoError(t, err)
	assert.Equal(t, []string{old.ID}, lcIDs(rep.Removed), "env filter")
	require.NotNil(t, rep.GC)
	all, _ = m.Store().Snapshots(ctx)
	assert.ElementsMatch(t, []string{"older", "new"}, lcIDs(all))
}

func TestCleanupRetentionKeepsWithReasons(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	for i := 0; i < 5; i++ {
		labels := map[string]string(nil)
		if i == 4 {
			labels = map[string]string{"pin": "yes"}
		}
		lcWrite(t, m, lcSnap{ID: string(rune('a' + i)), Created: retentionClock.Add(-time.Duration(i) * time.Hour), Labels: labels, Streams: lcFiles("f", string(rune('a'+i)))})
	}
	rep, err := m.Cleanup(ctx, CleanupOptions{Policy: RetentionPolicy{KeepLast: 2, KeepLabels: []string{"pin=yes"}}})
	require.NoError(t, err)
	assert.Equal(t, []string{"c", "d"}, lcIDs(rep.Removed))
	assert.Equal(t, 3, rep.Kept)
	reasons := map[string]string{}
	for _, d := range rep.Groups[0].Decisions {
		reasons[d.Snapshot.ID] = strings.Join(d.Reasons, "; ")
	}
	assert.Equal(t, map[string]string{"a": "last 1/2", "b": "last 2/2", "c": "no rule keeps it", "d": "no rule keeps it", "e": "label pin=yes"}, reasons)
	all, _ := m.Store().Snapshots(ctx)
	assert.ElementsMatch(t, []string{"a", "b", "e"}, lcIDs(all))
}

func TestQuotaSnapshotsPerEnv(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t, func(o *Options) { o.MaxSnapshotsPerEnv = 2 })
	lcWrite(t, m, lcSnap{ID: "q1", Streams: lcFiles("f", "1")})
	require.NoError(t, m.CheckQuota(ctx, "dir", "env1"))
	lcWrite(t, m, lcSnap{ID: "q2", Streams: lcFiles("f", "2")})
	err := m.CheckQuota(ctx, "dir", "env1")
	require.ErrorIs(t, err, ErrQuotaExceeded)
	var qe *QuotaError
	require.ErrorAs(t, err, &qe)
	assert.Equal(t, QuotaSnapshotsPerEnv, qe.Limit)
	assert.Equal(t, int64(1), qe.Over)
	assert.Contains(t, err.Error(), "has 2 snapshots; another would make 3, over the limit of 2 by 1")
	require.NoError(t, m.CheckQuota(ctx, "dir", "other-env"), "per env")
	require.NoError(t, m.CheckQuota(ctx, "virtualenv", "env1"), "per engine too")
	// The hook the pipeline's Create calls before writing anything.
	require.ErrorIs(t, m.checkBeforeCreate(ctx, &OpInfo{Op: "create", Engine: "dir", EnvID: "env1"}), ErrQuotaExceeded)
}

func TestQuotaStoreBytes(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t, func(o *Options) { o.MaxStoreBytes = 1000 })
	require.NoError(t, m.CheckQuota(ctx, "dir", "env1"))
	// Incompressible-ish content well over the limit.
	var b strings.Builder
	for i := 0; i < 3000; i++ {
		b.WriteByte(byte(i*7919>>3) ^ byte(i))
		b.WriteString(string(rune('a' + i%26)))
	}
	lcWrite(t, m, lcSnap{ID: "big", Streams: lcFiles("f", b.String())})
	err := m.CheckQuota(ctx, "dir", "env1")
	require.ErrorIs(t, err, ErrQuotaExceeded)
	var qe *QuotaError
	require.ErrorAs(t, err, &qe)
	assert.Equal(t, QuotaStoreBytes, qe.Limit)
	assert.Equal(t, qe.Current-1000, qe.Over)
	assert.Contains(t, err.Error(), "over the limit of 1000 B by")
}

func TestDeleteAllOfAnEnvironment(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	lcWrite(t, m, lcSnap{ID: "e1a", EnvID: "one", Streams: lcFiles("f", "1")})
	lcWrite(t, m, lcSnap{ID: "e1b", EnvID: "one", Created: retentionClock.Add(-time.Hour), Streams: lcFiles("f", "2")})
	lcWrite(t, m, lcSnap{ID: "e2", EnvID: "two", Streams: lcFiles("f", "3")})
	lcWrite(t, m, lcSnap{ID: "e1v", EnvID: "one", Engine: "virtualenv", Streams: lcFiles("f", "4")})
	rep, err := m.Delete(ctx, DeleteOptions{Engine: "dir", EnvID: "one", Refs: []string{"e1a"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"e1a", "e1b"}, lcIDs(rep.Snapshots), "newest first, e1a once")
	assert.Equal(t, []string{"e1v", "e2"}, lcSnapIDs(t, m))
	_, err = m.Delete(ctx, DeleteOptions{EnvID: "two"})
	require.ErrorIs(t, err, ErrInvalidOptions)
}
