package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// GC and live writers.
//
// The race GC must not lose: a Writer finds chunk X already stored and does
// not write it; GC, which did not see the Writer's snapshot (it is not
// committed yet), deletes X; the Writer commits a record that references a
// missing chunk. Two rules close it:
//
//  1. A Writer registers every chunk it puts or finds in s.refs (under
//     s.refMu) BEFORE it asks whether the chunk exists. GC's sweep checks
//     s.refs under the same mutex, in the same critical section as it
//     commits the deletions. So either GC deleted X first (and the Writer,
//     looking afterwards, stores X again) or the Writer registered first
//     (and GC keeps X).
//  2. A Writer that commits while a GC runs may have committed after GC
//     listed the snapshots: its chunks must stay protected until that GC
//     ends. So while s.gcRunning, released references move to s.gcHeld,
//     which the sweep also respects.
//
//  3. A Writer may instead pin its parent snapshot (parent_pin.go) and
//     reuse what is reachable from it without registering each hash. The
//     mark phase walks the pinned snapshots (s.pins, and s.gcHeldPins: pins
//     dropped while GC runs, as rule 2) as it walks the listed ones, reading
//     the pins AFTER listing the snapshots. A pin registered after that read
//     was registered after the listing, and UseParent checks the parent
//     still exists after registering its pin: so the parent was listed.
//
// Chunks still held for dictionary training or queued in memory are not in
// Badger yet, so the sweep cannot see them; they are in their Writer's refs.

func (s *Store) addRef(h Hash) {
	s.refMu.Lock()
	s.refs[h]++
	s.refMu.Unlock()
}

func (s *Store) dropRefs(refs map[Hash]struct{}) {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	for h := range refs {
		if n := s.refs[h] - 1; n > 0 {
			s.refs[h] = n
		} else {
			delete(s.refs, h)
		}
		if s.gcRunning {
			s.gcHeld[h] = struct{}{}
		}
	}
}

// protectedLocked reports whether a chunk must survive the sweep; refMu held.
func (s *Store) protectedLocked(h Hash) bool {
	if s.refs[h] > 0 {
		return true
	}
	_, ok := s.gcHeld[h]
	return ok
}

// GCStats report a garbage collection.
type GCStats struct {
	ChunksKept     int64
	ChunksDeleted  int64
	BytesReclaimed int64 // stored bytes of deleted chunks
	DiskBefore     int64
	DiskAfter      int64
	Duration       time.Duration
}

// sweepBatch is how many deletions are committed per critical section:
// writers wait for at most one batch.
const sweepBatch = 1000

// GCPhase names a step of a garbage collection, in the order they run.
type GCPhase string

// GC phases; GCProgress says what Done and Total count in each.
const (
	// GCMark reads every snapshot's trees: Done and Total count snapshots.
	GCMark GCPhase = "mark"
	// GCSweep deletes the chunks nothing references: Done and Total count
	// those chunks (Total is known once the chunk keys are scanned).
	GCSweep GCPhase = "sweep"
	// GCRepack deletes packs left without members and rewrites packs that
	// are mostly garbage: Done and Total count the packs examined.
	GCRepack GCPhase = "repack"
	// GCVlog makes Badger give the space back (memtable flush, compaction,
	// value-log GC); it runs only when something was deleted. Done counts
	// its steps (flush, compaction, then one per value-log file rewritten);
	// Total is 0: how many files the value-log GC rewrites is not known
	// in advance.
	GCVlog GCPhase = "vlog"
)

// GCProgress is a garbage collection's progress in one phase. Within a
// phase Done never decreases; Total is 0 when not known.
type GCProgress struct {
	Phase GCPhase
	Done  int64
	Total int64
}

// GCOptions configure GCWithOptions.
type GCOptions struct {
	// Progress, if set, is called from GC's goroutine at the start of each
	// phase and as it advances (per snapshot, per batch of deletions, per
	// pack, per value-log step). It must return quickly: GC waits for it,
	// and so may writers waiting on GC.
	Progress func(GCProgress)
}

func (o GCOptions) report(phase GCPhase, done, total int64) {
	if o.Progress != nil {
		o.Progress(GCProgress{Phase: phase, Done: done, Total: total})
	}
}

// GC deletes every chunk no snapshot (and no live Writer) references, then
// makes Badger give the space back: the deletions are flushed from the
// memtable and compacted into one level (which drops the deleted values
// stored in the LSM and tells the value log what is garbage), then the
// value-log GC rewrites the files that are mostly garbage. It is
// GCWithOptions with no options.
func (s *Store) GC(ctx context.Context) (GCStats, error) {
	return s.GCWithOptions(ctx, GCOptions{})
}

// GCWithOptions is GC reporting its progress (GCOptions).
func (s *Store) GCWithOptions(ctx context.Context, opts GCOptions) (GCStats, error) {
	if err := s.check(ctx); err != nil {
		return GCStats{}, err
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	start := time.Now()
	st := GCStats{}
	var err error
	if st.DiskBefore, err = dirSize(s.dir); err != nil {
		return st, err
	}

	// GC deletes chunks: has must ask Badger from now on.
	s.chunks.endFresh()
	s.refMu.Lock()
	s.gcRunning, s.gcHeld, s.gcHeldPins = true, map[Hash]struct{}{}, nil
	s.refMu.Unlock()
	defer func() {
		s.refMu.Lock()
		s.gcRunning, s.gcHeld, s.gcHeldPins = false, nil, nil
		s.refMu.Unlock()
	}()

	live, err := s.mark(ctx, opts)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	if err := s.sweep(ctx, live, &st, opts); err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	if err := s.removeOrphans(ctx, &st); err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	if st.ChunksDeleted > 0 || st.BytesReclaimed > 0 {
		if err := s.reclaim(ctx, opts); err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
	}
	if st.DiskAfter, err = dirSize(s.dir); err != nil {
		return st, err
	}
	st.Duration = time.Since(start)
	return st, nil
}

// mark returns every chunk reachable from a snapshot: its trees and the
// files' chunks. Each tree is read once however many snapshots share it.
func (s *Store) mark(ctx context.Context, opts GCOptions) (map[Hash]struct{}, error) {
	snaps, err := s.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	opts.report(GCMark, 0, int64(len(snaps)))
	live := map[Hash]struct{}{}
	var walk func(h Hash) error
	walk = func(h Hash) error {
		if _, ok := live[h]; ok {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		live[h] = struct{}{}
		t, parts, err := s.GetTreeParts(ctx, h)
		if err != nil {
			// A missing or corrupt tree hides what it references: do
			// not guess, do not delete anything.
			return err
		}
		for _, p := range parts {
			live[p] = struct{}{}
		}
		for i := range t.Nodes {
			n := &t.Nodes[i]
			for _, c := range n.Content {
				live[c] = struct{}{}
			}
			if n.Type == NodeDir {
				if err := walk(n.Subtree); err != nil {
					return err
				}
			}
		}
		return nil
	}
	visitIndex := func(h Hash) bool {
		if _, ok := live[h]; ok {
			return false
		}
		live[h] = struct{}{}
		return true
	}
	for i, snap := range snaps {
		if i > 0 {
			opts.report(GCMark, int64(i), int64(len(snaps)))
		}
		for _, stream := range snap.Streams {
			if err := walk(stream.Root); err != nil {
				return nil, fmt.Errorf("mark snapshot %s stream %s: %w", snap.ID, stream.Name, err)
			}
		}
		// The change index's chunks (change_index.go).
		if err := s.walkSnapshotIndex(ctx, snap.ID, visitIndex); err != nil {
			return nil, fmt.Errorf("mark snapshot %s: %w", snap.ID, err)
		}
	}
	// Rule 3: the pinned parents, read after the listing above.
	s.refMu.Lock()
	pins := slices.Collect(maps.Keys(s.pins))
	pins = append(pins, s.gcHeldPins...)
	s.refMu.Unlock()
	for _, p := range pins {
		for _, root := range p.trees {
			if err := walk(root); err != nil {
				return nil, fmt.Errorf("mark pinned snapshot %s: %w", p.id, err)
			}
		}
		for st, root := range p.index {
			if err := s.walkIndex(ctx, root, nil, visitIndex); err != nil {
				return nil, fmt.Errorf("mark pinned snapshot %s change index of %s: %w", p.id, st, err)
			}
		}
	}
	if len(snaps) > 0 {
		opts.report(GCMark, int64(len(snaps)), int64(len(snaps)))
	}
	return live, nil
}

type sweepCandidate struct {
	h    Hash
	size int64
	ref  bool
	pack packID
	n    int
	file *bulkID // the bulk file holding the value, if any
}

// packUse is what the sweep learns about one pack from its members.
type packUse struct {
	live    []packMember // live members, with their hashes in liveH
	liveH   []Hash
	members int
}

// repackBelow: a pack whose live bytes fall below this fraction of its
// size is rewritten with only its live members, so a deleted package's
// files do not keep whole packs alive.
const repackBelow = 0.5

func (s *Store) sweep(ctx context.Context, live map[Hash]struct{}, st *GCStats, opts GCOptions) error {
	var dead []sweepCandidate
	packs := map[packID]*packUse{}
	use := func(id packID) *packUse {
		u := packs[id]
		if u == nil {
			u = &packUse{}
			packs[id] = u
		}
		return u
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindChunk}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 1+len(Hash{}) {
				continue
			}
			c := sweepCandidate{size: item.ValueSize()}
			copy(c.h[:], k[1:])
			if item.UserMeta() == metaRef {
				// References are small and live in the LSM: cheap to read.
				err := item.Value(func(v []byte) error {
					var err error
					var off int
					c.pack, off, c.n, err = decodeRef(v)
					if err == nil {
						u := use(c.pack)
						u.members++
						if _, ok := live[c.h]; ok {
							u.live = append(u.live, packMember{off: off, n: c.n})
							u.liveH = append(u.liveH, c.h)
						}
					}
					return err
				})
				if err != nil {
					return fmt.Errorf("chunk %s: %w", c.h, err)
				}
				c.ref = true
			} else if item.UserMeta() == metaFile {
				// A locator, small and in the LSM as well.
				err := item.Value(func(v []byte) error {
					l, err := decodeBulkLoc(v)
					if err == nil {
						c.size, c.file = l.n, &l.id
					}
					return err
				})
				if err != nil {
					return fmt.Errorf("chunk %s: %w", c.h, err)
				}
			}
			if _, ok := live[c.h]; ok {
				st.ChunksKept++
				continue
			}
			dead = append(dead, c)
		}
		return nil
	})
	if err != nil {
		return err
	}
	total := int64(len(dead))
	opts.report(GCSweep, 0, total)
	for len(dead) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := dead[:min(sweepBatch, len(dead))]
		dead = dead[len(batch):]
		if err := s.deleteUnprotected(batch, packs, st); err != nil {
			return err
		}
		opts.report(GCSweep, total-int64(len(dead)), total)
	}
	return s.sweepPacks(ctx, packs, st, opts)
}

// deleteUnprotected deletes the chunks of batch no writer protects, checking
// and deleting in one critical section of refMu (rule 1 above). A protected
// packed chunk keeps its pack alive.
func (s *Store) deleteUnprotected(batch []sweepCandidate, packs map[packID]*packUse, st *GCStats) error {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	var del []sweepCandidate
	for _, c := range batch {
		if s.protectedLocked(c.h) {
			st.ChunksKept++
			if c.ref {
				u := packs[c.pack]
				// Offset unknown here; a protected member makes the
				// pack live and exempt from repacking.
				u.live = append(u.live, packMember{off: -1, n: c.n})
				u.liveH = append(u.liveH, c.h)
			}
			continue
		}
		del = append(del, c)
	}
	if len(del) == 0 {
		return nil
	}
	err := s.gated(func() error {
		return s.update(func(txn *badger.Txn) error {
			for _, c := range del {
				if err := txn.Delete(chunkKey(c.h)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("delete chunks: %w", err)
	}
	for _, c := range del {
		st.ChunksDeleted++
		if !c.ref {
			st.BytesReclaimed += c.size
		}
		if c.file != nil {
			// The key that named it is gone; a crash before this
			// leaves an orphan, for removeOrphans.
			if err := s.files.remove(*c.file); err != nil {
				return fmt.Errorf("delete chunk %s: %w", c.h, err)
			}
		}
	}
	return nil
}

// sweepPacks deletes packs none of whose members is left and rewrites packs
// that are mostly garbage. Only packs whose members the sweep saw are
// considered: a pack sealed after the sweep's scan is left alone.
func (s *Store) sweepPacks(ctx context.Context, packs map[packID]*packUse, st *GCStats, opts GCOptions) error {
	total := int64(len(packs))
	opts.report(GCRepack, 0, total)
	var done int64
	for id, u := range packs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if done > 0 {
			opts.report(GCRepack, done, total)
		}
		done++
		if len(u.live) > 0 && !s.wantRepack(id, u) {
			continue
		}
		// Only the pack's stored size is needed: its length, read in
		// place rather than copying the pack.
		stored, file, err := s.valueLen(packKey(id))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("pack %s: %w", id, err)
		}
		if len(u.live) == 0 {
			err = s.gated(func() error {
				return s.update(func(txn *badger.Txn) error { return txn.Delete(packKey(id)) })
			})
			if err != nil {
				return fmt.Errorf("delete pack %s: %w", id, err)
			}
			s.packCache.drop(id)
			st.BytesReclaimed += stored
			if file != nil {
				if err := s.files.remove(*file); err != nil {
					return fmt.Errorf("delete pack %s: %w", id, err)
				}
			}
			continue
		}
		freed, err := s.repack(id, u, stored, file)
		if err != nil {
			return err
		}
		st.BytesReclaimed += freed
	}
	if total > 0 {
		opts.report(GCRepack, total, total)
	}
	return nil
}

// wantRepack reports whether a pack is mostly garbage (and no member is
// protected by a writer, whose offset the sweep did not learn).
func (s *Store) wantRepack(id packID, u *packUse) bool {
	liveBytes := 0
	for _, m := range u.live {
		if m.off < 0 {
			return false
		}
		liveBytes += m.n
	}
	// The raw size is in the pack's header: no need to decompress the
	// packs that stay.
	ps, err := s.packSizeOf(id)
	if err != nil {
		return false
	}
	return float64(liveBytes) < repackBelow*float64(ps.raw)
}

// repack writes a pack's live members into a new pack and, in the same
// transaction, points their references at it and deletes the old pack. A
// reader that read an old reference retries (GetChunk). The new pack goes
// to a bulk file, durable before the transaction; the old one's file
// (oldFile, nil for a pack inline in Badger) is removed after it.
func (s *Store) repack(old packID, u *packUse, oldStored int64, oldFile *bulkID) (int64, error) {
	p, err := s.pack(old)
	if err != nil {
		return 0, fmt.Errorf("repack %s: %w", old, err)
	}
	defer s.packCache.unpin(p)
	raw := p.raw
	b := newPackBuf()
	for i, m := range u.live {
		if m.off+m.n > len(raw) {
			return 0, fmt.Errorf("repack %s: %w: member past the end", old, ErrCorrupt)
		}
		data := raw[m.off : m.off+m.n]
		if SumChunk(data) != u.liveH[i] {
			// Never copy a corrupt member: leave the pack for Verify.
			return 0, nil
		}
		b.members[u.liveH[i]] = packMember{off: len(b.raw), n: m.n}
		b.order = append(b.order, u.liveH[i])
		b.raw = append(b.raw, data...)
	}
	enc := s.encode(b.raw)
	f, loc, err := s.files.create(enc)
	if err == nil {
		err = s.files.syncFiles([]bulkFile{f})
	}
	defer s.files.done(f.id)
	if err != nil {
		return 0, fmt.Errorf("repack %s: %w", old, err)
	}
	err = s.gated(func() error {
		return s.update(func(txn *badger.Txn) error {
			if err := txn.SetEntry(badger.NewEntry(packKey(b.id), loc).WithMeta(metaFile)); err != nil {
				return err
			}
			for _, h := range b.order {
				m := b.members[h]
				e := badger.NewEntry(chunkKey(h), encodeRef(b.id, m.off, m.n)).WithMeta(metaRef)
				if err := txn.SetEntry(e); err != nil {
					return err
				}
			}
			return txn.Delete(packKey(old))
		})
	})
	if err != nil {
		return 0, fmt.Errorf("repack %s: %w", old, err)
	}
	s.packCache.drop(old)
	if oldFile != nil {
		if err := s.files.remove(*oldFile); err != nil {
			return 0, fmt.Errorf("repack %s: %w", old, err)
		}
	}
	return oldStored - int64(len(enc)), nil
}

// removeOrphans removes the bulk files no key locates (bulk_files.go) and
// adds their sizes to st.BytesReclaimed. A file this process is writing
// is pending until its key is committed; the pending set is read after
// the directory is listed and before the keys are scanned, so a file
// listed is either still pending then, or its key was committed before
// the scan's transaction began and the scan sees it (or it will never be
// committed: an orphan).
func (s *Store) removeOrphans(ctx context.Context, st *GCStats) error {
	files, err := s.files.list()
	if err != nil {
		return fmt.Errorf("list bulk files: %w", err)
	}
	if len(files) == 0 {
		return nil
	}
	for id := range s.files.pendingSet() {
		delete(files, id)
	}
	err = s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range []byte{kindChunk, kindPack} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
			for it.Rewind(); it.Valid(); it.Next() {
				item := it.Item()
				if item.UserMeta() != metaFile {
					// Inline: no file to keep. Every locator, of a
					// chunk or a pack, is written with metaFile.
					continue
				}
				err := item.Value(func(v []byte) error {
					if isBulkLoc(v) {
						l, err := decodeBulkLoc(v)
						if err != nil {
							return err
						}
						delete(files, l.id)
					}
					return nil
				})
				if err != nil {
					it.Close()
					return fmt.Errorf("key %x: %w", item.Key(), err)
				}
			}
			it.Close()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("orphan bulk files: %w", err)
	}
	for id, size := range files {
		if err := s.files.remove(id); err != nil {
			return fmt.Errorf("remove orphan bulk file: %w", err)
		}
		st.BytesReclaimed += size
	}
	return nil
}

// reclaim makes Badger return the space of deleted chunks to the file
// system. Deletions are tombstones in the memtable at first; nothing on
// disk shrinks until (1) the memtable is flushed, (2) compaction meets the
// tombstones and the old values and drops both, which also counts the
// value-log bytes they pointed to as discardable, and (3) the value-log GC
// rewrites the files that are mostly discardable.
//
// Badger's value-log GC looks only at the file with the most discardable
// bytes and gives up when that is the file being written (the active one),
// which after deleting the newest snapshot it nearly always is: at
// venv-full size (store 106 MB, 64 MiB files) GC deleted 48 MB of chunks
// and freed 0.9 MB of disk. So reclaim first makes Badger start a new
// value-log file (rotateValueLog), which turns the old active file into an
// ordinary candidate. Then it flushes the memtable by dropping the rotation
// fillers' prefix (Badger flushes memtables only when they are full or on
// DropPrefix of a prefix that exists; writes are paused by s.gate
// meanwhile, since Badger refuses writes during a drop), Flattens, and
// runs the value-log GC until it finds nothing more to rewrite.
func (s *Store) reclaim(ctx context.Context, opts GCOptions) error {
	opts.report(GCVlog, 0, 0)
	if err := s.gated(s.rotateValueLog); err != nil {
		return fmt.Errorf("rotate value log: %w", err)
	}
	s.gate.Lock()
	err := s.db.DropPrefix(rotateFillerPrefix)
	s.gate.Unlock()
	if err != nil {
		return fmt.Errorf("flush memtable: %w", err)
	}
	opts.report(GCVlog, 1, 0)
	if err := s.db.Flatten(2); err != nil {
		return fmt.Errorf("flatten: %w", err)
	}
	opts.report(GCVlog, 2, 0)
	for i := 0; i < 1000; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Writes are paused while a file is rewritten: Badger's rewrite
		// reads the memtable's max version (DB.MaxVersion, under db.lock)
		// while its write goroutine updates it without that lock — a data
		// race in Badger v4.9.6 that -race caught in
		// TestConcurrentWritersAndGC once rewrites really ran. With our
		// writes held at the gate no write is in flight when the rewrite
		// starts, and its own writes are synchronous.
		s.gate.Lock()
		err := s.db.RunValueLogGC(vlogDiscardRatio)
		s.gate.Unlock()
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			break
		}
		if err != nil {
			return fmt.Errorf("value log gc: %w", err)
		}
		opts.report(GCVlog, int64(3+i), 0)
	}
	return nil
}

// vlogDiscardRatio: a value-log file is rewritten once this fraction of it
// is garbage. Rewriting copies the live rest, so a lower ratio trades
// write amplification for disk: with 8 MiB files a file is at most
// ~6 MiB of live data to copy (a file that grew past 8 MiB, more).
const vlogDiscardRatio = 0.3

// rotateFillerPrefix prefixes the filler entries rotateValueLog writes.
var rotateFillerPrefix = metaKey("gc-rotate/")

// rotateValueLog makes Badger close its active value-log file and start a
// new one. Badger has no call for it, but it rotates after a write that
// takes the file past vlogMaxEntries values (Options.ValueLogMaxEntries),
// so one transaction of vlogMaxEntries+1 minimal values (valueThreshold
// bytes, 1 MiB in all) does it wherever the count stood. The fillers are
// dropped right after (reclaim), and their bytes are garbage in the old
// file, which is rewritten with the rest.
func (s *Store) rotateValueLog() error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	filler := make([]byte, valueThreshold)
	for i := 0; i <= vlogMaxEntries; i++ {
		key := binary.BigEndian.AppendUint32(bytes.Clone(rotateFillerPrefix), uint32(i))
		if err := txn.Set(key, filler); err != nil {
			return err
		}
	}
	return txn.Commit()
}
