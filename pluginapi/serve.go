package pluginapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/pypj/ptest-snap/internal/devprof"
	"github.com/pypj/ptest-snap/internal/gctune"
	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

// Serve serves engine as a ptest-snap engine plugin and never returns: the
// one call an engine binary's main makes. The process must not write to
// stdout before this call (the handshake line goes there); logs go to
// stderr through hclog and reach the host's log.
//
// When the host stops the plugin (go-plugin's shutdown call stops the gRPC
// server and cancels every call), Serve waits up to restoreDrain for the
// Restore calls still running, so an engine can remove a partial new
// target before the process exits. Other calls are not waited for.
func Serve(engine Engine) {
	gctune.Quiet(pluginQuietHeap, gctune.Defaults)
	defer restoreCalls.wait(restoreDrain)
	defer devprof.Start(filepath.Base(os.Args[0]))()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: HandshakeConfig(),
		Plugins:         plugin.PluginSet{pluginName: &enginePlugin{impl: engine, ring: openPluginRing()}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts,
				// The capture request carries the parent's change index,
				// which for a large tree exceeds gRPC's default 4 MiB.
				grpc.MaxRecvMsgSize(1<<30),
				grpc.InitialWindowSize(flowWindow),
				grpc.InitialConnWindowSize(flowWindow),
				grpc.WriteBufferSize(ioBufferSize),
				grpc.ReadBufferSize(ioBufferSize),
			)...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Level:      hclog.Info,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
}

// pluginQuietHeap is the memory an engine process reaches before its first
// collection; the runtime's defaults apply from then on (gctune.Quiet).
// The virtualenv engine's capture for a second create of venv-full made
// eight collections of a heap of 4-12 MB (live ~5 MB: listings and
// batches that are garbage soon after), ~50 MB allocated in all.
const pluginQuietHeap = 64 << 20

// engineServer serves an Engine over gRPC (plugin side).
type engineServer struct {
	enginepb.UnimplementedEngineServer
	impl Engine
	// ring is the shared-memory body ring the host passed, or nil.
	ring *bodyRing
}

func (s *engineServer) Info(ctx context.Context, _ *enginepb.InfoRequest) (*enginepb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if info.ProtocolVersion == 0 {
		info.ProtocolVersion = ProtocolVersion
	}
	resp := infoToProto(info)
	resp.BodyRing = s.ring != nil
	resp.PackedIndex = true
	resp.PackedRecords = true
	return resp, nil
}

func (s *engineServer) Identify(ctx context.Context, req *enginepb.IdentifyRequest) (*enginepb.IdentifyResponse, error) {
	id, err := s.impl.Identify(ctx, req.GetTarget(), req.GetOptions())
	if err != nil {
		return nil, toStatus(err)
	}
	return &enginepb.IdentifyResponse{EnvId: id.EnvID, Target: id.Target}, nil
}

func (s *engineServer) Capture(req *enginepb.CaptureRequest, stream grpc.ServerStreamingServer[enginepb.CaptureResponse]) error {
	w := &captureSender{stream: stream, indexOnly: req.GetIndexOnly()}
	w.batch.indexOnly = w.indexOnly
	w.batch.send = func(recs []*enginepb.Record, packed []byte) error {
		return stream.Send(&enginepb.CaptureResponse{Records: recs, Packed: packed})
	}
	w.batch.packed = req.GetPackedRecords()
	if req.GetSharedBodies() && s.ring.acquire() {
		defer s.ring.release()
		// Continue where the host's reading stopped; a cancelled capture
		// may have left frames it never read.
		s.ring.head = atomic.LoadUint64(s.ring.consumedPtr())
		w.batch.ring, w.batch.ctx = s.ring, stream.Context()
	}
	creq, err := captureRequestFromProto(req)
	if err != nil {
		return toStatus(fmt.Errorf("capture request: %w", err))
	}
	err = s.impl.Capture(stream.Context(), creq, w)
	if err == nil && !w.metadataSent {
		err = errors.New("engine returned without writing its metadata")
	}
	if ferr := w.end(err == nil); err == nil {
		err = ferr
	}
	return toStatus(err)
}

// captureSender is the CaptureWriter a plugin's engine writes to: it
// batches what it gets into CaptureResponse messages and checks the order
// of calls and entries, so an engine's mistake shows up in its own error.
type captureSender struct {
	stream       grpc.ServerStreamingServer[enginepb.CaptureResponse]
	indexOnly    bool
	metadataSent bool
	inStream     bool
	batch        batcher

	// An index-only capture's batch is sent at the latest indexOnlyMaxDelay
	// after its first entry, by a timer (the engine may pause long between
	// entries, checking an unchanged subtree): mu guards batch then, the
	// timer (armed while it is set), sendErr (what a timed send failed
	// with, returned by the next call) and ended (no send after end).
	mu      sync.Mutex
	timer   *time.Timer
	armed   bool
	sendErr error
	ended   bool
}

// timedFlush sends an index-only capture's batch (the timer's function).
func (w *captureSender) timedFlush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if w.ended || w.sendErr != nil {
		return
	}
	w.sendErr = w.batch.flush()
}

// arm starts the timer of an index-only capture's batch, if it holds
// records and the timer is not running. w.mu is held.
func (w *captureSender) arm() {
	if w.armed || len(w.batch.recs) == 0 {
		return
	}
	w.armed = true
	if w.timer == nil {
		w.timer = time.AfterFunc(indexOnlyMaxDelay, w.timedFlush)
		return
	}
	w.timer.Reset(indexOnlyMaxDelay)
}

// end stops the timer and, if send (the engine's Capture returned without
// an error), sends what is batched; nothing is sent afterwards.
func (w *captureSender) end(send bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if w.timer != nil {
		w.timer.Stop()
	}
	if !send {
		return nil
	}
	if w.sendErr != nil {
		return w.sendErr
	}
	return w.batch.flush()
}

func (w *captureSender) WriteMetadata(_ context.Context, m Metadata) error {
	if w.metadataSent {
		return errors.New("metadata written twice")
	}
	w.metadataSent = true
	return w.stream.Send(&enginepb.CaptureResponse{Metadata: metadataToProto(m)})
}

func (w *captureSender) BeginStream(ctx context.Context, name string) error {
	if !w.metadataSent {
		return errors.New("stream begun before the metadata was written")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w.inStream = true
	if !w.indexOnly {
		return w.batch.beginStream(name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sendErr != nil {
		return w.sendErr
	}
	if err := w.batch.beginStream(name); err != nil {
		return err
	}
	// The host starts the restore planned from this listing once its
	// first stream has begun: tell it now, not with the first entries.
	return w.batch.flush()
}

// indexOnlyMaxDelay bounds how long an entry of an index-only capture (the
// listing an in-place restore plans from while it arrives, see
// core.liveListing) waits in the plugin before it is sent, even while the
// engine pauses between entries. Batched only by count and size, a listing
// of unchanged subtrees (a few thousand entries for venv-full after a
// small change) went out as one message when it ended, so the restore it
// was planning began only then: on venv-full after change small, awscli's
// 6,562 entries were recreated after the whole listing instead of while it
// went on. A message every 2 ms is at most ~250 for a full listing of
// venv-full (~0.5 s).
const indexOnlyMaxDelay = 2 * time.Millisecond

func (w *captureSender) WriteEntry(ctx context.Context, e *Entry, body io.Reader) error {
	if !w.inStream {
		return fmt.Errorf("entry %q written before any stream began", e.Path)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !w.indexOnly {
		withBody := e.Type == TypeFile && !e.Unchanged
		return w.batch.entry(e, body, withBody)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sendErr != nil {
		return w.sendErr
	}
	if err := w.batch.entry(e, body, false); err != nil {
		return err
	}
	w.arm()
	return nil
}

// BodyFiller is implemented by the CaptureWriter a plugin's engine gets
// (captureSender): it lets the engine read a small file's body straight
// into the memory the body is sent from (the shared ring, or the batch
// message's buffer) instead of into a buffer of its own that WriteEntry
// then copies. A create of venv-full spent ~0.2 s of the plugin's CPU in
// that copy (pprof: bytes.(*Reader).Read under batcher.ringBody).
type BodyFiller interface {
	// WriteEntryFill is WriteEntry for a regular file whose body fill
	// reads: fill gets a buffer of exactly e.Size bytes and must fill it
	// whole. If fill finds the file changed, it updates *e (the path
	// stays) and returns ErrRefill, and is called again with a buffer of
	// the new e.Size; it must give up by itself, with its own error,
	// after a few attempts. fill is not called for an entry without a
	// body. The entry is sent only once fill has succeeded.
	WriteEntryFill(ctx context.Context, e *Entry, fill func(buf []byte) error) error
}

// ErrRefill is returned by a BodyFiller's fill function to have it called
// again with a buffer of the entry's updated size.
var ErrRefill = errors.New("body changed: fill again")

// WriteEntryFill implements BodyFiller.
func (w *captureSender) WriteEntryFill(ctx context.Context, e *Entry, fill func(buf []byte) error) error {
	if !w.inStream {
		return fmt.Errorf("entry %q written before any stream began", e.Path)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.Type != TypeFile || e.Unchanged || w.indexOnly {
		return w.batch.entry(e, nil, false)
	}
	return w.batch.entryFill(e, fill)
}

func (s *engineServer) Restore(stream grpc.ClientStreamingServer[enginepb.RestoreMessage, enginepb.RestoreResponse]) error {
	restoreCalls.begin()
	defer restoreCalls.end()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetRequest() == nil {
		return toStatus(protocolErrorf("the first restore message has no request"))
	}
	var ring *bodyRing
	if first.GetRequest().GetSharedBodies() {
		if !s.ring.acquire() {
			return toStatus(protocolErrorf("shared bodies offered, but the body ring is not mapped or is busy"))
		}
		defer s.ring.release()
		ring = s.ring
		ring.next = atomic.LoadUint64(ring.consumedPtr())
	}
	firstRecs := first.GetRecords()
	firstPacked := first.GetPacked()
	entries := newEntryReader(func() (wireBatch, error) {
		if firstRecs != nil || firstPacked != nil {
			b := wireBatch{recs: firstRecs, packed: firstPacked}
			firstRecs, firstPacked = nil, nil
			return b, nil
		}
		msg, err := stream.Recv()
		if err != nil {
			return wireBatch{}, err
		}
		if msg.GetRequest() != nil {
			return wireBatch{}, protocolErrorf("a second restore request")
		}
		return wireBatch{recs: msg.GetRecords(), packed: msg.GetPacked()}, nil
	}, true)
	entries.ring = ring
	entries.deletes = first.GetRequest().GetSparse()
	res, err := s.impl.Restore(stream.Context(), restoreRequestFromProto(first.GetRequest()), &restoreReceiver{entries: entries})
	if err != nil {
		return toStatus(err)
	}
	if res == nil {
		res = &RestoreResult{}
	}
	return stream.SendAndClose(restoreResultToProto(res, first.GetRequest().GetPackedRecords()))
}

// restoreReceiver is the RestoreReader a plugin's engine reads from.
type restoreReceiver struct {
	entries *entryReader
	stream  string
}

func (r *restoreReceiver) Next(ctx context.Context) (string, *Entry, io.Reader, error) {
	for {
		if err := ctx.Err(); err != nil {
			return "", nil, nil, err
		}
		begin, e, body, err := r.entries.next()
		if err != nil {
			return "", nil, nil, err
		}
		if e == nil {
			r.stream = begin
			continue
		}
		return r.stream, e, body, nil
	}
}

// restoreDrain bounds how long Serve waits for cancelled Restore calls to
// finish their cleanup once the host has stopped the plugin. The host gives
// a stopping plugin less (go-plugin's Kill waits 2 s before SIGKILL); this
// bound is for a plugin stopped some other way.
const restoreDrain = 10 * time.Second

// restoreCalls counts the plugin's Restore calls in progress.
var restoreCalls callCounter

// callCounter counts calls in progress and lets one wait, bounded, until
// none is. Unlike a sync.WaitGroup, a call may begin while another
// goroutine waits.
type callCounter struct {
	mu sync.Mutex
	n  int
	// idle is closed when n drops to zero; a new one is made when n
	// rises from zero.
	idle chan struct{}
}

func (c *callCounter) begin() {
	c.mu.Lock()
	if c.n == 0 {
		c.idle = make(chan struct{})
	}
	c.n++
	c.mu.Unlock()
}

func (c *callCounter) end() {
	c.mu.Lock()
	c.n--
	if c.n == 0 {
		close(c.idle)
	}
	c.mu.Unlock()
}

// wait waits until no call is in progress, or for d at most; it reports
// whether none is.
func (c *callCounter) wait(d time.Duration) bool {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return true
	}
	idle := c.idle
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}
