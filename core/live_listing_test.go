package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// feed writes entries of one stream into l, as a capture would.
func feed(t *testing.T, l *liveListing, stream string, paths ...string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, l.BeginStream(ctx, stream))
	for _, p := range paths {
		require.NoError(t, l.WriteEntry(ctx, &pluginapi.Entry{Path: p, Type: pluginapi.TypeFile, Mode: 0o644}, nil))
	}
}

// A listing answers a question only once it has passed the path asked
// about: entries still pending (not yet published) are not trusted, and
// a path the target lacks is known missing once a later one arrived.
func TestLiveListingAnswersOncePassed(t *testing.T) {
	ctx := context.Background()
	l := newLiveListing(0, 0)
	feed(t, l, "s", "a", "b", "b/x", "d")
	l.mu.Lock()
	l.publishLocked()
	l.mu.Unlock()

	e, err := l.entry(ctx, "s", "b/x")
	require.NoError(t, err)
	require.NotNil(t, e)
	e, err = l.entry(ctx, "s", "c") // passed by "d": missing
	require.NoError(t, err)
	assert.Nil(t, e)
	names, err := l.childrenUpTo(ctx, "s", "b", "") // b's subtree ended at "d"
	require.NoError(t, err)
	assert.Equal(t, []string{"x"}, names)

	// "e" is not passed yet: the question waits until it is.
	got := make(chan *targetEntry, 1)
	go func() {
		e, err := l.entry(ctx, "s", "e")
		assert.NoError(t, err)
		got <- e
	}()
	select {
	case <-got:
		t.Fatal("answered about a path the listing has not reached")
	case <-time.After(50 * time.Millisecond):
	}
	require.NoError(t, l.WriteEntry(ctx, &pluginapi.Entry{Path: "e", Type: pluginapi.TypeDir, Mode: 0o755}, nil))
	require.NoError(t, l.WriteEntry(ctx, &pluginapi.Entry{Path: "e/f", Type: pluginapi.TypeFile, Mode: 0o644}, nil))
	// Still pending (fewer than a batch): published when the capture ends.
	require.NoError(t, l.finish(nil))
	e = <-got
	require.NotNil(t, e)
	assert.Equal(t, pluginapi.TypeDir, e.Type)
	names, err = l.childrenUpTo(ctx, "s", "", "")
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "d", "e"}, names)
}

// A stream is complete once the next one begins; a question about a
// stream not yet listed waits for it.
func TestLiveListingStreams(t *testing.T) {
	ctx := context.Background()
	l := newLiveListing(0, 0)
	feed(t, l, "one", "a")
	got := make(chan []string, 1)
	go func() {
		names, err := l.childrenUpTo(ctx, "two", "", "z")
		assert.NoError(t, err)
		got <- names
	}()
	one := make(chan []string, 1)
	go func() {
		names, err := l.childrenUpTo(ctx, "one", "", "")
		assert.NoError(t, err)
		one <- names
	}()
	select {
	case <-one:
		t.Fatal("a stream still being listed was taken as complete")
	case <-time.After(50 * time.Millisecond):
	}
	feed(t, l, "two", "b", "y")
	assert.Equal(t, []string{"a"}, <-one)
	require.NoError(t, l.finish(nil))
	assert.Equal(t, []string{"b", "y"}, <-got)
}

// Entries out of sorted pre-order are refused: what the planner concludes
// from the listing's position depends on it.
func TestLiveListingRefusesDisorder(t *testing.T) {
	ctx := context.Background()
	l := newLiveListing(0, 0)
	feed(t, l, "s", "b")
	err := l.WriteEntry(ctx, &pluginapi.Entry{Path: "a", Type: pluginapi.TypeFile}, nil)
	require.ErrorIs(t, err, ErrEngine)
	err = l.WriteEntry(ctx, &pluginapi.Entry{Path: "b", Type: pluginapi.TypeFile}, nil)
	require.ErrorIs(t, err, ErrEngine)
	require.ErrorIs(t, newLiveListing(0, 0).WriteEntry(ctx, &pluginapi.Entry{Path: "a"}, nil), ErrEngine, "entry before any stream")
}

// A failed listing fails every question waiting on it, and a cancelled
// context ends a wait.
func TestLiveListingFailureAndCancel(t *testing.T) {
	ctx := context.Background()
	l := newLiveListing(0, 0)
	feed(t, l, "s", "a")
	boom := errors.New("boom")
	errc := make(chan error, 1)
	go func() {
		_, err := l.entry(ctx, "s", "z")
		errc <- err
	}()
	require.ErrorIs(t, l.finish(boom), boom)
	require.ErrorIs(t, <-errc, boom)
	require.ErrorIs(t, l.failure(), boom)

	l = newLiveListing(0, 0)
	feed(t, l, "s", "a")
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(cctx, l.wake)
	defer stop()
	go func() {
		_, err := l.entry(cctx, "s", "z")
		errc <- err
	}()
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

// slowListing is an engine whose index-only capture holds back the
// target's last entries until the restore has written something: an
// in-place restore must start before the listing ends. Other calls go to
// the engine unchanged.
type slowListing struct {
	pluginapi.Engine
	holdFrom string        // the first path held back
	started  chan struct{} // closed when the restore received an entry with a body
	once     sync.Once
	failAt   string // if set, the listing fails there instead
}

func (e *slowListing) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if !req.IndexOnly {
		return e.Engine.Capture(ctx, req, w)
	}
	return e.Engine.Capture(ctx, req, gatedWriter{CaptureWriter: w, e: e})
}

type gatedWriter struct {
	pluginapi.CaptureWriter
	e *slowListing
}

func (g gatedWriter) WriteEntry(ctx context.Context, en *pluginapi.Entry, body io.Reader) error {
	if g.e.failAt != "" && en.Path == g.e.failAt {
		return errors.New("listing broke")
	}
	if g.e.holdFrom != "" && pluginapi.ComparePaths(en.Path, g.e.holdFrom) >= 0 {
		select {
		case <-g.e.started:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return fmt.Errorf("the restore wrote nothing while the listing was held before %q", en.Path)
		}
	}
	return g.CaptureWriter.WriteEntry(ctx, en, body)
}

func (e *slowListing) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	return e.Engine.Restore(ctx, req, startSignal{r, e})
}

type startSignal struct {
	pluginapi.RestoreReader
	e *slowListing
}

func (s startSignal) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	st, en, body, err := s.RestoreReader.Next(ctx)
	if body != nil {
		s.e.once.Do(func() { close(s.e.started) })
	}
	return st, en, body, err
}

// An in-place restore writes while the target is still being listed: the
// listing of the target's last directory waits here until the engine has
// received a file to write (a restore that listed first would never get
// there), and the result is the snapshot exactly, twice over.
func TestRestoreInPlaceWritesWhileListing(t *testing.T) {
	ctx := context.Background()
	for _, sparse := range []bool{true, false} {
		t.Run(fmt.Sprintf("sparse=%v", sparse), func(t *testing.T) {
			slow := &slowListing{Engine: newDirEngine(), holdFrom: "zz", started: make(chan struct{})}
			var eng pluginapi.Engine = slow
			if !sparse {
				eng = capHidden{slow, pluginapi.CapRestoreSparse}
			}
			src := filepath.Join(t.TempDir(), "src")
			makeTree(t, src)
			for i := range 300 { // more than a published batch
				writeFile(t, filepath.Join(src, "zz", fmt.Sprintf("m%03d.py", i)), []byte(fmt.Sprintf("m = %d\n", i)), 0o644, fixedTime)
			}
			m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
			snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
			require.NoError(t, err)
			ref := snapTree(t, m, snap.ID)

			// Early in the order: a package removed and a file changed;
			// late: files added and removed where the listing is held.
			require.NoError(t, os.RemoveAll(filepath.Join(src, "pkg")))
			writeFile(t, filepath.Join(src, "a.txt"), []byte("changed\n"), 0o644, fixedTime)
			writeFile(t, filepath.Join(src, "zz", "extra.py"), []byte("extra"), 0o644, fixedTime)
			require.NoError(t, os.Remove(filepath.Join(src, "zz", "m150.py")))
			writeFile(t, filepath.Join(src, "zzz-extra", "x"), []byte("x"), 0o644, fixedTime)

			_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, ref, src)

			// Nothing left to do; the listing is not held any more.
			res, err := m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, ref, src)
			assert.Zero(t, res.Stats.Rewritten, "%+v", res.Stats)
		})
	}
}

// A listing that breaks halfway fails the in-place restore, saying so,
// and records no restore index; a later restore still restores the
// snapshot exactly.
func TestRestoreInPlaceListingFails(t *testing.T) {
	ctx := context.Background()
	slow := &slowListing{Engine: newDirEngine(), failAt: "zz/m100.py", started: make(chan struct{})}
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	for i := range 300 {
		writeFile(t, filepath.Join(src, "zz", fmt.Sprintf("m%03d.py", i)), []byte(fmt.Sprintf("m = %d\n", i)), 0o644, fixedTime)
	}
	m := openManager(t, map[string]pluginapi.Engine{"dir": slow})
	snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
	require.NoError(t, err)
	ref := snapTree(t, m, snap.ID)
	require.NoError(t, os.RemoveAll(filepath.Join(src, "pkg")))
	writeFile(t, filepath.Join(src, "zz", "extra.py"), []byte("extra"), 0o644, fixedTime)

	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "list target")
	assert.Contains(t, err.Error(), "listing broke")
	ident, err := slow.Identify(ctx, src, nil)
	require.NoError(t, err)
	assert.Nil(t, m.loadRestoreIndex(ctx, "dir", ident.Target), "no restore index after a failed restore")

	slow.failAt = ""
	_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
	require.NoError(t, err)
	requireSameTree(t, ref, src)
}

// endOrder is an engine noting whether its index-only capture had returned
// when a restore's stream ended; the capture holds its entries from
// holdFrom on until the stream ended or wait passed.
type endOrder struct {
	pluginapi.Engine
	holdFrom      string
	wait          time.Duration
	mu            sync.Mutex
	listed        bool // the index-only capture returned
	streamEnded   chan struct{}
	listedAtEnd   bool
	sawStreamEnd  bool
	endedOnce     sync.Once
	holdOnce      sync.Once
	restoreActive bool
}

func (e *endOrder) Capture(ctx context.Context, req *pluginapi.CaptureRequest, w pluginapi.CaptureWriter) error {
	if !req.IndexOnly || !e.restoreActive {
		return e.Engine.Capture(ctx, req, w)
	}
	err := e.Engine.Capture(ctx, req, holdingWriter{w, e})
	e.mu.Lock()
	e.listed = true
	e.mu.Unlock()
	return err
}

type holdingWriter struct {
	pluginapi.CaptureWriter
	e *endOrder
}

func (h holdingWriter) WriteEntry(ctx context.Context, en *pluginapi.Entry, body io.Reader) error {
	if pluginapi.ComparePaths(en.Path, h.e.holdFrom) >= 0 {
		var err error
		h.e.holdOnce.Do(func() {
			select {
			case <-h.e.streamEnded:
			case <-time.After(h.e.wait):
			case <-ctx.Done():
				err = ctx.Err()
			}
		})
		if err != nil {
			return err
		}
	}
	return h.CaptureWriter.WriteEntry(ctx, en, body)
}

func (e *endOrder) Restore(ctx context.Context, req *pluginapi.RestoreRequest, r pluginapi.RestoreReader) (*pluginapi.RestoreResult, error) {
	if !req.InPlace || !e.restoreActive {
		return e.Engine.Restore(ctx, req, r)
	}
	return e.Engine.Restore(ctx, req, endNoting{r, e})
}

type endNoting struct {
	pluginapi.RestoreReader
	e *endOrder
}

func (n endNoting) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	st, en, body, err := n.RestoreReader.Next(ctx)
	if errors.Is(err, io.EOF) {
		n.e.endedOnce.Do(func() {
			n.e.mu.Lock()
			n.e.listedAtEnd, n.e.sawStreamEnd = n.e.listed, true
			n.e.mu.Unlock()
			close(n.e.streamEnded)
		})
	}
	return st, en, body, err
}

// The engine's stream ends only after the listing has: given a full
// stream, the engine then deletes what the snapshot lacks anywhere in the
// target, which the listing must not be reading any more. The listing's
// last entries here wait for the stream's end (for a second at most, once):
// a stream that ended first would be seen.
func TestRestoreInPlaceStreamEndsAfterListing(t *testing.T) {
	ctx := context.Background()
	for _, sparse := range []bool{true, false} {
		t.Run(fmt.Sprintf("sparse=%v", sparse), func(t *testing.T) {
			// Held well past a published batch (liveListingBatch) of the
			// extra entries, so the walk can be done before the listing.
			eo := &endOrder{Engine: newDirEngine(), holdFrom: "zzz-extra/f280", wait: time.Second, streamEnded: make(chan struct{})}
			var eng pluginapi.Engine = eo
			if !sparse {
				eng = capHidden{eo, pluginapi.CapRestoreSparse}
			}
			src := filepath.Join(t.TempDir(), "src")
			makeTree(t, src)
			m := openManager(t, map[string]pluginapi.Engine{"dir": eng})
			snap, err := m.Create(ctx, CreateOptions{Engine: "dir", Target: src})
			require.NoError(t, err)
			ref := snapTree(t, m, snap.ID)
			writeFile(t, filepath.Join(src, "a.txt"), []byte("changed\n"), 0o644, fixedTime)
			for i := range 300 {
				writeFile(t, filepath.Join(src, "zzz-extra", fmt.Sprintf("f%03d", i)), []byte("x"), 0o644, fixedTime)
			}

			eo.restoreActive = true
			_, err = m.Restore(ctx, RestoreOptions{Ref: snap.ID, InPlace: true})
			require.NoError(t, err)
			requireSameTree(t, ref, src)
			eo.mu.Lock()
			defer eo.mu.Unlock()
			require.True(t, eo.sawStreamEnd)
			assert.True(t, eo.listedAtEnd, "the restore's stream ended before the target's listing")
		})
	}
}

// A planner waiting for a path gets it as soon as the listing receives it,
// not once a batch of liveListingBatch entries has come or the listing has
// ended: the entry may be the last of the plugin's message, the next one
// some time away (an engine checking a large unchanged subtree).
func TestLiveListingPublishesWhatAPlannerWaitsFor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := newLiveListing(0, 0)
	require.NoError(t, l.BeginStream(ctx, "s"))
	got := make(chan error, 1)
	go func() {
		e, err := l.entry(ctx, "s", "b")
		if err == nil && e == nil {
			err = errors.New("b not listed")
		}
		got <- err
	}()
	// Wait until the planner waits, then list up to b and stop there.
	require.Eventually(t, func() bool { return l.want.Load() != nil }, 10*time.Second, time.Millisecond)
	require.NoError(t, l.WriteEntry(ctx, &pluginapi.Entry{Path: "a", Type: pluginapi.TypeFile}, nil))
	select {
	case err := <-got:
		t.Fatalf("answered before the listing passed b: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	require.NoError(t, l.WriteEntry(ctx, &pluginapi.Entry{Path: "b", Type: pluginapi.TypeFile}, nil))
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("the planner still waits for b, which the listing has")
	}
	assert.Nil(t, l.want.Load(), "no planner waits any more")
	// A subtree's end is passed by the first entry past it.
	go func() {
		_, err := l.childrenUpTo(ctx, "s", "b", "")
		got <- err
	}()
	require.Eventually(t, func() bool { return l.want.Load() != nil }, 10*time.Second, time.Millisecond)
	require.NoError(t, l.WriteEntry(ctx, &pluginapi.Entry{Path: "b/x", Type: pluginapi.TypeFile}, nil))
	require.NoError(t, l.WriteEntry(ctx, &pluginapi.Entry{Path: "c", Type: pluginapi.TypeFile}, nil))
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("the planner still waits for b's subtree, which the listing has passed")
	}
}
