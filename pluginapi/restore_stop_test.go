package pluginapi_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// TestStoppedRestoreRemovesThePartialTarget stops a restore to a new target
// through the real directory engine after it has written files, by
// cancelling its context (Ctrl-C in the CLI) or by closing the host: the
// plugin is stopped gracefully, so the engine's cleanup removes what it
// wrote before its process exits, and no process is left.
func TestStoppedRestoreRemovesThePartialTarget(t *testing.T) {
	if _, err := os.Stat(spec("dir").Path); err != nil {
		t.Skipf("engine dir not built: %v", err)
	}
	for _, tc := range []struct {
		name   string
		inline bool
		close  bool // close the host instead of cancelling
	}{
		{"cancel/ring", false, false},
		{"cancel/inline", true, false},
		{"hostclose/ring", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostWith(t, pluginapi.HostOptions{InlineBodies: tc.inline})
			p := launch(t, h, "dir")
			root := makeTree(t)
			var w recordingWriter
			require.NoError(t, p.Capture(context.Background(), &pluginapi.CaptureRequest{Target: root}, &w))

			parent := t.TempDir()
			target := filepath.Join(parent, "restored")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// Past big.bin, whose body made the host send what came
			// before it, the reader waits until the engine has written a
			// file, then stops the restore.
			r := &stoppingReader{sliceReader: sliceReader{entries: w.entries}, at: "link", target: target}
			r.stop = func() error {
				if tc.close {
					require.NoError(t, h.Close())
					return nil
				}
				cancel()
				return ctx.Err()
			}
			_, err := p.Restore(ctx, &pluginapi.RestoreRequest{
				Target: target, OriginalTarget: root, Metadata: w.meta, Streams: w.streams,
			}, r)
			require.Error(t, err)
			require.True(t, r.stopped, "the restore ended before the reader stopped it: %v", err)
			if tc.close {
				require.ErrorIs(t, err, pluginapi.ErrPluginExited)
				assert.Contains(t, err.Error(), "stopped by the host")
			} else {
				require.ErrorIs(t, err, context.Canceled)
			}
			assert.Contains(t, err.Error(), `engine "dir"`)
			require.True(t, p.Exited())
			requireGone(t, p.PID())
			_, err = os.Lstat(target)
			require.True(t, errors.Is(err, fs.ErrNotExist), "the partial target was left: %v", err)
		})
	}
}

// stoppingReader is a sliceReader that, when asked for the entry with path
// at, waits until a regular file exists under target and then calls stop,
// returning its error (or, if nil, the remaining entries).
type stoppingReader struct {
	sliceReader
	at      string
	target  string
	stop    func() error
	stopped bool
}

func (r *stoppingReader) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if !r.stopped && len(r.entries) > 0 && r.entries[0].entry.Path == r.at {
		if !waitForFile(r.target, time.Minute) {
			return "", nil, nil, errors.New("the engine wrote no file")
		}
		r.stopped = true
		if err := r.stop(); err != nil {
			return "", nil, nil, err
		}
	}
	return r.sliceReader.Next(ctx)
}

// waitForFile waits up to d until a regular file exists under dir.
func waitForFile(dir string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		found := false
		_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				found = true
				return filepath.SkipAll
			}
			return nil
		})
		if found {
			return true
		}
	}
	return false
}

// TestCancelledRestoreInAHungEngineIsKilled cancels a restore whose engine
// ignores the cancellation: the graceful stop gives up after its grace and
// the process is killed, so the call still returns.
func TestCancelledRestoreInAHungEngineIsKilled(t *testing.T) {
	h := newHost(t)
	p := launch(t, h, "hang")
	target := filepath.Join(t.TempDir(), "restored")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &readerFunc{next: func(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
		// The engine has made the target and hangs; then cancel.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			if _, err := os.Lstat(target); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return "", nil, nil, errors.New("the engine made no target")
			}
		}
		cancel()
		return "", nil, nil, ctx.Err()
	}}
	_, err := p.Restore(ctx, &pluginapi.RestoreRequest{Target: target, Streams: []string{"rootfs"}}, r)
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), `engine "hang"`)
	require.True(t, p.Exited())
	requireGone(t, p.PID())
}

// readerFunc is a RestoreReader made of a function.
type readerFunc struct {
	next func(context.Context) (string, *pluginapi.Entry, io.Reader, error)
}

func (r *readerFunc) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	return r.next(ctx)
}
