package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// EventLog is an append-only log of JSON lines kept in the store's directory,
// outside Badger, so another process can read it and follow it while this
// one holds the store. Each event is one write(2) of one line to a file
// opened O_APPEND, so concurrent appenders (goroutines or processes) never
// interleave within a line; a reader only ever delivers complete lines.
type EventLog struct {
	path string
	mu   sync.Mutex
	f    *os.File // opened for append on first Append
}

// eventPollInterval is how often a following reader looks for new lines.
const eventPollInterval = 100 * time.Millisecond

// maxEventSize bounds one event line.
const maxEventSize = 1 << 20

func eventLogPath(dir string) string { return filepath.Join(dir, "events.jsonl") }

func openEventLog(dir string, forAppend bool) (*EventLog, error) {
	l := &EventLog{path: eventLogPath(dir)}
	if forAppend {
		if err := l.openAppend(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *EventLog) openAppend() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	l.f = f
	return nil
}

// Events returns the store's event log.
func (s *Store) Events() *EventLog { return s.events }

// Append adds one event (a JSON document) to the log. The document is
// compacted to one line; invalid JSON is refused.
func (l *EventLog) Append(ctx context.Context, event []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, event); err != nil {
		return fmt.Errorf("event log: event is not JSON: %w", err)
	}
	if buf.Len() > maxEventSize {
		return fmt.Errorf("event log: event of %d bytes is too large", buf.Len())
	}
	buf.WriteByte('\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		if err := l.openAppend(); err != nil {
			return err
		}
	}
	if _, err := l.f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	return nil
}

// Close closes the log's file.
func (l *EventLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// OpenEventLog opens the event log of the store in dir for reading without
// taking the store's lock. A log that does not exist yet reads as empty.
func OpenEventLog(dir string) (*EventLog, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	return openEventLog(dir, false)
}

// Read calls fn with every event from offset on (the slice is valid only
// during the call); with follow it keeps waiting for new ones until ctx ends
// (then it returns ctx's error with the offset reached). It returns the
// offset after the last complete event, to resume from.
func (l *EventLog) Read(ctx context.Context, offset int64, follow bool, fn func(event []byte) error) (int64, error) {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var r *bufio.Reader
	for {
		if f == nil {
			var err error
			f, err = os.Open(l.path)
			if errors.Is(err, os.ErrNotExist) {
				f = nil
			} else if err != nil {
				return offset, fmt.Errorf("event log: %w", err)
			} else {
				if _, err := f.Seek(offset, io.SeekStart); err != nil {
					return offset, fmt.Errorf("event log: %w", err)
				}
				r = bufio.NewReaderSize(f, 64<<10)
			}
		}
		if f != nil {
			for {
				line, err := r.ReadSlice('\n')
				if errors.Is(err, bufio.ErrBufferFull) {
					// A line longer than the buffer: read it whole.
					rest, err2 := r.ReadBytes('\n')
					line = append(bytes.Clone(line), rest...)
					err = err2
				}
				if err != nil {
					// Incomplete last line: re-read it next time
					// from its start.
					if _, serr := f.Seek(offset, io.SeekStart); serr != nil {
						return offset, fmt.Errorf("event log: %w", serr)
					}
					r.Reset(f)
					if !errors.Is(err, io.EOF) {
						return offset, fmt.Errorf("event log: %w", err)
					}
					break
				}
				offset += int64(len(line))
				if err := fn(bytes.TrimSuffix(line, []byte{'\n'})); err != nil {
					return offset, err
				}
			}
		}
		if !follow {
			return offset, nil
		}
		select {
		case <-ctx.Done():
			return offset, ctx.Err()
		case <-time.After(eventPollInterval):
		}
	}
}
