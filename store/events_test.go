package store

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	log := s.Events()
	require.NoError(t, log.Append(ctx, []byte(`{"a": 1,
  "b": "x"}`)))
	assert.Error(t, log.Append(ctx, []byte(`not json`)))

	// Another reader, without the store's lock.
	r, err := OpenEventLog(dir)
	require.NoError(t, err)
	var got []string
	off, err := r.Read(ctx, 0, false, func(e []byte) error { got = append(got, string(e)); return nil })
	require.NoError(t, err)
	assert.Equal(t, []string{`{"a":1,"b":"x"}`}, got)

	// An incomplete last line is not delivered until it is complete.
	f, err := os.OpenFile(eventLogPath(dir), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"partial":`)
	require.NoError(t, err)
	off2, err := r.Read(ctx, off, false, func(e []byte) error { t.Errorf("unexpected %s", e); return nil })
	require.NoError(t, err)
	assert.Equal(t, off, off2)
	_, err = f.WriteString("true}\n")
	require.NoError(t, err)
	f.Close()

	// Follow: sees the completed line and new appends, stops with ctx.
	fctx, cancel := context.WithCancel(ctx)
	seen := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(fctx, off, true, func(e []byte) error { seen <- string(e); return nil })
		done <- err
	}()
	assert.Equal(t, `{"partial":true}`, <-seen)
	for i := 0; i < 3; i++ {
		require.NoError(t, log.Append(ctx, []byte(fmt.Sprintf(`{"n":%d}`, i))))
		select {
		case e := <-seen:
			assert.Equal(t, fmt.Sprintf(`{"n":%d}`, i), e)
		case <-time.After(10 * time.Second):
			t.Fatal("follower did not see the event")
		}
	}
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}
