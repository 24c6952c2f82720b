package fstree

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// fillWriter is a memWriter that lets Capture fill bodies
// (pluginapi.BodyFiller), as the plugin's writer does.
type fillWriter struct {
	memWriter
	fills int
}

func (w *fillWriter) WriteEntryFill(_ context.Context, e *pluginapi.Entry, fill func([]byte) error) error {
	if w.failAfter > 0 && len(w.recs) >= w.failAfter {
		return errWriterStop
	}
	for {
		buf := make([]byte, e.Size)
		err := fill(buf)
		w.fills++
		if errors.Is(err, pluginapi.ErrRefill) {
			continue
		}
		if err != nil {
			return err
		}
		w.recs = append(w.recs, record{stream: w.streams[len(w.streams)-1], e: *e, body: buf, hasBody: true})
		return nil
	}
}

func TestCaptureFillsBodiesLikeWriteEntry(t *testing.T) {
	root := t.TempDir()
	for i := range 300 {
		writeFile(t, filepath.Join(root, fmt.Sprintf("d%d/f%03d", i%7, i)), strings.Repeat("x", i*37), 0o644)
	}
	writeFile(t, filepath.Join(root, "big"), strings.Repeat("y", readAheadMax+10), 0o644)
	writeFile(t, filepath.Join(root, "empty"), "", 0o644)

	plain := capture(t, root, CaptureOptions{})
	w := &fillWriter{}
	require.NoError(t, Capture(context.Background(), root, CaptureOptions{Stream: "rootfs"}, w))
	assert.Equal(t, comparable(plain.recs), comparable(w.recs))
	assert.Equal(t, 299, w.fills, "every small non-empty file is filled, once")
}

func TestFillSmallFileRereadsChangedFile(t *testing.T) {
	p, e := grownSmallFile(t)
	fd, err := openSmallFile(unix.AT_FDCWD, p, &e, nil)
	require.NoError(t, err)
	defer unix.Close(fd)
	attempts := 0
	buf := make([]byte, e.Size)
	require.ErrorIs(t, fillSmallFile(fd, &e, buf, &attempts), pluginapi.ErrRefill)
	require.Equal(t, int64(len("much longer now")), e.Size, "entry follows the file")
	buf = make([]byte, e.Size)
	require.NoError(t, fillSmallFile(fd, &e, buf, &attempts))
	assert.Equal(t, "much longer now", string(buf))

	// A file that keeps changing gives up after readAttempts.
	attempts = readAttempts - 1
	e.MtimeNs++
	assert.ErrorIs(t, fillSmallFile(fd, &e, buf, &attempts), ErrFileChanged)

	// Replaced by another file (another inode): refused.
	e.Inode++
	attempts = 0
	assert.ErrorIs(t, fillSmallFile(fd, &e, buf, &attempts), ErrFileChanged)
}

func TestCaptureFillClosesFilesWhenWriterFails(t *testing.T) {
	root := t.TempDir()
	for i := range 2000 {
		writeFile(t, filepath.Join(root, fmt.Sprintf("f%04d", i)), "body", 0o644)
	}
	openFds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(ents)
	}
	before := openFds()
	w := &fillWriter{memWriter: memWriter{failAfter: 10}}
	err := Capture(context.Background(), root, CaptureOptions{Stream: "rootfs"}, w)
	require.ErrorIs(t, err, errWriterStop)
	assert.Equal(t, before, openFds(), "no file left open")
}
