package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pypj/ptest-snap/store"
)

// EventType names what happened. The first six are the original report's.
type EventType string

// Event types. Each operation emits its "-ing" event before it starts and
// either its "-ed" event or its "_failed" event (carrying the error) at the
// end.
const (
	EventSnapshotCreating      EventType = "snapshot_creating"
	EventSnapshotCreated       EventType = "snapshot_created"
	EventSnapshotCreateFailed  EventType = "snapshot_create_failed"
	EventSnapshotRestoring     EventType = "snapshot_restoring"
	EventSnapshotRestored      EventType = "snapshot_restored"
	EventSnapshotRestoreFailed EventType = "snapshot_restore_failed"
	EventSnapshotDeleting      EventType = "snapshot_deleting"
	EventSnapshotDeleted       EventType = "snapshot_deleted"
	EventSnapshotDeleteFailed  EventType = "snapshot_delete_failed"
	// EventSnapshotImported is emitted for each snapshot an import made
	// visible (an import is all or nothing, so there is no failed variant
	// per snapshot; a refused import emits EventImportFailed).
	EventSnapshotImported EventType = "snapshot_imported"
	EventImportFailed     EventType = "import_failed"
)

// Failed reports whether t is a failure event.
func (t EventType) Failed() bool {
	switch t {
	case EventSnapshotCreateFailed, EventSnapshotRestoreFailed, EventSnapshotDeleteFailed, EventImportFailed:
		return true
	}
	return false
}

// Event is one thing that happened to a snapshot. It is delivered to
// in-process listeners and appended to the store's event log as one JSON
// line.
type Event struct {
	Type       EventType `json:"type"`
	Time       time.Time `json:"time"`
	SnapshotID string    `json:"snapshot_id,omitempty"`
	Name       string    `json:"name,omitempty"`
	EnvID      string    `json:"env_id,omitempty"`
	Engine     string    `json:"engine,omitempty"`
	Target     string    `json:"target,omitempty"`
	// Bytes is the logical size handled (captured, restored, deleted).
	Bytes int64 `json:"bytes,omitempty"`
	// Files is the number of files handled, when known.
	Files int64 `json:"files,omitempty"`
	// NewBytes and StoredBytes are what a create added to the store.
	NewBytes    int64 `json:"new_bytes,omitempty"`
	StoredBytes int64 `json:"stored_bytes,omitempty"`
	// Duration is the operation's wall time so far.
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Error is the failure's message for *_failed events.
	Error string `json:"error,omitempty"`
	// PID is the process that emitted the event (another process may be
	// following the log).
	PID int `json:"pid,omitempty"`
	// Err is the failure itself, for in-process listeners (not logged).
	Err error `json:"-"`
}

// eventQueueSize is how many undelivered events a listener may have before
// further ones are dropped for it (and counted).
const eventQueueSize = 1024

// eventCloseWait bounds how long Close waits for listeners to finish the
// events already queued for them.
const eventCloseWait = 5 * time.Second

// eventBus delivers events to in-process listeners without ever blocking
// the publisher: each listener has a bounded queue drained by a goroutine
// the bus starts when the queue fills from empty and that ends when it is
// empty again, so an idle bus holds no goroutine. A listener that panics is
// recovered (and logged); a listener too slow to keep up loses events,
// counted in Dropped.
type eventBus struct {
	log *slog.Logger

	mu     sync.Mutex
	subs   map[uint64]*eventListener
	nextID uint64
	closed bool

	// drains counts running drain goroutines, so Close can wait for them.
	drains sync.WaitGroup
}

// eventListener is one subscriber and its queue.
type eventListener struct {
	fn      func(Event)
	queue   []Event // guarded by bus.mu
	running bool    // a drain goroutine owns the queue; guarded by bus.mu
	gone    bool    // unsubscribed; guarded by bus.mu
	dropped atomic.Int64
	panics  atomic.Int64
}

func newEventBus(log *slog.Logger) *eventBus {
	return &eventBus{log: log, subs: map[uint64]*eventListener{}}
}

// subscribe adds a listener; the returned func removes it (events already
// queued for it are still delivered) and is safe to call more than once.
func (b *eventBus) subscribe(fn func(Event)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return func() {}
	}
	id := b.nextID
	b.nextID++
	l := &eventListener{fn: fn}
	b.subs[id] = l
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if s, ok := b.subs[id]; ok {
			s.gone = true
			delete(b.subs, id)
		}
	}
}

// publish queues e for every listener; it never blocks on a listener.
func (b *eventBus) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for _, l := range b.subs {
		if len(l.queue) >= eventQueueSize {
			if l.dropped.Add(1) == 1 {
				b.log.Warn("event listener too slow: dropping events", "event", e.Type)
			}
			continue
		}
		l.queue = append(l.queue, e)
		if !l.running {
			l.running = true
			b.drains.Add(1)
			go b.drain(l)
		}
	}
}

// drain delivers l's queue until it is empty, then ends.
func (b *eventBus) drain(l *eventListener) {
	defer b.drains.Done()
	for {
		b.mu.Lock()
		if len(l.queue) == 0 {
			l.running = false
			b.mu.Unlock()
			return
		}
		e := l.queue[0]
		l.queue[0] = Event{}
		l.queue = l.queue[1:]
		b.mu.Unlock()
		b.deliver(l, e)
	}
}

// deliver calls the listener, recovering a panic.
func (b *eventBus) deliver(l *eventListener, e Event) {
	defer func() {
		if r := recover(); r != nil {
			l.panics.Add(1)
			b.log.Error("event listener panicked", "event", e.Type, "panic", fmt.Sprint(r))
		}
	}()
	l.fn(e)
}

// dropped returns the number of events dropped for slow listeners, over
// every listener still subscribed.
func (b *eventBus) dropped() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, l := range b.subs {
		n += l.dropped.Load()
	}
	return n
}

// close stops accepting events and waits (up to eventCloseWait) for queued
// ones to be delivered. It reports whether every drain goroutine ended.
func (b *eventBus) close() bool {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		b.drains.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(eventCloseWait):
		b.log.Warn("event listeners still busy at close; not waiting for them")
		return false
	}
}

// lifecycle is the lifecycle engineer's per-Manager state.
type lifecycle struct {
	bus *eventBus
	st  *store.Store
	log *slog.Logger
	now func() time.Time
	pid int
}

// lifecycles maps each open Manager to its lifecycle state.
// TODO(pipeline): replace with a Manager field and a close hook.
var lifecycles sync.Map // *Manager → *lifecycle

func init() {
	lifecycleInits = append(lifecycleInits, func(m *Manager) error {
		lc := &lifecycle{bus: newEventBus(m.log), st: m.store, log: m.log, now: m.now, pid: os.Getpid()}
		lifecycles.Store(m, lc)
		m.hooks.event = append(m.hooks.event, func(ctx context.Context, kind string, op *OpInfo) {
			lc.emit(ctx, eventFromOp(EventType(kind), op, lc.now()))
		})
		m.hooks.beforeCreate = append(m.hooks.beforeCreate, func(ctx context.Context, op *OpInfo) error {
			return m.checkCreateQuota(ctx, op)
		})
		return nil
	})
}

// lc returns the Manager's lifecycle state.
func (m *Manager) lc() *lifecycle {
	if v, ok := lifecycles.Load(m); ok {
		return v.(*lifecycle)
	}
	// A Manager not made by Open (never in practice): give it a private,
	// listener-less state so emit stays safe.
	v, _ := lifecycles.LoadOrStore(m, &lifecycle{bus: newEventBus(m.Logger()), st: m.store, log: m.Logger(), now: m.Now, pid: os.Getpid()})
	return v.(*lifecycle)
}

// CloseEvents stops event delivery, waiting briefly for listeners to
// receive what is queued. Manager.Close calls it; calling it earlier (or
// twice) is safe.
func (m *Manager) CloseEvents() {
	if v, ok := lifecycles.LoadAndDelete(m); ok {
		v.(*lifecycle).bus.close()
	}
}

// Subscribe registers fn to receive every event this Manager emits, on a
// goroutine of the event bus, in order. fn must not assume it runs on the
// operation's goroutine; a panic in fn is recovered and logged, and a
// listener that falls more than 1024 events behind loses events (counted by
// DroppedEvents). The returned func unsubscribes.
func (m *Manager) Subscribe(fn func(Event)) (unsubscribe func()) {
	return m.lc().bus.subscribe(fn)
}

// DroppedEvents returns how many events were dropped for slow listeners.
func (m *Manager) DroppedEvents() int64 { return m.lc().bus.dropped() }

// emit fills the event's common fields, logs it, appends it to the store's
// event log and publishes it to listeners. It never fails the operation:
// a log that cannot be written is reported through the logger.
func (lc *lifecycle) emit(ctx context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = lc.now()
	}
	e.PID = lc.pid
	level := slog.LevelInfo
	attrs := []any{"event", string(e.Type), "snapshot", e.SnapshotID}
	if e.Name != "" {
		attrs = append(attrs, "name", e.Name)
	}
	if e.Engine != "" {
		attrs = append(attrs, "engine", e.Engine, "env", e.EnvID)
	}
	if e.Bytes != 0 {
		attrs = append(attrs, "bytes", e.Bytes)
	}
	if e.Duration != 0 {
		attrs = append(attrs, "duration", e.Duration)
	}
	if e.Type.Failed() {
		level = slog.LevelError
		attrs = append(attrs, "error", e.Error)
	}
	lc.log.Log(ctx, level, "snapshot event", attrs...)
	line, err := json.Marshal(e)
	if err == nil {
		// The log append must not be cut short by a cancelled operation: a
		// failed create's event is exactly what should be recorded.
		err = lc.st.Events().Append(context.WithoutCancel(ctx), line)
	}
	if err != nil {
		lc.log.Warn("event log append failed", "event", string(e.Type), "error", err)
	}
	lc.bus.publish(e)
}

// eventFromOp builds an event from the pipeline's OpInfo.
func eventFromOp(t EventType, op *OpInfo, now time.Time) Event {
	e := Event{
		Type: t, Time: now, SnapshotID: op.SnapshotID, Name: op.Name, EnvID: op.EnvID,
		Engine: op.Engine, Target: op.Target, Bytes: op.Bytes, Duration: op.Duration,
	}
	if s := op.Snapshot; s != nil {
		fillFromSnapshot(&e, s)
		if t == EventSnapshotCreated {
			e.NewBytes, e.StoredBytes = s.Stats.NewBytes, s.Stats.StoredBytes
			if e.Duration == 0 {
				e.Duration = s.Stats.Duration
			}
		}
	}
	if op.Err != nil {
		e.Err = op.Err
		e.Error = op.Err.Error()
	}
	return e
}

// fillFromSnapshot fills the event's identity and size from a record, where
// the event does not have them yet.
func fillFromSnapshot(e *Event, s *store.Snapshot) {
	if e.SnapshotID == "" {
		e.SnapshotID = s.ID
	}
	if e.Name == "" {
		e.Name = s.Name
	}
	if e.EnvID == "" {
		e.EnvID = s.EnvID
	}
	if e.Engine == "" {
		e.Engine = s.Engine
	}
	if e.Target == "" {
		e.Target = s.Target
	}
	if e.Bytes == 0 {
		e.Bytes = s.Stats.LogicalBytes
	}
	if e.Files == 0 {
		e.Files = s.Stats.Files
	}
}

// EventsOptions select events to read from the log.
type EventsOptions struct {
	// Since skips events before this time (zero: from the start).
	Since time.Time
	// Follow keeps reading new events as they are appended, until ctx ends.
	Follow bool
	// Types, if set, selects only these event types.
	Types []EventType
	// SnapshotID, if set, selects only events of this snapshot.
	SnapshotID string
}

// Events reads this store's event log, calling fn for each selected event,
// oldest first; with Follow it waits for new ones until ctx ends (then it
// returns nil). An error from fn stops the read and is returned.
func (m *Manager) Events(ctx context.Context, opts EventsOptions, fn func(Event) error) error {
	return readEvents(ctx, m.store.Events(), opts, fn)
}

// ReadEvents reads the event log of the store in dir without opening the
// store, so it works while another process holds the store's lock.
func ReadEvents(ctx context.Context, dir string, opts EventsOptions, fn func(Event) error) error {
	l, err := store.OpenEventLog(dir)
	if err != nil {
		return fmt.Errorf("events of %s: %w", dir, err)
	}
	return readEvents(ctx, l, opts, fn)
}

func readEvents(ctx context.Context, l *store.EventLog, opts EventsOptions, fn func(Event) error) error {
	types := map[EventType]bool{}
	for _, t := range opts.Types {
		types[t] = true
	}
	_, err := l.Read(ctx, 0, opts.Follow, func(line []byte) error {
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			// A torn last line (a crash mid-append) or a foreign line is
			// skipped, not fatal: the log is history, not state.
			return nil
		}
		if !opts.Since.IsZero() && e.Time.Before(opts.Since) {
			return nil
		}
		if len(types) > 0 && !types[e.Type] {
			return nil
		}
		if opts.SnapshotID != "" && e.SnapshotID != opts.SnapshotID {
			return nil
		}
		return fn(e)
	})
	if err != nil && opts.Follow && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil // following ends when the caller cancels
	}
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	return nil
}
