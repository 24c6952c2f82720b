package pluginapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pypj/ptest-snap/pluginapi"
)

// recorded is one entry a capture delivered, with its body.
type recorded struct {
	stream string
	entry  pluginapi.Entry
	body   []byte
}

// recordingWriter keeps a whole capture in memory.
type recordingWriter struct {
	meta    pluginapi.Metadata
	streams []string
	entries []recorded
}

func (w *recordingWriter) WriteMetadata(_ context.Context, m pluginapi.Metadata) error {
	w.meta = m
	return nil
}

func (w *recordingWriter) BeginStream(_ context.Context, name string) error {
	w.streams = append(w.streams, name)
	return nil
}

func (w *recordingWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	r := recorded{stream: w.streams[len(w.streams)-1], entry: *e}
	if body != nil {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		r.body = b
	}
	w.entries = append(w.entries, r)
	return nil
}

// sliceReader replays recorded entries as a restore's RestoreReader.
type sliceReader struct{ entries []recorded }

func (r *sliceReader) Next(context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if len(r.entries) == 0 {
		return "", nil, nil, io.EOF
	}
	e := r.entries[0]
	r.entries = r.entries[1:]
	var body io.Reader
	if e.entry.Type == pluginapi.TypeFile && !e.entry.Unchanged {
		body = bytes.NewReader(e.body)
	}
	return e.stream, &e.entry, body, nil
}

func newHost(t *testing.T) *pluginapi.Host {
	t.Helper()
	return newHostWith(t, pluginapi.HostOptions{})
}

func newHostWith(t *testing.T, opts pluginapi.HostOptions) *pluginapi.Host {
	t.Helper()
	opts.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Debug})
	h := pluginapi.NewHost(opts)
	t.Cleanup(func() { h.Close() })
	return h
}

func launch(t *testing.T, h *pluginapi.Host, name string) *pluginapi.Plugin {
	t.Helper()
	p, err := h.Launch(context.Background(), spec(name))
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// requireGone checks that the process pid no longer exists, not even as a
// zombie.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	require.NotZero(t, pid)
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	require.True(t, os.IsNotExist(err), "process %d still exists", pid)
}

// makeTree writes a directory tree exercising the capture: nested
// directories, empty, small and multi-frame files, a symlink, names that
// sort differently by element than as strings.
func makeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string][]byte{
		"a-b":           []byte("dash"),
		"a/b":           []byte("slash"),
		"a/empty":       nil,
		"a/sub/deep.py": []byte("print('hi')\n"),
		"big.bin":       bytes.Repeat([]byte("0123456789abcdef"), 3*pluginapi.MaxFrameSize/16+7),
		"z":             []byte("last"),
	}
	for p, b := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, b, 0o640))
	}
	for i := range 300 {
		require.NoError(t, os.WriteFile(filepath.Join(root, "a", "sub", fmt.Sprintf("f%03d", i)), bytes.Repeat([]byte{byte(i)}, i*37), 0o644))
	}
	require.NoError(t, os.Symlink("a/b", filepath.Join(root, "link")))
	return root
}

func TestRoundTripThroughPlugin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inline  bool
		records bool
	}{{"good", false, false}, {"good", true, false}, {"good", false, true}, {"good", true, true}, {"dir", false, false}} {
		name := tc.name
		t.Run(fmt.Sprintf("%s/inline=%v/records=%v", name, tc.inline, tc.records), func(t *testing.T) {
			if _, err := os.Stat(spec(name).Path); err != nil {
				t.Skipf("engine %s not built: %v", name, err)
			}
			h := newHostWith(t, pluginapi.HostOptions{InlineBodies: tc.inline, RecordMessages: tc.records})
			p := launch(t, h, name)
			ctx := context.Background()

			info, err := p.Info(ctx)
			require.NoError(t, err)
			assert.Equal(t, pluginapi.ProtocolVersion, info.ProtocolVersion)

			root := makeTree(t)
			id, err := p.Identify(ctx, root, nil)
			require.NoError(t, err)
			assert.NotEmpty(t, id.EnvID)

			var w recordingWriter
			require.NoError(t, p.Capture(ctx, &pluginapi.CaptureRequest{Target: root}, &w))
			require.NotEmpty(t, w.streams)
			byPath := map[string]recorded{}
			for _, r := range w.entries {
				byPath[r.entry.Path] = r
			}
			require.Contains(t, byPath, "big.bin")
			want, err := os.ReadFile(filepath.Join(root, "big.bin"))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, byPath["big.bin"].body), "big body differs")
			assert.Equal(t, "a/b", byPath["link"].entry.LinkTarget)
			assert.Equal(t, pluginapi.TypeDir, byPath["a/sub"].entry.Type)

			target := filepath.Join(t.TempDir(), "restored")
			res, err := p.Restore(ctx, &pluginapi.RestoreRequest{
				Target: target, OriginalTarget: root, Metadata: w.meta, Streams: w.streams,
			}, &sliceReader{entries: w.entries})
			require.NoError(t, err)
			assert.NotEmpty(t, res.Target)
			requireSameTree(t, root, res.Target)

			var again recordingWriter
			require.NoError(t, p.Capture(ctx, &pluginapi.CaptureRequest{Target: res.Target, IndexOnly: true}, &again))
			assert.Len(t, again.entries, len(w.entries))
			for _, r := range again.entries {
				assert.Nil(t, r.body, r.entry.Path)
			}
		})
	}
}

// requireSameTree compares two trees' paths, types, modes and contents.
func requireSameTree(t *testing.T, want, got string) {
	t.Helper()
	list := func(root string) map[string]string {
		out := map[string]string{}
		require.NoError(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			require.NoError(t, err)
			rel, _ := filepath.Rel(root, p)
			desc := fi.Mode().String()
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				desc += " -> " + l
			case fi.Mode().IsRegular():
				b, err := os.ReadFile(p)
				require.NoError(t, err)
				desc += " " + strconv.Itoa(len(b)) + " " + fmt.Sprintf("%x", b[:min(len(b), 64)])
				if !bytes.Equal(b, mustRead(t, filepath.Join(want, rel))) {
					desc += " DIFFERENT"
				}
			}
			if rel != "." {
				out[rel] = desc
			}
			return nil
		}))
		return out
	}
	require.Equal(t, list(want), list(got))
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	return b
}

func TestEngineErrorsKeepTheirIdentity(t *testing.T) {
	h := newHost(t)
	p := launch(t, h, "good")
	ctx := context.Background()

	_, err := p.Identify(ctx, "/nonexistent/ptest-snap", nil)
	require.ErrorIs(t, err, pluginapi.ErrTargetNotFound)
	assert.Contains(t, err.Error(), `engine "good"`)
	assert.Contains(t, err.Error(), "/nonexistent/ptest-snap")

	err = p.Capture(ctx, &pluginapi.CaptureRequest{Target: "/nonexistent/ptest-snap"}, &recordingWriter{})
	require.ErrorIs(t, err, pluginapi.ErrTargetNotFound)

	existing := t.TempDir()
	_, err = p.Restore(ctx, &pluginapi.RestoreRequest{Target: existing}, &sliceReader{})
	require.ErrorIs(t, err, pluginapi.ErrTargetExists)
	assert.NotErrorIs(t, err, pluginapi.ErrTargetNotFound)

	// The plugin survives engine errors and keeps serving.
	_, err = p.Info(ctx)
	require.NoError(t, err)
}

func TestCrashMidCaptureNamesTheEngine(t *testing.T) {
	h := newHost(t)
	p := launch(t, h, "crash")
	var w recordingWriter
	err := p.Capture(context.Background(), &pluginapi.CaptureRequest{Target: makeTree(t)}, &w)
	require.Error(t, err)
	require.ErrorIs(t, err, pluginapi.ErrPluginExited)
	assert.Contains(t, err.Error(), `engine "crash"`)
	requireGone(t, p.PID())
}

func TestHungPluginIsCutOffAndKilled(t *testing.T) {
	h := newHost(t)
	p := launch(t, h, "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.Capture(ctx, &pluginapi.CaptureRequest{Target: t.TempDir()}, &recordingWriter{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), `engine "hang"`)
	requireGone(t, p.PID())

	// The killed plugin answers nothing more, with an error naming it.
	_, err = p.Info(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `engine "hang"`)
}

func TestCallTimeoutCutsOffHungIdentify(t *testing.T) {
	h := newHostWith(t, pluginapi.HostOptions{CallTimeout: 200 * time.Millisecond})
	p := launch(t, h, "hang")
	_, err := p.Identify(context.Background(), "x", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), `engine "hang"`)
	requireGone(t, p.PID())
}

func TestCancelKillsHungPlugin(t *testing.T) {
	h := newHost(t)
	p := launch(t, h, "hang")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Capture(ctx, &pluginapi.CaptureRequest{Target: t.TempDir()}, &recordingWriter{}) }()
	// Cancel once the engine is inside Capture: its metadata has arrived.
	time.Sleep(100 * time.Millisecond)
	cancel()
	err := <-done
	require.ErrorIs(t, err, context.Canceled)
	requireGone(t, p.PID())
}

func TestChecksumPinning(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	t.Setenv("PTEST_SNAP_TESTENGINE_MARKER", marker)
	h := newHost(t)

	s := spec("good")
	sum, err := pluginapi.FileSHA256(s.Path)
	require.NoError(t, err)
	wrong := bytes.Clone(sum)
	wrong[0] ^= 0xff

	s.SHA256 = wrong
	_, err = h.Launch(context.Background(), s)
	require.ErrorIs(t, err, pluginapi.ErrChecksumMismatch)
	assert.Contains(t, err.Error(), `engine "good"`)
	_, statErr := os.Stat(marker)
	require.True(t, os.IsNotExist(statErr), "the engine ran although its checksum did not match")

	s.SHA256 = sum
	p, err := h.Launch(context.Background(), s)
	require.NoError(t, err)
	defer p.Close()
	_, err = os.Stat(marker)
	require.NoError(t, err, "the pinned engine should have run")
}

// markedPID returns the pid the testengine wrote to the marker file.
func markedPID(t *testing.T, marker string) int {
	t.Helper()
	b, err := os.ReadFile(marker)
	require.NoError(t, err)
	f := strings.Fields(string(b))
	require.Len(t, f, 2)
	pid, err := strconv.Atoi(f[1])
	require.NoError(t, err)
	return pid
}

func TestBadHandshakes(t *testing.T) {
	for _, tc := range []struct {
		mode, want string
	}{
		{"stdout", "hello from an engine"},
		{"version", "ncompatible API version"},
		{"tlscert", "announced a TLS certificate"},
		{"tcp", "listens on TCP"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ran")
			t.Setenv("PTEST_SNAP_TESTENGINE_MARKER", marker)
			h := newHost(t)
			_, err := h.Launch(context.Background(), spec(tc.mode))
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf("engine %q", tc.mode))
			assert.Contains(t, err.Error(), tc.want)
			requireGone(t, markedPID(t, marker))
		})
	}
}

func TestHostileCapturesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want error
		msg  string
	}{
		{"dotdot", pluginapi.ErrUnsafePath, `".." element`},
		{"abs", pluginapi.ErrUnsafePath, "is absolute"},
		{"bigframe", pluginapi.ErrProtocol, "exceeds"},
		{"unsorted", pluginapi.ErrProtocol, "sorted pre-order"},
		{"longbody", pluginapi.ErrProtocol, "longer than its size"},
		{"badring", pluginapi.ErrProtocol, "ring position 4096, expected 0"},
		{"hugemsg", pluginapi.ErrProtocol, "byte limit"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := newHost(t)
			p := launch(t, h, tc.mode)
			var w recordingWriter
			err := p.Capture(context.Background(), &pluginapi.CaptureRequest{Target: "x"}, &w)
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), fmt.Sprintf("engine %q", tc.mode))
			assert.Contains(t, err.Error(), tc.msg)
			for _, r := range w.entries {
				require.NoError(t, pluginapi.ValidatePath(r.entry.Path), "an unsafe path reached the writer")
			}
			requireGone(t, p.PID())
		})
	}
}

// TestPluginSocketIsPrivate: the plugin's socket is in a directory only
// this user can enter (the host does not use TLS), and the directory goes
// when the plugin does.
func TestPluginSocketIsPrivate(t *testing.T) {
	h := newHost(t)
	p := launch(t, h, "good")
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID()))
	require.NoError(t, err)
	var dir string
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "PLUGIN_UNIX_SOCKET_DIR="); ok {
			dir = v
		}
		assert.False(t, strings.HasPrefix(kv, "PLUGIN_CLIENT_CERT="), "no TLS")
	}
	require.NotEmpty(t, dir, "the host names the socket directory")
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1)
	assert.Equal(t, os.ModeSocket, ents[0].Type(), "the engine's socket is in it")
	// The connection works: a round trip.
	_, err = p.Info(context.Background())
	require.NoError(t, err)
	require.NoError(t, p.Close())
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "the directory is removed with the plugin")
}

func TestHostCloseKillsEveryPlugin(t *testing.T) {
	h := pluginapi.NewHost(pluginapi.HostOptions{})
	var pids []int
	var hung *pluginapi.Plugin
	for _, name := range []string{"good", "hang"} {
		p, err := h.Launch(context.Background(), spec(name))
		require.NoError(t, err)
		pids = append(pids, p.PID())
		hung = p
	}
	// A capture in flight in the hung engine ends when the host closes, as
	// the CLI's interrupt handling does.
	done := make(chan error, 1)
	go func() {
		done <- hung.Capture(context.Background(), &pluginapi.CaptureRequest{Target: t.TempDir()}, &recordingWriter{})
	}()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, h.Close())
	err := <-done
	require.ErrorIs(t, err, pluginapi.ErrPluginExited)
	assert.Contains(t, err.Error(), `engine "hang"`)
	assert.Contains(t, err.Error(), "stopped by the host")
	for _, pid := range pids {
		requireGone(t, pid)
	}
	_, err = h.Launch(context.Background(), spec("good"))
	require.ErrorIs(t, err, pluginapi.ErrHostClosed)
}

func TestLaunchMissingBinary(t *testing.T) {
	h := newHost(t)
	_, err := h.Launch(context.Background(), pluginapi.Spec{Name: "ghost", Path: filepath.Join(t.TempDir(), "nope")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `engine "ghost"`)
}

func TestLaunchHonoursCancelledContext(t *testing.T) {
	h := newHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := h.Launch(ctx, spec("good"))
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
}

// failingWriter fails at the entry named failAt.
type failingWriter struct {
	recordingWriter
	failAt string
}

var errWriter = errors.New("writer refuses")

func (w *failingWriter) WriteEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if e.Path == w.failAt {
		return errWriter
	}
	return w.recordingWriter.WriteEntry(ctx, e, body)
}

// TestCaptureBeyondTheRing captures more than the shared body ring holds,
// twice, restores it twice, then abandons a capture (after which bodies
// travel inline) and captures again: every body arrives intact.
func TestCaptureBeyondTheRing(t *testing.T) {
	root := t.TempDir()
	want := map[string][]byte{}
	for i := range 3 {
		b := make([]byte, 7<<20+i*4099)
		for j := range b {
			b[j] = byte(j*7 + i + j>>13)
		}
		name := fmt.Sprintf("f%d", i)
		want[name] = b
		require.NoError(t, os.WriteFile(filepath.Join(root, name), b, 0o644))
	}
	h := newHost(t)
	p := launch(t, h, "good")
	ctx := context.Background()

	check := func() recordingWriter {
		var w recordingWriter
		require.NoError(t, p.Capture(ctx, &pluginapi.CaptureRequest{Target: root}, &w))
		require.Len(t, w.entries, 3)
		for _, r := range w.entries {
			require.True(t, bytes.Equal(want[r.entry.Path], r.body), r.entry.Path)
		}
		return w
	}
	check()
	w := check()
	// And back, through the ring the other way, twice.
	for i := range 2 {
		target := filepath.Join(t.TempDir(), fmt.Sprintf("restored%d", i))
		_, err := p.Restore(ctx, &pluginapi.RestoreRequest{Target: target, Streams: w.streams, Metadata: w.meta}, &sliceReader{entries: w.entries})
		require.NoError(t, err)
		requireSameTree(t, root, target)
	}
	err := p.Capture(ctx, &pluginapi.CaptureRequest{Target: root}, &failingWriter{failAt: "f1"})
	require.ErrorIs(t, err, errWriter)
	check()
}

// TestCaptureSmallFilesAroundTheRing sends small files, which the plugin
// reads straight into the ring, several times around it: frames that would
// cross the ring's end, and a full ring, included.
func TestCaptureSmallFilesAroundTheRing(t *testing.T) {
	root := t.TempDir()
	want := map[string][]byte{}
	for i := range 150 {
		b := make([]byte, 300<<10+i*4099)
		for j := range b {
			b[j] = byte(j*5 + i + j>>11)
		}
		name := fmt.Sprintf("f%03d", i)
		want[name] = b
		require.NoError(t, os.WriteFile(filepath.Join(root, name), b, 0o644))
	}
	h := newHost(t)
	p := launch(t, h, "good")
	for range 2 {
		var w recordingWriter
		require.NoError(t, p.Capture(context.Background(), &pluginapi.CaptureRequest{Target: root, Options: map[string]string{"fill": "1"}}, &w))
		require.Len(t, w.entries, len(want))
		for _, r := range w.entries {
			require.True(t, bytes.Equal(want[r.entry.Path], r.body), r.entry.Path)
		}
	}
}

// TestPluginDiesWithItsHost kills a host process outright (SIGKILL, no
// cleanup) and checks that its plugin does not outlive it.
func TestPluginDiesWithItsHost(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), hostChildEnv+"="+spec("good").Path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err, line)
	require.True(t, running(pid), "plugin %d should run while its host does", pid)

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	// The kernel delivers the parent-death signal asynchronously.
	for i := 0; running(pid) && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	require.False(t, running(pid), "plugin %d outlived its host", pid)
}

// running reports whether pid is a live process (not gone, not a zombie
// waiting for init to reap it).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// TestCrashMidRestoreNamesTheEngine: the engine dies after its first file
// while the host has more bodies to send than the ring holds.
func TestCrashMidRestoreNamesTheEngine(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			h := newHostWith(t, pluginapi.HostOptions{InlineBodies: inline})
			p := launch(t, h, "crash")
			var entries []recorded
			for i := range 4 {
				body := bytes.Repeat([]byte{byte(i)}, 7<<20)
				entries = append(entries, recorded{stream: "rootfs", body: body,
					entry: pluginapi.Entry{Path: fmt.Sprintf("f%d", i), Type: pluginapi.TypeFile, Mode: 0o644, Size: int64(len(body))}})
			}
			target := filepath.Join(t.TempDir(), "restored")
			_, err := p.Restore(context.Background(), &pluginapi.RestoreRequest{Target: target, Streams: []string{"rootfs"}}, &sliceReader{entries: entries})
			require.ErrorIs(t, err, pluginapi.ErrPluginExited)
			assert.Contains(t, err.Error(), `engine "crash"`)
			requireGone(t, p.PID())
		})
	}
}

// TestSilentPluginIsCutOff: an engine that never says its handshake line is
// killed when the start timeout passes, or when the launch is cancelled.
func TestSilentPluginIsCutOff(t *testing.T) {
	t.Run("start timeout", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		t.Setenv("PTEST_SNAP_TESTENGINE_MARKER", marker)
		h := newHostWith(t, pluginapi.HostOptions{StartTimeout: time.Second})
		_, err := h.Launch(context.Background(), spec("mute"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), `engine "mute"`)
		assert.Contains(t, err.Error(), "timeout")
		requireGone(t, markedPID(t, marker))
	})
	t.Run("cancelled launch", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		t.Setenv("PTEST_SNAP_TESTENGINE_MARKER", marker)
		h := newHost(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			// Cancel once the engine runs: it has written its whole marker
			// line ("mode pid"). The file exists a moment before the line
			// is in it; cancelling then kills the engine before it writes
			// its pid, and markedPID below finds nothing.
			for i := 0; i < 1000; i++ {
				if b, err := os.ReadFile(marker); err == nil && len(strings.Fields(string(b))) == 2 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
		}()
		_, err := h.Launch(ctx, spec("mute"))
		require.ErrorIs(t, err, context.Canceled)
		assert.Contains(t, err.Error(), `engine "mute"`)
		requireGone(t, markedPID(t, marker))
	})
}

// TestRestoreEndedEarlyByTheEngine: the engine returns from Restore after
// its first entry while the host still has more bodies to send than the
// shared ring holds. The host stops sending and returns the engine's answer
// (its result, or its error) instead of waiting for ring space nobody will
// free; the plugin stays usable. The timeout only turns a regression into
// a failure instead of a hung test. (The second restore relies on the ring
// staying in use after an engine answered: inline, the host could not send
// far enough to give the cue.)
func TestRestoreEndedEarlyByTheEngine(t *testing.T) {
	// A 1-byte file, then half the ring, half the ring - 1, half the
	// ring, half the ring.
	var entries []recorded
	half := pluginapi.RingSize / 2
	for i, size := range []int{1, half, half - 1, half, half} {
		body := bytes.Repeat([]byte{byte(i + 1)}, size)
		entries = append(entries, recorded{stream: "rootfs", body: body,
			entry: pluginapi.Entry{Path: fmt.Sprintf("f%d", i), Type: pluginapi.TypeFile, Mode: 0o644, Size: int64(len(body))}})
	}
	for _, inline := range []bool{false, true} {
		// The engine ends once the host asks for the entry numbered cueAt:
		// through the ring, when the unread f0 to f2 fill it exactly, so
		// the host waits for room at once; inline, at once, before gRPC's
		// flow control can stop the host's sending.
		cueAt := 3
		if inline {
			cueAt = 1
		}
		for _, mode := range []string{"stopearly", "failearly"} {
			t.Run(fmt.Sprintf("%s/inline=%v", mode, inline), func(t *testing.T) {
				h := newHostWith(t, pluginapi.HostOptions{InlineBodies: inline})
				p := launch(t, h, mode)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				for range 2 { // and again, on the same plugin
					dir := t.TempDir()
					target, cue := filepath.Join(dir, "restored"), filepath.Join(dir, "cue")
					r := &cueReader{sliceReader: sliceReader{entries: entries}, at: cueAt, cue: cue}
					req := &pluginapi.RestoreRequest{Target: target, Streams: []string{"rootfs"}, Options: map[string]string{"end-when": cue}}
					res, err := p.Restore(ctx, req, r)
					require.NoError(t, ctx.Err(), "the host waited for the engine that had ended its restore")
					if mode == "stopearly" {
						require.NoError(t, err)
						assert.Equal(t, target, res.Target)
						assert.Equal(t, []string{"stopped early after f0"}, res.Messages)
					} else {
						require.Error(t, err)
						assert.Nil(t, res)
						assert.Contains(t, err.Error(), "failearly: gave up after the first entry")
						assert.Contains(t, err.Error(), `engine "failearly"`)
						assert.NotErrorIs(t, err, pluginapi.ErrPluginExited)
					}
				}
				require.False(t, p.Exited(), "the engine answered; it must not be stopped")
				// It still captures, bodies intact.
				root := makeTree(t)
				var w recordingWriter
				require.NoError(t, p.Capture(ctx, &pluginapi.CaptureRequest{Target: root}, &w))
				require.NotEmpty(t, w.entries)
			})
		}
	}
}

// cueReader is a sliceReader that creates the file cue when asked for its
// entry number at (from 0).
type cueReader struct {
	sliceReader
	at, n int
	cue   string
}

func (r *cueReader) Next(ctx context.Context) (string, *pluginapi.Entry, io.Reader, error) {
	if r.n == r.at {
		if err := os.WriteFile(r.cue, nil, 0o644); err != nil {
			return "", nil, nil, err
		}
	}
	r.n++
	return r.sliceReader.Next(ctx)
}

// partialWriter reads each body in odd-sized pieces: the first file's
// whole, then of each following file a prefix only, leaving the rest to
// the host (which skips it) or copying it with io.Copy (the WriterTo path),
// in turn.
type partialWriter struct {
	recordingWriter
	files int
}

func (w *partialWriter) WriteEntry(_ context.Context, e *pluginapi.Entry, body io.Reader) error {
	r := recorded{stream: w.streams[len(w.streams)-1], entry: *e}
	if body != nil {
		w.files++
		buf := make([]byte, 4093)
		for len(r.body) < 3<<20 {
			n, err := body.Read(buf[:1+len(r.body)%len(buf)])
			r.body = append(r.body, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if w.files > 1 && len(r.body) > 1<<20+w.files {
				break
			}
		}
		if w.files%2 == 1 {
			var rest bytes.Buffer
			if _, err := io.Copy(&rest, body); err != nil {
				return err
			}
			r.body = append(r.body, rest.Bytes()...)
		}
	}
	w.entries = append(w.entries, r)
	return nil
}

// TestCapturePartialReads reads bodies through the shared ring in small
// pieces, stopping within a frame: the rest of a body left unread is
// skipped, the rest copied with io.Copy arrives intact, and the ring's
// space comes back either way (the bodies are larger than the ring, so a
// frame never handed back would stop the engine).
func TestCapturePartialReads(t *testing.T) {
	root := t.TempDir()
	want := map[string][]byte{}
	for i := range 6 {
		b := make([]byte, 5<<20+i*5003)
		for j := range b {
			b[j] = byte(j*13 + i + j>>11)
		}
		name := fmt.Sprintf("f%d", i)
		want[name] = b
		require.NoError(t, os.WriteFile(filepath.Join(root, name), b, 0o644))
	}
	p := launch(t, newHost(t), "good")
	for range 2 {
		var w partialWriter
		require.NoError(t, p.Capture(context.Background(), &pluginapi.CaptureRequest{Target: root}, &w))
		require.Len(t, w.entries, 6)
		for i, r := range w.entries {
			full := want[r.entry.Path]
			if i%2 == 0 {
				require.True(t, bytes.Equal(full, r.body), "%s: whole body", r.entry.Path)
				continue
			}
			require.Less(t, len(r.body), len(full), r.entry.Path)
			require.True(t, bytes.Equal(full[:len(r.body)], r.body), "%s: prefix", r.entry.Path)
		}
	}
}
