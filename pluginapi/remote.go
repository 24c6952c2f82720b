package pluginapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

// This file is the host's Engine over gRPC: Plugin's Engine methods, with
// every answer the plugin sends validated before the core sees it.

var _ Engine = (*Plugin)(nil)

// exitGrace is how long the host waits, after the connection to a plugin
// broke, for its process to be seen gone, to tell a crash from a transport
// hiccup.
const exitGrace = 2 * time.Second

// prefetch is how many capture messages are received (and decoded) ahead of
// the writer, so decoding overlaps with the writer's hashing.
const prefetch = 4

// Info asks the engine to describe itself.
func (p *Plugin) Info(ctx context.Context) (Info, error) {
	ctx, cancel := p.host.callContext(ctx)
	defer cancel()
	resp, err := p.rpc.Info(ctx, &enginepb.InfoRequest{})
	if err != nil {
		return Info{}, p.fail(ctx, "info", err)
	}
	p.storeInfo(resp)
	info := infoFromProto(resp)
	p.fingerprints.Store(info.Has(CapParentFingerprints))
	return info, nil
}

// Identify asks the engine which environment target is.
func (p *Plugin) Identify(ctx context.Context, target string, options map[string]string) (Identity, error) {
	ctx, cancel := p.host.callContext(ctx)
	defer cancel()
	resp, err := p.rpc.Identify(ctx, &enginepb.IdentifyRequest{Target: target, Options: options})
	if err != nil {
		return Identity{}, p.fail(ctx, "identify "+target, err)
	}
	return Identity{EnvID: resp.GetEnvId(), Target: resp.GetTarget()}, nil
}

// Capture runs the engine's capture and hands what it streams to w, after
// checking it: metadata first, streams with unique names, entries with safe
// paths in sorted pre-order, bodies of exactly their size in frames of at
// most MaxFrameSize. On any failure the plugin's stream is cancelled and the
// error names the engine; a plugin that broke the protocol, crashed, or did
// not answer before ctx ended is killed.
func (p *Plugin) Capture(ctx context.Context, req *CaptureRequest, w CaptureWriter) error {
	op := "capture " + req.Target
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The parent index goes as fingerprints to an engine whose Info
	// declared it takes them (fingerprints.go), else packed to one whose
	// Info said it decodes it (index_wire.go); the host asks Info before a
	// capture.
	wire, err := captureRequestToProto(req, parentWire{packed: p.packedIndex.Load(), fingerprints: p.fingerprints.Load()})
	if err != nil {
		return fmt.Errorf("engine %q: %s: %w", p.name, op, err)
	}
	wire.PackedRecords = p.packedRecords.Load()
	var ring *bodyRing
	complete := false
	if !req.IndexOnly && p.ring.acquire() {
		ring = p.ring
		ring.next = atomic.LoadUint64(ring.consumedPtr())
		wire.SharedBodies = true
		defer func() {
			// A capture abandoned midway may leave the engine writing into
			// the ring for a moment; the ring is not used again.
			if !complete {
				ring.close()
			}
			ring.release()
		}()
	}
	stream, err := p.rpc.Capture(sctx, wire)
	if err != nil {
		return p.fail(ctx, op, err)
	}

	// The receiver goroutine decodes ahead of the writer; it stops when the
	// stream ends or sctx is cancelled, and Capture waits for it.
	type received struct {
		msg *enginepb.CaptureResponse
		err error
	}
	msgs := make(chan received, prefetch)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(msgs)
		for {
			msg, err := stream.Recv()
			select {
			case msgs <- received{msg, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	recv := func() (*enginepb.CaptureResponse, error) {
		r, ok := <-msgs
		if !ok {
			return nil, context.Cause(sctx)
		}
		return r.msg, r.err
	}

	first, err := recv()
	if err == io.EOF {
		err = protocolErrorf("capture stream ended before the metadata")
	}
	if err != nil {
		return p.fail(ctx, op, err)
	}
	if first.GetMetadata() == nil {
		return p.fail(ctx, op, protocolErrorf("the first capture message has no metadata"))
	}
	if err := w.WriteMetadata(ctx, metadataFromProto(first.GetMetadata())); err != nil {
		return p.writerFailed(ctx, op, err, p.kill)
	}
	firstRecs := first.GetRecords()
	firstPacked := first.GetPacked()
	if len(firstPacked) > 0 && !wire.PackedRecords {
		return p.fail(ctx, op, protocolErrorf("packed records sent, but not asked for"))
	}
	entries := newEntryReader(func() (wireBatch, error) {
		if firstRecs != nil || firstPacked != nil {
			b := wireBatch{recs: firstRecs, packed: firstPacked}
			firstRecs, firstPacked = nil, nil
			return b, nil
		}
		msg, err := recv()
		if err != nil {
			return wireBatch{}, err
		}
		if msg.GetMetadata() != nil {
			return wireBatch{}, protocolErrorf("metadata sent twice")
		}
		if len(msg.GetPacked()) > 0 && !wire.PackedRecords {
			return wireBatch{}, protocolErrorf("packed records sent, but not asked for")
		}
		return wireBatch{recs: msg.GetRecords(), packed: msg.GetPacked()}, nil
	}, !req.IndexOnly)
	entries.ring = ring

	for {
		begin, e, body, err := entries.next()
		if err == io.EOF {
			complete = true
			return nil
		}
		if err != nil {
			return p.fail(ctx, op, err)
		}
		if e == nil {
			if err := w.BeginStream(ctx, begin); err != nil {
				return p.writerFailed(ctx, op, err, p.kill)
			}
			continue
		}
		if err := w.WriteEntry(ctx, e, body); err != nil {
			// A body that failed to arrive is the engine's failure, not
			// the writer's.
			if entries.body.err != nil {
				return p.fail(ctx, op, entries.body.err)
			}
			return p.writerFailed(ctx, op, err, p.kill)
		}
	}
}

// Restore streams the request and then every entry r yields, with bodies, to
// the engine, and returns the engine's answer.
//
// If ctx ends first, the call is cancelled and the plugin stopped
// gracefully (Plugin.Close): the engine's Restore sees the cancellation and
// can remove a partial new target before its process exits; one that does
// not finish within Close's grace is killed.
//
// The engine may answer before it has read every entry (it found it had
// nothing more to do, or it failed): the host then stops sending at once,
// even while it waits for room in the shared ring, and returns that answer.
func (p *Plugin) Restore(ctx context.Context, req *RestoreRequest, r RestoreReader) (*RestoreResult, error) {
	op := "restore " + req.Target
	p.restores.Add(1)
	defer p.restores.Add(-1)
	wire := restoreRequestToProto(req)
	ringOK, packed := p.restoreWire(ctx)
	wire.PackedRecords = packed
	var ring *bodyRing
	complete := false
	if ringOK && p.ring.acquire() {
		ring = p.ring
		ring.head = atomic.LoadUint64(ring.consumedPtr())
		wire.SharedBodies = true
		defer func() {
			// Unless the engine answered, it may still be reading the
			// ring; it is not used again. An engine that answered has
			// released it, and the next call starts at its consumed
			// position, past whatever the last call left unread.
			if !complete {
				ring.close()
			}
			ring.release()
		}()
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The answer may carry the report of every file written.
	stream, err := p.rpc.Restore(sctx, grpc.MaxCallRecvMsgSize(MaxRestoreAnswerSize))
	if err != nil {
		return nil, p.failRestore(ctx, op, err)
	}

	// The engine's answer is awaited from the start, by a goroutine that
	// stops when it arrives or sctx is cancelled; Restore waits for it.
	// Its arrival ends callCtx, which stops the sending.
	callCtx, endCall := context.WithCancelCause(sctx)
	defer endCall(nil)
	answered := make(chan restoreAnswer, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp := new(enginepb.RestoreResponse)
		err := stream.RecvMsg(resp)
		answered <- restoreAnswer{resp, err}
		endCall(errCallEnded)
	}()
	defer wg.Wait()
	defer cancel()

	// A send fails with io.EOF, and a wait for ring space with
	// errCallEnded, when the engine has ended the call; its answer then
	// tells how.
	engineEnded := false
	ended := func(err error) bool { return err == io.EOF || errors.Is(err, errCallEnded) }
	if err := stream.Send(&enginepb.RestoreMessage{Request: wire}); err != nil {
		if !ended(err) {
			return nil, p.failRestore(ctx, op, err)
		}
		engineEnded = true
	}
	b := batcher{send: func(recs []*enginepb.Record, packed []byte) error {
		return stream.Send(&enginepb.RestoreMessage{Records: recs, Packed: packed})
	}, ring: ring, ctx: callCtx, packed: wire.PackedRecords}
	current := ""
	ready, _ := r.(ReadyReader)
	for !engineEnded {
		if context.Cause(callCtx) == errCallEnded {
			engineEnded = true
			break
		}
		if ready != nil && !ready.Ready() {
			// Next would wait: let the engine have what is batched.
			if err := b.flush(); ended(err) {
				engineEnded = true
				break
			} else if err != nil {
				return nil, p.failRestore(ctx, op, err)
			}
		}
		name, e, body, err := r.Next(ctx)
		if err == io.EOF {
			if err := b.flush(); ended(err) {
				engineEnded = true
			} else if err != nil {
				return nil, p.failRestore(ctx, op, err)
			}
			break
		}
		if err != nil {
			return nil, p.writerFailed(ctx, op, err, p.stopGracefully)
		}
		if name != current {
			current = name
			err = b.beginStream(name)
		}
		if err == nil {
			err = b.entry(e, body, e.Type == TypeFile && !e.Unchanged && !e.Delete)
		}
		if ended(err) {
			engineEnded = true
			break
		}
		if err != nil {
			if errors.Is(err, ErrUnsafePath) || errors.Is(err, ErrProtocol) {
				return nil, fmt.Errorf("restore to engine %q: %w", p.name, err)
			}
			if ctx.Err() == nil && isTransport(err) {
				return nil, p.failRestore(ctx, op, err)
			}
			return nil, p.writerFailed(ctx, op, err, p.stopGracefully)
		}
	}
	if !engineEnded {
		if err := stream.CloseSend(); err != nil {
			return nil, p.failRestore(ctx, op, err)
		}
	}
	// The answer comes, or ctx ends (sctx with it) and the answer is an
	// error.
	a := <-answered
	if a.err != nil {
		_, fromEngine := fromStatus(a.err)
		complete = fromEngine && sctx.Err() == nil
		return nil, p.failRestore(ctx, op, a.err)
	}
	complete = true
	res, err := restoreResultFromProto(a.resp)
	if err != nil {
		return nil, p.fail(ctx, op, err)
	}
	return res, nil
}

// restoreAnswer is what the engine answered a Restore: its result, or why
// the call failed.
type restoreAnswer struct {
	resp *enginepb.RestoreResponse
	err  error
}

// errCallEnded is the cause of a Restore's call context once the engine has
// answered: nothing more it is sent would be read.
var errCallEnded = errors.New("the engine ended the call")

// writerFailed returns the host's own error (the capture's writer, the
// restore's reader) as it is; the engine's call is cancelled. If ctx ended,
// the engine is stopped too (by stop), since it may not heed the
// cancellation.
func (p *Plugin) writerFailed(ctx context.Context, op string, err error, stop func()) error {
	if ctx.Err() != nil {
		stop()
		return fmt.Errorf("engine %q: %s: %w", p.name, op, err)
	}
	return err
}

// storeInfo keeps what an Info answer says of the wire.
func (p *Plugin) storeInfo(resp *enginepb.InfoResponse) {
	p.packedIndex.Store(resp.GetPackedIndex())
	p.ringOK.Store(resp.GetBodyRing())
	p.packedRecords.Store(resp.GetPackedRecords() && !p.host.opts.RecordMessages)
	p.infoSeen.Store(true)
}

// restoreWire reports whether the engine maps the body ring and takes
// shared frames in Restore, and whether it reads packed records; its
// Info says so, asked here once unless the host asked it already (as the
// core does before every restore).
func (p *Plugin) restoreWire(ctx context.Context) (ring, packed bool) {
	if !p.infoSeen.Load() {
		p.infoOnce.Do(func() {
			ctx, cancel := p.host.callContext(ctx)
			defer cancel()
			if info, err := p.rpc.Info(ctx, &enginepb.InfoRequest{}); err == nil {
				p.storeInfo(info)
			}
		})
	}
	return p.ring != nil && p.ringOK.Load(), p.packedRecords.Load()
}

// isTransport reports whether err came from the gRPC stream rather than
// from reading the snapshot.
func isTransport(err error) bool {
	_, fromEngine := fromStatus(err)
	return !fromEngine && !errors.Is(err, io.ErrUnexpectedEOF)
}

// stopGracefully stops the plugin by Plugin.Close: after a cancelled
// Restore, so the engine's cleanup (removing a partial new target) runs.
func (p *Plugin) stopGracefully() { _ = p.Close() }

// fail turns an error of an RPC into the error the core sees, naming the
// engine, and kills the plugin when it can no longer be trusted: ctx ended
// (it may be hung), it broke the protocol, or its process died.
func (p *Plugin) fail(ctx context.Context, op string, err error) error {
	return p.failStopping(ctx, op, err, p.kill)
}

// failRestore is fail for a Restore: if ctx ended, the plugin is stopped
// gracefully rather than killed, so the engine can clean up.
func (p *Plugin) failRestore(ctx context.Context, op string, err error) error {
	return p.failStopping(ctx, op, err, p.stopGracefully)
}

// failStopping is fail, with stop stopping the plugin when ctx ended; a
// plugin that broke the protocol or died is killed regardless.
func (p *Plugin) failStopping(ctx context.Context, op string, err error, stop func()) error {
	ctxErr := ctx.Err()
	if _, hasDeadline := ctx.Deadline(); ctxErr == nil && hasDeadline && status.Code(err) == codes.DeadlineExceeded {
		// The engine's side saw the deadline (sent along as grpc-timeout)
		// pass a moment before ctx did here.
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil {
		stop()
		return fmt.Errorf("engine %q: %s: %w (the engine process was stopped)", p.name, op, ctxErr)
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max") {
		// gRPC on the host refused a message over MaxMessageSize.
		err = protocolErrorf("a message over the %d-byte limit: %s", MaxMessageSize, st.Message())
	}
	if errors.Is(err, ErrProtocol) || errors.Is(err, ErrUnsafePath) && !isRemote(err) {
		p.kill()
		return fmt.Errorf("engine %q: %s: refused what the engine sent: %w", p.name, op, err)
	}
	mapped, fromEngine := fromStatus(err)
	if fromEngine {
		return fmt.Errorf("engine %q: %s: %w", p.name, op, mapped)
	}
	if p.stopped.Load() {
		return fmt.Errorf("engine %q: %s: %w: stopped by the host (%v)", p.name, op, ErrPluginExited, mapped)
	}
	if p.waitExited(exitGrace) {
		p.kill()
		return fmt.Errorf("engine %q: %s: %w unexpectedly (%v)", p.name, op, ErrPluginExited, mapped)
	}
	return fmt.Errorf("engine %q: %s: %w", p.name, op, mapped)
}

func isRemote(err error) bool {
	var r *remoteError
	return errors.As(err, &r)
}
