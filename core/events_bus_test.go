package core

import (
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestEventBusDeliversInOrder(t *testing.T) {
	b := newEventBus(discardLogger())
	var mu sync.Mutex
	var got []string
	unsub := b.subscribe(func(e Event) {
		mu.Lock()
		got = append(got, e.SnapshotID)
		mu.Unlock()
	})
	for _, id := range []string{"a", "b", "c", "d"} {
		b.publish(Event{Type: EventSnapshotCreated, SnapshotID: id})
	}
	require.True(t, b.close())
	unsub()
	unsub() // twice is harmless
	assert.Equal(t, []string{"a", "b", "c", "d"}, got)
}

func TestEventBusSurvivesPanickingListener(t *testing.T) {
	b := newEventBus(discardLogger())
	var mu sync.Mutex
	var got int
	b.subscribe(func(Event) { panic("listener bug") })
	b.subscribe(func(Event) {
		mu.Lock()
		got++
		mu.Unlock()
	})
	b.publish(Event{Type: EventSnapshotDeleting})
	b.publish(Event{Type: EventSnapshotDeleted})
	require.True(t, b.close())
	assert.Equal(t, 2, got, "the healthy listener gets every event")
	for _, l := range b.subs {
		if l.panics.Load() > 0 {
			assert.Equal(t, int64(2), l.panics.Load())
		}
	}
}

func TestEventBusDropsForSlowListenerWithoutBlocking(t *testing.T) {
	b := newEventBus(discardLogger())
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var slowGot int
	b.subscribe(func(Event) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		slowGot++ // one drain goroutine at a time: no race
	})
	var fast sync.WaitGroup
	fast.Add(100)
	b.subscribe(func(Event) { fast.Done() })
	b.publish(Event{Type: EventSnapshotCreating})
	<-entered // the slow listener now holds one event and blocks
	for i := 0; i < 99; i++ {
		b.publish(Event{Type: EventSnapshotCreated})
	}
	fast.Wait() // a fast listener is not held up by the slow one
	for i := 0; i < eventQueueSize; i++ {
		b.publish(Event{Type: EventSnapshotCreated}) // never blocks
	}
	// The slow listener's queue holds 1024 events; it lost the other 99
	// (the fast one may have lost some too if it fell behind; it is counted
	// the same way).
	assert.GreaterOrEqual(t, b.dropped(), int64(99))
	close(release)
	require.True(t, b.close())
	assert.Equal(t, 1+eventQueueSize, slowGot)
}

func TestEventBusUnsubscribeAndClosed(t *testing.T) {
	b := newEventBus(discardLogger())
	var mu sync.Mutex
	n := 0
	unsub := b.subscribe(func(Event) { mu.Lock(); n++; mu.Unlock() })
	b.publish(Event{})
	unsub()
	b.publish(Event{})
	require.True(t, b.close())
	b.publish(Event{}) // after close: ignored, no panic
	b.subscribe(func(Event) { t.Error("subscribed after close") })()
	b.publish(Event{})
	assert.Equal(t, 1, n)
}

func TestEventTypeFailed(t *testing.T) {
	for _, tt := range []EventType{EventSnapshotCreateFailed, EventSnapshotRestoreFailed, EventSnapshotDeleteFailed, EventImportFailed} {
		assert.True(t, tt.Failed(), tt)
	}
	assert.False(t, EventSnapshotCreated.Failed())
}
