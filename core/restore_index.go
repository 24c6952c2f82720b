package core

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pypj/ptest-snap/store"
)

// A restore index remembers, for one target of one engine, the file
// statistics (size, mtime, ctime, inode) the target had right after the
// last restore, and which snapshot it then equalled. The next in-place
// restore trusts a file whose statistics are still those as holding that
// snapshot's content, without reading it — the same rule a capture applies
// with its parent's change index.
//
// It lives in the store's directory, beside Badger (the store has no API
// for it yet), one file per target, replaced atomically by rename. It
// references no chunks, so GC ignores it; a lost or stale one only costs
// rewriting files that were in fact unchanged.
type restoreIndex struct {
	Engine     string
	Target     string
	SnapshotID string
	Files      store.ChangeIndex
}

const restoreIndexDir = "restore-index"

func (m *Manager) restoreIndexPath(engine, target string) string {
	sum := sha256.Sum256([]byte(engine + "\x00" + target))
	return filepath.Join(m.store.Dir(), restoreIndexDir, hex.EncodeToString(sum[:16]))
}

// loadRestoreIndex returns the restore index of a target, or nil if there
// is none (or it cannot be read: it is only an optimization).
func (m *Manager) loadRestoreIndex(ctx context.Context, engine, target string) *restoreIndex {
	f, err := os.Open(m.restoreIndexPath(engine, target))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("restore index unreadable", "target", target, "err", err)
		}
		return nil
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		m.log.Warn("restore index unreadable", "target", target, "err", err)
		return nil
	}
	ri := &restoreIndex{}
	if err := gob.NewDecoder(zr).Decode(ri); err != nil {
		m.log.Warn("restore index unreadable", "target", target, "err", err)
		return nil
	}
	if ri.Engine != engine || ri.Target != target {
		return nil
	}
	return ri
}

// saveRestoreIndex writes a target's restore index.
func (m *Manager) saveRestoreIndex(ctx context.Context, ri *restoreIndex) error {
	p := m.restoreIndexPath(ri.Engine, ri.Target)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	err = gob.NewEncoder(zw).Encode(ri)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write restore index: %w", err)
	}
	return os.Rename(tmp.Name(), p)
}

// dropRestoreIndex forgets a target's restore index (before a restore
// changes it, so a failed restore leaves none that could be trusted).
func (m *Manager) dropRestoreIndex(engine, target string) {
	if err := os.Remove(m.restoreIndexPath(engine, target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Warn("remove restore index", "target", target, "err", err)
	}
}
