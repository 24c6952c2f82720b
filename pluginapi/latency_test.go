package pluginapi_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// gateWriter records an index-only listing and, once it has received the
// entry named seen, creates the file open (the engine's gate).
type gateWriter struct {
	seen, open string
	begun      bool
	paths      []string
}

func (w *gateWriter) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }

func (w *gateWriter) BeginStream(context.Context, string) error {
	w.begun = true
	return nil
}

func (w *gateWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, _ io.Reader) error {
	w.paths = append(w.paths, e.Path)
	if e.Path == w.seen {
		return os.WriteFile(w.open, nil, 0o644)
	}
	return nil
}

// An index-only listing (an in-place restore plans from it as it arrives)
// reaches the host while the engine is still listing: the engine waits at
// "gate" until the host has the entries before it, which, batched until
// the listing ended, it never would.
func TestIndexOnlyListingArrivesWhileListed(t *testing.T) {
	h := newHost(t)
	p := launch(t, h, "good")
	dir := t.TempDir()
	target := filepath.Join(dir, "t")
	require.NoError(t, os.MkdirAll(filepath.Join(target, "a"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(target, "a", "f"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(target, "gate"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(target, "z"), nil, 0o644))
	open := filepath.Join(dir, "open")
	w := &gateWriter{seen: "a/f", open: open}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.Capture(ctx, &pluginapi.CaptureRequest{Target: target, IndexOnly: true, Options: map[string]string{"gate": open}}, w)
	require.NoError(t, err)
	assert.True(t, w.begun)
	assert.Equal(t, []string{"a", "a/f", "gate", "z"}, w.paths)
}

// readyReader yields one file, then says it has nothing ready and waits,
// in Next, until the engine has written that file: it would wait forever
// if the host kept the file batched while it waits.
type readyReader struct {
	target string
	sent   bool
	asked  bool // Ready was asked while nothing was ready
}

func (r *readyReader) Ready() bool {
	if r.sent {
		r.asked = true
		return false
	}
	return true
}

func (r *readyReader) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if !r.sent {
		r.sent = true
		return "rootfs", &pluginapi.Entry{Path: "a", Type: pluginapi.TypeFile, Mode: 0o644, Size: 3}, strings.NewReader("abc"), nil
	}
	for {
		if b, err := os.ReadFile(filepath.Join(r.target, "a")); err == nil && string(b) == "abc" {
			return "", nil, nil, io.EOF
		}
		select {
		case <-ctx.Done():
			return "", nil, nil, errors.New("the engine never got the file the host had batched")
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Before a RestoreReader's Next that would wait (an in-place restore's plan
// waiting for the listing), the host sends what it has batched.
func TestRestoreSendsBatchBeforeWaiting(t *testing.T) {
	h := newHost(t)
	p := launch(t, h, "good")
	target := filepath.Join(t.TempDir(), "t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &readyReader{target: target}
	_, err := p.Restore(ctx, &pluginapi.RestoreRequest{Target: target, Streams: []string{"rootfs"}}, r)
	require.NoError(t, err)
	assert.True(t, r.asked)
}
