package core

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventLogReadFilterAndFollowWhileStoreHeld(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := lcOpenAt(t, dir)
	lcWrite(t, m, lcSnap{ID: "e1", Streams: lcFiles("f", "1")})
	lcWrite(t, m, lcSnap{ID: "e2", Streams: lcFiles("f", "2")})
	_, err := m.Delete(ctx, DeleteOptions{Refs: []string{"e1"}})
	require.NoError(t, err)
	// The pipeline's hook, as Create calls it on failure.
	m.emit(ctx, string(EventSnapshotCreateFailed), &OpInfo{Op: "create", Engine: "dir", EnvID: "env9", Err: errors.New("engine crashed")})

	var all []Event
	require.NoError(t, m.Events(ctx, EventsOptions{}, func(e Event) error { all = append(all, e); return nil }))
	require.Len(t, all, 3)
	assert.Equal(t, []EventType{EventSnapshotDeleting, EventSnapshotDeleted, EventSnapshotCreateFailed},
		[]EventType{all[0].Type, all[1].Type, all[2].Type})
	assert.Equal(t, "engine crashed", all[2].Error)
	assert.Equal(t, "env9", all[2].EnvID)
	assert.NotZero(t, all[0].PID)
	assert.Equal(t, retentionClock, all[0].Time.UTC(), "the Manager's clock stamps events")

	// Another reader, without the store's lock (the Manager still holds it).
	var failed []Event
	require.NoError(t, ReadEvents(ctx, dir, EventsOptions{Types: []EventType{EventSnapshotCreateFailed}}, func(e Event) error {
		failed = append(failed, e)
		return nil
	}))
	require.Len(t, failed, 1)
	var ofE1 int
	require.NoError(t, ReadEvents(ctx, dir, EventsOptions{SnapshotID: "e1", Since: retentionClock.Add(-time.Hour)}, func(e Event) error {
		ofE1++
		return nil
	}))
	assert.Equal(t, 2, ofE1)
	n := 0
	require.NoError(t, ReadEvents(ctx, dir, EventsOptions{Since: retentionClock.Add(time.Hour)}, func(Event) error { n++; return nil }))
	assert.Zero(t, n, "since skips older events")

	// Follow: a reader sees an event appended after it started.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := make(chan Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- ReadEvents(fctx, dir, EventsOptions{Follow: true, Types: []EventType{EventSnapshotDeleted}}, func(e Event) error {
			seen <- e
			return nil
		})
	}()
	first := <-seen
	assert.Equal(t, "e1", first.SnapshotID)
	_, err = m.Delete(ctx, DeleteOptions{Refs: []string{"e2"}})
	require.NoError(t, err)
	second := <-seen
	assert.Equal(t, "e2", second.SnapshotID)
	cancel()
	require.NoError(t, <-done, "following ends cleanly when cancelled")
}

func TestEventFromOpCarriesFigures(t *testing.T) {
	m := lcOpen(t)
	snap := lcWrite(t, m, lcSnap{ID: "fig", Name: "nm", Streams: lcFiles("a", "12345", "b", "67")})
	snap.Stats.NewBytes, snap.Stats.StoredBytes, snap.Stats.Duration = 7, 5, time.Second
	e := eventFromOp(EventSnapshotCreated, &OpInfo{Op: "create", Snapshot: snap}, retentionClock)
	assert.Equal(t, "fig", e.SnapshotID)
	assert.Equal(t, "nm", e.Name)
	assert.Equal(t, int64(7), e.Bytes)
	assert.Equal(t, int64(2), e.Files)
	assert.Equal(t, int64(7), e.NewBytes)
	assert.Equal(t, int64(5), e.StoredBytes)
	assert.Equal(t, time.Second, e.Duration)
}

// TestCloseDeliversQueuedEvents checks that Manager.Close stops the event
// bus (CloseEvents) before closing the store: listeners receive what was
// queued without an explicit CloseEvents, and the Manager's lifecycle state
// is released.
func TestCloseDeliversQueuedEvents(t *testing.T) {
	ctx := context.Background()
	m := lcOpen(t)
	var got []EventType // read after Close: its wait for delivery orders it
	m.Subscribe(func(e Event) { got = append(got, e.Type) })
	lcWrite(t, m, lcSnap{ID: "c1", Streams: lcFiles("f", "1")})
	_, err := m.Delete(ctx, DeleteOptions{Refs: []string{"c1"}})
	require.NoError(t, err)
	require.NoError(t, m.Close())
	assert.Equal(t, []EventType{EventSnapshotDeleting, EventSnapshotDeleted}, got)
	_, ok := lifecycles.Load(m)
	assert.False(t, ok, "Close released the lifecycle state")
	require.NoError(t, m.Close(), "a second Close is a no-op")
}
