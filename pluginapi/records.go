package pluginapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	enginepb "github.com/pypj/ptest-snap/pluginapi/proto"
)

// This file holds the record layer both directions share: a recordSource
// reads records across messages, an entryReader turns them back into
// validated entries with bodies, and a batcher packs entries and their
// bodies into messages of about BatchBytes.

// BatchBytes is how many body bytes a batch message carries before it is
// sent: many small files share one message, a large file's body is cut into
// frames that fill messages to this size. Together with the entries a
// message stays well under gRPC's default 4 MiB message limit.
const BatchBytes = MaxFrameSize

// maxBatchRecords bounds the records of one message, so a tree of empty
// files or directories still goes out in messages of reasonable size.
const maxBatchRecords = 4096

// MaxMessageSize is the largest batch message either side accepts: gRPC's
// default, which every implementation applies unless told otherwise.
const MaxMessageSize = 4 << 20

// MaxRestoreAnswerSize is the largest answer to a Restore the host
// accepts: it may report the statistics of every file written
// (RestoreResult.Written), ~110 bytes a file, 4.2 MB for venv-full's
// 38,546 files. Reporting them costs far less than the host listing the
// target again (~0.4 s there).
const MaxRestoreAnswerSize = 64 << 20

// recordSource yields the records of successive messages.
type recordSource struct {
	// recv returns the next message's records, io.EOF after the last.
	recv   func() (wireBatch, error)
	recs   []*enginepb.Record
	packed packedReader
	err    error
}

func (s *recordSource) next() (record, error) {
	for {
		if len(s.recs) > 0 {
			r := s.recs[0]
			s.recs[0] = nil // let the GC have bodies already consumed
			s.recs = s.recs[1:]
			return recordFromProto(r), nil
		}
		if s.packed.more() {
			r, err := s.packed.next()
			if err != nil {
				s.recs, s.err = nil, err
			}
			return r, err
		}
		if s.err != nil {
			return record{}, s.err
		}
		var b wireBatch
		b, s.err = s.recv()
		s.recs, s.packed.b = b.recs, b.packed
	}
}

// protocolErrorf reports what a peer sent that breaks the protocol.
func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// entryReader reads streams, entries and bodies from records, refusing
// anything the protocol does not allow: unsafe paths, entries out of order,
// frames larger than MaxFrameSize, bodies whose length is not Size.
type entryReader struct {
	src recordSource
	// bodies is false for an index-only capture: no entry has a body.
	bodies bool

	stream  string
	streams map[string]bool
	order   orderChecker
	body    bodyReader
	// deletes: entries may be marked Delete (a sparse restore).
	deletes bool
	// ring, if set, holds the bytes of shared frames (host side);
	// ringBuf is the private copy of the current one.
	ring    *bodyRing
	ringBuf []byte
}

func newEntryReader(recv func() (wireBatch, error), bodies bool) *entryReader {
	return &entryReader{src: recordSource{recv: recv}, bodies: bodies, streams: map[string]bool{}}
}

// next returns either the name of a stream that begins (e == nil) or the
// next entry of the current stream with its body (nil when it has none).
// The previous body is drained, and checked, first. It returns io.EOF after
// the last record.
func (r *entryReader) next() (begin string, e *Entry, body io.Reader, err error) {
	if err := r.body.drain(); err != nil {
		return "", nil, nil, err
	}
	rec, err := r.src.next()
	if err != nil {
		return "", nil, nil, err
	}
	switch rec.kind {
	case recBegin:
		name := rec.name
		if name == "" {
			return "", nil, nil, protocolErrorf("stream with an empty name")
		}
		if r.streams[name] {
			return "", nil, nil, protocolErrorf("stream %q sent twice", name)
		}
		r.streams[name] = true
		r.stream = name
		r.order = orderChecker{indexOnly: !r.bodies}
		return name, nil, nil, nil
	case recEntry:
		e := rec.entry
		if r.stream == "" {
			return "", nil, nil, protocolErrorf("entry %q before any stream began", e.Path)
		}
		if err := r.order.check(e); err != nil {
			return "", nil, nil, fmt.Errorf("stream %q: %w", r.stream, err)
		}
		if e.Delete && !r.deletes {
			return "", nil, nil, protocolErrorf("stream %q: %q marked delete outside a sparse restore", r.stream, e.Path)
		}
		if r.bodies && e.Type == TypeFile && !e.Unchanged && !e.Delete {
			r.body = bodyReader{src: &r.src, path: e.Path, remaining: e.Size, owner: r}
			return "", e, &r.body, nil
		}
		r.body = bodyReader{}
		return "", e, nil, nil
	case recData, recShared:
		return "", nil, nil, protocolErrorf("stream %q: data frame without a file to belong to", r.stream)
	default:
		return "", nil, nil, protocolErrorf("empty or unknown record")
	}
}

// bodyReader yields one file's body from the data records that follow its
// entry.
//
// A frame in the shared ring is not copied out into a buffer of its own:
// Read copies it straight from the ring into the caller's memory, the one
// copy the consumer must make anyway (the producer could change bytes
// still in the ring), and hands its space back once the frame is read. A
// create of venv-full copied its 334 MiB of bodies twice before (ring to
// frame buffer, frame buffer to the chunk's), ~1.4 % of the CLI's CPU on
// the capture goroutine in the first copy alone (perf).
type bodyReader struct {
	src       *recordSource
	owner     *entryReader
	path      string
	remaining int64
	frame     []byte
	// shared: frame is the unread rest of a frame still in the ring
	// (bodyRing.view), handed back once read.
	shared bool
	err    error
}

// nextFrame loads the next frame of the body. A shared frame stays in the
// ring (b.shared) when inPlace is set; otherwise it is copied out.
func (b *bodyReader) nextFrame(inPlace bool) error {
	for len(b.frame) == 0 {
		rec, err := b.src.next()
		if err == io.EOF {
			err = protocolErrorf("body of %q ends %d bytes short of its size", b.path, b.remaining)
		}
		if err != nil {
			return err
		}
		var frame []byte
		switch rec.kind {
		case recData:
			frame = rec.data
			if err := b.checkFrame(int64(len(frame))); err != nil {
				return err
			}
		case recShared:
			if b.owner.ring == nil {
				return protocolErrorf("shared frame in %q, but no shared ring was offered", b.path)
			}
			if err := b.checkFrame(int64(rec.length)); err != nil {
				return err
			}
			frame, err = b.owner.ring.view(rec.pos, rec.length)
			if err != nil {
				return err
			}
			if len(frame) == 0 {
				b.owner.ring.handBack()
				continue
			}
			if inPlace {
				b.shared = true
			} else {
				if b.owner.ringBuf == nil {
					b.owner.ringBuf = make([]byte, 0, MaxFrameSize)
				}
				b.owner.ringBuf = append(b.owner.ringBuf[:0], frame...)
				b.owner.ring.handBack()
				frame = b.owner.ringBuf
			}
		default:
			return protocolErrorf("body of %q ends %d bytes short of its size", b.path, b.remaining)
		}
		b.frame = frame
	}
	return nil
}

// consumed drops the first n bytes of the frame, read, and hands a shared
// frame back to the ring once it is all read.
func (b *bodyReader) consumed(n int) {
	b.frame = b.frame[n:]
	b.remaining -= int64(n)
	if b.shared && len(b.frame) == 0 {
		b.shared = false
		b.owner.ring.handBack()
	}
}

func (b *bodyReader) checkFrame(n int64) error {
	if n > MaxFrameSize {
		return protocolErrorf("frame of %d bytes in %q exceeds the %d-byte limit", n, b.path, MaxFrameSize)
	}
	if n > b.remaining {
		return protocolErrorf("body of %q is longer than its size", b.path)
	}
	return nil
}

// Read implements io.Reader.
func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.remaining == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(b.frame) == 0 {
		if b.err = b.nextFrame(true); b.err != nil {
			return 0, b.err
		}
	}
	n := copy(p, b.frame)
	b.consumed(n)
	return n, nil
}

// WriteTo implements io.WriterTo, so io.Copy hands the frames to w without
// an intermediate copy. Frames of the shared ring are copied out first: w
// must never see memory the producer can still change.
func (b *bodyReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for b.err == nil && b.remaining > 0 {
		if b.shared {
			// The rest of a frame Read left in the ring.
			if b.owner.ringBuf == nil {
				b.owner.ringBuf = make([]byte, 0, MaxFrameSize)
			}
			b.owner.ringBuf = append(b.owner.ringBuf[:0], b.frame...)
			b.frame = b.owner.ringBuf
			b.shared = false
			b.owner.ring.handBack()
		}
		if len(b.frame) == 0 {
			if b.err = b.nextFrame(false); b.err != nil {
				break
			}
		}
		n, err := w.Write(b.frame)
		total += int64(n)
		b.consumed(n)
		if err != nil {
			return total, err
		}
	}
	return total, b.err
}

// drain consumes what the receiver of the body left unread, so the next
// record is read from the right place, and reports a malformed body.
// Shared frames are skipped where they lie, not copied.
func (b *bodyReader) drain() error {
	if b.src == nil {
		return nil
	}
	for b.err == nil && b.remaining > 0 {
		if len(b.frame) == 0 {
			if b.err = b.nextFrame(true); b.err != nil {
				break
			}
		}
		b.consumed(len(b.frame))
	}
	b.src = nil
	return b.err
}

// orderChecker enforces the order of a stream's entries: safe paths,
// depth-first pre-order with siblings sorted by name, every entry's parent
// directory sent before it, hard links naming an earlier path.
type orderChecker struct {
	prev string
	// dirs is the chain of directories from the root to the previous entry.
	dirs []string
	// indexOnly: the entries are an IndexOnly capture's, where any regular
	// file may leave its xattrs unread (Entry.XattrsFromParent).
	indexOnly bool
}

func (o *orderChecker) check(e *Entry) error {
	if err := ValidatePath(e.Path); err != nil {
		return err
	}
	switch e.Type {
	case TypeFile, TypeDir, TypeSymlink, TypeHardlink:
	default:
		return protocolErrorf("%q has invalid entry type %d", e.Path, e.Type)
	}
	if e.Mode&^07777 != 0 {
		return protocolErrorf("%q has mode %#o with bits beyond 07777", e.Path, e.Mode)
	}
	if e.Size < 0 {
		return protocolErrorf("%q has negative size %d", e.Path, e.Size)
	}
	if e.Delete && e.Unchanged {
		return protocolErrorf("%q is marked both delete and unchanged", e.Path)
	}
	if e.XattrsFromParent && (e.Type != TypeFile || !e.Unchanged && !o.indexOnly || len(e.Xattrs) > 0) {
		return protocolErrorf("%q takes its xattrs from the parent but is not an unchanged file without xattrs", e.Path)
	}
	if (e.SubtreeFiles != 0 || e.SubtreeDirs != 0 || e.SubtreeBytes != 0) && (e.Type != TypeDir || !e.Unchanged) {
		return protocolErrorf("%q counts a subtree but is not an unchanged directory", e.Path)
	}
	if e.SubtreeFiles < 0 || e.SubtreeDirs < 0 || e.SubtreeBytes < 0 {
		return protocolErrorf("%q has negative subtree counts", e.Path)
	}
	if o.prev != "" && ComparePaths(o.prev, e.Path) >= 0 {
		return protocolErrorf("%q comes after %q: entries must be in sorted pre-order", e.Path, o.prev)
	}
	parent := ""
	if i := strings.LastIndexByte(e.Path, '/'); i >= 0 {
		parent = e.Path[:i]
	}
	for len(o.dirs) > 0 && o.dirs[len(o.dirs)-1] != parent {
		o.dirs = o.dirs[:len(o.dirs)-1]
	}
	if parent != "" && len(o.dirs) == 0 {
		return protocolErrorf("%q arrives before its parent directory %q", e.Path, parent)
	}
	if e.Delete {
		// Nothing follows beneath a deleted directory.
		o.prev = e.Path
		return nil
	}
	if e.Type == TypeHardlink {
		if err := ValidatePath(e.LinkTarget); err != nil {
			return fmt.Errorf("hard link %q: %w", e.Path, err)
		}
		if ComparePaths(e.LinkTarget, e.Path) >= 0 {
			return protocolErrorf("hard link %q names %q, which is not an earlier entry", e.Path, e.LinkTarget)
		}
	}
	if e.Type == TypeDir {
		o.dirs = append(o.dirs, e.Path)
	}
	o.prev = e.Path
	return nil
}

// ComparePaths orders two valid paths element by element, byte order within
// an element: the order of a depth-first walk with sorted siblings (the
// order entries cross the protocol in). That is byte order with '/' sorting
// before every other byte. It returns -1, 0 or +1, as cmp.Compare.
func ComparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// batcher packs streams, entries and bodies into messages. Bodies are read
// straight into the batch's buffer (one allocation per message, not per
// file) and cut into frames that fill it.
type batcher struct {
	// send delivers one message's records: as Record messages, or packed
	// (see packed_records.go). It may keep them: every batch gets fresh
	// buffers.
	send func(recs []*enginepb.Record, packed []byte) error
	// packed: the peer reads packed records; every record goes into pk,
	// n counts them and bodyBytes counts pk's body bytes.
	packed    bool
	pk        []byte
	n         int
	bodyBytes int
	// scratch is a packed batch's buffer for a body fillBuffer cannot
	// place in the ring (it is copied into pk at once).
	scratch []byte

	recs  []*enginepb.Record
	buf   []byte // body bytes of the batch being filled
	extra int    // estimated bytes of the batch's entries
	order orderChecker
	// indexOnly: the batch carries an IndexOnly capture (see
	// orderChecker.indexOnly).
	indexOnly bool

	// ring, if set, receives the bodies instead of the messages (the
	// producer's side: the plugin in Capture, the host in Restore);
	// ringBytes counts the batch's.
	ring      *bodyRing
	ringBytes int
	// ctx ends when the call does; it ends a wait for ring space.
	ctx context.Context
}

func (b *batcher) flush() error {
	if len(b.recs) == 0 && b.n == 0 {
		return nil
	}
	var err error
	if b.packed {
		err = b.send(nil, b.pk)
		// A fresh buffer, as below, of the size this batch reached (an
		// index-only listing's timed batches are small).
		b.pk = make([]byte, 0, len(b.pk)+len(b.pk)/8)
		b.n = 0
		b.bodyBytes = 0
	} else {
		err = b.send(b.recs, nil)
		// gRPC may use a sent message lazily (stats handlers), so neither
		// the records nor the body buffer are reused.
		b.recs = make([]*enginepb.Record, 0, len(b.recs))
		b.buf = nil
	}
	b.extra = 0
	b.ringBytes = 0
	return err
}

// records is how many records the batch holds.
func (b *batcher) records() int {
	if b.packed {
		return b.n
	}
	return len(b.recs)
}

// added counts a record added to the batch, of about size bytes besides
// any body, and sends the batch when it is full.
func (b *batcher) added(size int) error {
	b.extra += size
	if b.records() >= maxBatchRecords || b.extra >= BatchBytes {
		return b.flush()
	}
	return nil
}

func (b *batcher) add(r *enginepb.Record, size int) error {
	b.recs = append(b.recs, r)
	return b.added(size)
}

func (b *batcher) beginStream(name string) error {
	if name == "" {
		return errors.New("stream with an empty name")
	}
	b.order = orderChecker{indexOnly: b.indexOnly}
	if b.packed {
		b.pk = appendPackedBegin(b.pk, name)
		b.n++
		return b.added(len(name) + 8)
	}
	return b.add(&enginepb.Record{Kind: &enginepb.Record_BeginStream{BeginStream: name}}, len(name)+8)
}

// entry adds e and, when withBody, exactly e.Size bytes read from body.
func (b *batcher) entry(e *Entry, body io.Reader, withBody bool) error {
	if err := b.order.check(e); err != nil {
		return err
	}
	size := len(e.Path) + len(e.LinkTarget) + 64
	for k, v := range e.Xattrs {
		size += len(k) + len(v) + 8
	}
	if b.packed {
		b.pk = appendPackedRecordEntry(b.pk, e)
		b.n++
		err := b.added(size)
		if err != nil {
			return err
		}
	} else if err := b.add(&enginepb.Record{Kind: &enginepb.Record_Entry{Entry: entryToProto(e)}}, size); err != nil {
		return err
	}
	if !withBody {
		return nil
	}
	if body == nil {
		return fmt.Errorf("%q: no body for a file of %d bytes", e.Path, e.Size)
	}
	if b.ring != nil {
		return b.ringBody(e, body)
	}
	if b.packed {
		return b.packedBody(e, body)
	}
	for remaining := e.Size; remaining > 0; {
		if b.buf == nil {
			b.buf = make([]byte, 0, BatchBytes)
		}
		free := int64(cap(b.buf) - len(b.buf))
		if free == 0 {
			if err := b.flush(); err != nil {
				return err
			}
			continue
		}
		n := min(remaining, free)
		frame := b.buf[len(b.buf) : int64(len(b.buf))+n]
		if _, err := io.ReadFull(body, frame); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("body of %q is shorter than its size %d", e.Path, e.Size)
			}
			return fmt.Errorf("read %q: %w", e.Path, err)
		}
		b.buf = b.buf[:int64(len(b.buf))+n]
		remaining -= n
		b.recs = append(b.recs, &enginepb.Record{Kind: &enginepb.Record_Data{Data: frame}})
		if len(b.buf) == cap(b.buf) || len(b.recs) >= maxBatchRecords {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// packedBody reads e's body into the packed batch, in data records that
// fill batches to BatchBytes of body.
func (b *batcher) packedBody(e *Entry, body io.Reader) error {
	for remaining := e.Size; remaining > 0; {
		free := int64(BatchBytes - b.bodyBytes)
		if free <= 0 {
			if err := b.flush(); err != nil {
				return err
			}
			continue
		}
		n := min(remaining, free)
		if b.pk == nil {
			b.pk = make([]byte, 0, BatchBytes+BatchBytes/8)
		}
		b.pk = appendPackedData(b.pk, int(n))
		at := len(b.pk)
		b.pk = slices.Grow(b.pk, int(n))[:at+int(n)]
		if _, err := io.ReadFull(body, b.pk[at:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("body of %q is shorter than its size %d", e.Path, e.Size)
			}
			return fmt.Errorf("read %q: %w", e.Path, err)
		}
		remaining -= n
		b.bodyBytes += int(n)
		b.n++
		if b.bodyBytes >= BatchBytes || b.n >= maxBatchRecords {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// entryFill adds e and its body, which fill reads straight into the ring's
// frame (or the batch's buffer): see BodyFiller. Nothing of e is added
// before fill succeeds, so fill may change e and ask for another buffer.
func (b *batcher) entryFill(e *Entry, fill func([]byte) error) error {
	for {
		if e.Size < 0 {
			return fmt.Errorf("%q has negative size %d", e.Path, e.Size)
		}
		buf, where, pos, err := b.fillBuffer(e.Size)
		if err != nil {
			return err
		}
		if err := fill(buf); errors.Is(err, ErrRefill) {
			continue
		} else if err != nil {
			return err
		}
		if where == fillOwn {
			return b.entry(e, bytes.NewReader(buf), true)
		}
		// Adding e may flush the batch, which is fine: the body is
		// written, and a flushed batch's buffer is not reused.
		if err := b.entry(e, nil, false); err != nil {
			return err
		}
		if where == fillRing {
			return b.sendFrame(pos, len(buf))
		}
		if b.buf == nil {
			// The batch went out when e was added; buf, the end of its
			// buffer, which it does not use, becomes the next one's.
			b.buf = buf[:0]
		}
		b.buf = b.buf[:len(b.buf)+len(buf)]
		b.recs = append(b.recs, &enginepb.Record{Kind: &enginepb.Record_Data{Data: buf}})
		if len(b.buf) == cap(b.buf) || len(b.recs) >= maxBatchRecords {
			return b.flush()
		}
		return nil
	}
}

// Where fillBuffer put a body.
const (
	fillOwn   = iota // a buffer of its own
	fillRing         // a frame of the ring, at pos
	fillBatch        // the spare room of the batch's buffer, after its frames
)

// fillBuffer returns a buffer for a body of n bytes: a frame of the ring,
// the rest of the batch's buffer, or a buffer of its own when neither
// holds it in one piece.
func (b *batcher) fillBuffer(n int64) (buf []byte, where int, pos uint64, err error) {
	if n == 0 {
		return nil, fillOwn, 0, nil
	}
	if n > MaxFrameSize {
		return make([]byte, n), fillOwn, 0, nil
	}
	if b.ring != nil {
		p, frame, err := b.ring.reserve(b.ctx, int(n), b.flush)
		if err != nil {
			return nil, 0, 0, err
		}
		if int64(len(frame)) == n {
			return frame, fillRing, p, nil
		}
		// The frame would cross the ring's end: entry cuts the body
		// there, from a buffer of its own (once per RingSize bytes).
		return make([]byte, n), fillOwn, 0, nil
	}
	if b.packed {
		// Copied into the batch by entry, at once.
		if cap(b.scratch) < int(n) {
			b.scratch = make([]byte, MaxFrameSize)
		}
		return b.scratch[:n], fillOwn, 0, nil
	}
	if b.buf != nil && int64(cap(b.buf)-len(b.buf)) < n {
		if err := b.flush(); err != nil {
			return nil, 0, 0, err
		}
	}
	if b.buf == nil {
		b.buf = make([]byte, 0, BatchBytes)
	}
	end := int64(len(b.buf)) + n
	return b.buf[len(b.buf):end:end], fillBatch, 0, nil
}

// ringBody reads e's body into the shared ring, frame by frame, and sends
// their positions.
func (b *batcher) ringBody(e *Entry, body io.Reader) error {
	for remaining := e.Size; remaining > 0; {
		pos, frame, err := b.ring.reserve(b.ctx, int(min(remaining, MaxFrameSize)), b.flush)
		if err != nil {
			return err
		}
		if _, err := io.ReadFull(body, frame); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("body of %q is shorter than its size %d", e.Path, e.Size)
			}
			return fmt.Errorf("read %q: %w", e.Path, err)
		}
		remaining -= int64(len(frame))
		if err := b.sendFrame(pos, len(frame)); err != nil {
			return err
		}
	}
	return nil
}

// sendFrame hands the n bytes written at pos of the ring to the host: the
// ring's head moves past them and the batch gets their position, going out
// once it holds a batch's worth of ring bytes or records.
func (b *batcher) sendFrame(pos uint64, n int) error {
	b.ring.head += uint64(n)
	if b.packed {
		b.pk = appendPackedShared(b.pk, pos, n)
		b.n++
	} else {
		b.recs = append(b.recs, &enginepb.Record{Kind: &enginepb.Record_Shared{Shared: &enginepb.SharedFrame{Position: pos, Length: uint32(n)}}})
	}
	b.ringBytes += n
	if b.ringBytes >= BatchBytes || b.records() >= maxBatchRecords {
		return b.flush()
	}
	return nil
}
