package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/klauspost/compress/zstd"
	"github.com/pypj/ptest-snap/compress"
)

// StoreFormat is the version of the store's key layout, kept in the
// database; a store of a newer major layout is refused with ErrNewerFormat.
//
// 2: packs and chunks stored alone above packMaxChunk live in bulk files
// (bulk_files.go), their Badger values are locators. A format-1 store
// (values inline) stays readable and is marked 2 when opened, since new
// values then go to files: binaries that read format 1 only refuse it
// rather than take a locator for a corrupt value.
const StoreFormat = 2

// Options configure Open.
type Options struct {
	// Dir is the store's directory, created if missing.
	Dir string
	// LockTimeout is how long Open waits for another process holding the
	// store before failing with ErrBusy. Zero means do not wait.
	LockTimeout time.Duration
	// OnWait, if set, is called once when Open has to wait, with a
	// description of the holder (pid, command, since when).
	OnWait func(holder string)
	// CompressionLevel overrides the measured default zstd level (1 fastest,
	// 2 default, 3 better, 4 best, as zstd.EncoderLevel); 0 keeps it.
	CompressionLevel int
	// Logf, if set, receives Badger's warnings and errors.
	Logf func(format string, args ...any)

	// bigChunkLevel overrides the level of chunks stored alone (benchmarks
	// compare strategies); 0 keeps bigChunkLevel, or CompressionLevel
	// when that is set.
	bigChunkLevel int

	// valueLogFileSize overrides the value-log file size (tests use small
	// files so that value-log GC has whole files to rewrite).
	valueLogFileSize int64

	// memTableSize overrides the memtable size (tests use small memtables
	// so that one open store flushes many level-0 tables).
	memTableSize int64
}

// Store is an open content-addressed store. It is safe for concurrent use.
type Store struct {
	dir   string
	opts  Options
	db    *badger.DB
	lock  *dirLock
	codec *compress.Codec
	// bigLevel is the zstd level of chunks stored alone (chunk_store.go).
	bigLevel zstd.EncoderLevel
	events   *EventLog
	closed   atomic.Bool

	// badgerCompacts: Badger's own compactors run in this process (the
	// store was opened with level 0 long, l0Long), so commits leave level
	// 0 to them (compactL0IfLong).
	badgerCompacts bool
	// l0Mu guards l0Running, set while a compaction a commit started runs;
	// l0Done waits for its goroutine (Close).
	l0Mu      sync.Mutex
	l0Running bool
	l0Done    sync.WaitGroup

	// live writers and the chunks they reference, protected from GC (see
	// gc.go): refs counts, per chunk, the live writers that put or found it.
	refMu     sync.Mutex
	refs      map[Hash]int32
	gcRunning bool
	gcHeld    map[Hash]struct{}
	// pins are the parent snapshots live writers pinned (parent_pin.go);
	// gcHeldPins those unpinned while a GC runs (gc.go, rule 3).
	pins       map[*parentPin]struct{}
	gcHeldPins []*parentPin

	gcMu sync.Mutex // one GC at a time

	// gate pauses every Badger write while GC flushes the memtable with
	// DropPrefix, during which Badger refuses writes (gc.go, reclaim).
	gate sync.RWMutex

	chunks    chunkQueue
	files     bulkFiles // packs and large chunks (bulk_files.go)
	packer    packer
	packCache packCache
	packSizes packSizes    // stored and raw size per pack (stored_size.go)
	packLoads atomic.Int64 // packs decompressed (cache misses), for benchmarks
	// packGuesses counts the chunks found where a reader guessed
	// (GetChunkPinnedGuess), for tests and benchmarks.
	packGuesses atomic.Int64

	readSinceRel atomic.Int64 // value bytes read since the last releaseMappedPages

	// mapsPrefix is the database directory as /proc/self/maps names it
	// (mapped_pages.go); empty if it cannot be known.
	mapsPrefix string
}

// dbDir is where Badger lives inside the store directory.
func dbDir(dir string) string { return filepath.Join(dir, "db") }

// valueThreshold: values at least this big go to the value log.
const valueThreshold = 1 << 10

// Value-log files: see badgerOptions and reclaim (gc.go).
const (
	vlogFileSize = 1 << 20
	// vlogMaxEntries: Badger also starts a new value-log file after this
	// many values; GC relies on it to rotate the active file (gc.go,
	// rotateValueLog). A venv-full snapshot writes about 2,500 values of
	// 1 KiB or more (packs, large chunks, trees), so files still end by
	// size or close to it.
	vlogMaxEntries = 1000
)

// badgerOptions tunes Badger for this workload:
//   - values are our compressed chunks: Badger's own compression is off
//     (it would only burn CPU on zstd output), and without compression or
//     encryption its tables are read straight from their memory mapping,
//     so the block cache is off too; the index cache is off as well, which
//     keeps the (small) table indexes in memory;
//   - values above 1 KiB (packs, large chunks) go to the value log (big sequential writes, no
//     rewriting by LSM compactions); small chunks and keys stay in the LSM,
//     which compaction reclaims on its own after GC;
//   - value-log files of 1 MiB (Badger's minimum), so that value-log GC can
//     rewrite one file at a time and give space back (the default 1 GiB
//     file would hold a whole venv); GC also rotates the active file first
//     (gc.go, reclaim). Badger creates a new value-log file at every Open
//     of a writable store, sized twice this, and maps it; its first write
//     faults in a read-around window of the block device's read_ahead_kb
//     (8 MiB on the project's machines) of zero-filled page-cache pages
//     that Close then msyncs and truncates away. With 8 MiB files that was
//     16 MiB mapped and 8 MiB faulted by every command that opens the
//     store; 1 MiB files cap it at 2 MiB. Since packs and large chunks
//     went to bulk files (StoreFormat 2) the value log holds only records
//     and trees between 1 KiB and packMaxChunk: ~380 KB for a venv-full
//     snapshot, ~3.4 KB for a second one. The figures below are of the
//     format-1 layout, when packs were values:
//     BenchmarkGCVenvFull (delete a venv-full snapshot whose other snapshot
//     keeps half its site-packages: 49.6 MB of chunks deleted, disk 109 MB
//     before) freed 50.3 MB of disk with 16 MiB files (5 files), 50.1 MB
//     with 32 MiB (4 files), 34.5 MB with 64 MiB (2 files); create time did
//     not differ measurably. 8 MiB rather than 32: every Open reads the
//     newest file whole (Badger checks it for a torn write), which the
//     previous create left up to a file long — the store open of a second
//     create of venv-full took 38-85 ms (median 42) after an initial
//     create with 8 MiB files against 59-107 ms (median 84) with 32 MiB (6
//     alternating opens each, machine load ~11), and it is on the
//     critical path, before the parent's index can be read. A venv-full
//     snapshot is then ~10 files (most grow past 8 MiB by the batch that
//     fills them), and value-log GC rewrites smaller pieces;
//   - memtables of 16 MiB (they hold keys, references and values below
//     1 KiB only: a venv's 42,000 chunk keys fit), two of them, and small caches: the whole process
//     must stay under 300 MB peak RSS while it also compresses and restores;
//   - SyncWrites off: Writer.Commit calls Sync once, after the chunks and
//     before the record, which is all the durability the invariants need.
//   - compaction by the process that finds level 0 long, at its Close
//     (compactL0, l0CompactAt), instead of Badger's background compactors
//     in every process: each process that wrote leaves its memtable as one
//     small level-0 table; compacting on every Close rewrote the level-1
//     table (5 MB for one venv-full snapshot) each time: 60–90 ms of every
//     create's exit, against 10–14 ms without, on the project's machines
//     (an unchanged second create of venv-full, side by side).
//     Compactors wait a random 0-1 s before their first compaction, so a
//     command of a few hundred ms rarely compacted, and when one did it
//     took a core from the command and its Close waited for it (115-460
//     ms, every 5-6 second creates). Level 0 meanwhile grew without bound,
//     since Close adds its table past NumLevelZeroTablesStall: 42 tables
//     after 300 creates and deletes of a small tree, and an Open reads
//     every table's index. A write stalled at NumLevelZeroTablesStall
//     waits for a compactor, which a process without them would never
//     have: the stall is set out of reach.
//     A process that keeps the store open and fills level 0 itself (its
//     memtable flushed again and again) compacts it from a commit
//     (compactL0IfLong).
func badgerOptions(dir string, logf func(string, ...any), compactL0 bool) badger.Options {
	compactors := 0
	if compactL0 {
		compactors = 2
	}
	return badger.DefaultOptions(dbDir(dir)).
		WithLogger(badgerLogger{logf}).
		WithSyncWrites(false).
		WithCompression(options.None).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(vlogFileSize).
		WithValueLogMaxEntries(vlogMaxEntries).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(math.MaxInt32).
		WithBaseTableSize(8 << 20).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithNumCompactors(compactors).
		WithNumVersionsToKeep(1).
		WithCompactL0OnClose(compactL0).
		WithDetectConflicts(true)
}

type badgerLogger struct{ logf func(string, ...any) }

// Errorf and Warningf pass Badger's problems to Options.Logf; Infof and
// Debugf drop its chatter (table counts, compactions) that users never need.
func (l badgerLogger) Errorf(f string, a ...any) { l.log("badger error: "+f, a...) }

// Warningf: see Errorf.
func (l badgerLogger) Warningf(f string, a ...any) { l.log("badger warning: "+f, a...) }

// Infof: see Errorf.
func (badgerLogger) Infof(string, ...any) {}

// Debugf: see Errorf.
func (badgerLogger) Debugf(string, ...any) {}
func (l badgerLogger) log(f string, a ...any) {
	if l.logf != nil {
		l.logf(f, a...)
	}
}

// Open opens (creating if needed) the store in opts.Dir. If another process
// holds the store, Open waits up to opts.LockTimeout (calling opts.OnWait
// once) and then fails with an error wrapping ErrBusy that names the holder.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("open store: no directory given")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	lk, err := acquireLock(ctx, opts.Dir, opts.LockTimeout, opts.OnWait)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, err)
	}
	s, err := open(opts, lk)
	if err != nil {
		lk.release()
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, err)
	}
	return s, nil
}

func open(opts Options, lk *dirLock) (*Store, error) {
	level := compress.DefaultLevel
	if opts.CompressionLevel != 0 {
		level = compressLevel(opts.CompressionLevel)
	}
	big := bigChunkLevel
	if opts.CompressionLevel != 0 {
		big = level
	}
	if opts.bigChunkLevel != 0 {
		big = compressLevel(opts.bigChunkLevel)
	}
	codec, err := compress.NewCodec(compress.Options{Level: level})
	if err != nil {
		return nil, err
	}
	compact, err := l0Long(opts)
	if err != nil {
		codec.Close()
		return nil, err
	}
	bo := badgerOptions(opts.Dir, opts.Logf, compact)
	if opts.valueLogFileSize > 0 {
		bo = bo.WithValueLogFileSize(opts.valueLogFileSize)
	}
	if opts.memTableSize > 0 {
		bo = bo.WithMemTableSize(opts.memTableSize)
	}
	if err := makeBulkDir(opts.Dir); err != nil {
		codec.Close()
		return nil, err
	}
	if err := removeEmptyLogFiles(dbDir(opts.Dir)); err != nil {
		codec.Close()
		return nil, err
	}
	db, err := badger.Open(bo)
	if err != nil {
		codec.Close()
		return nil, fmt.Errorf("badger: %w", err)
	}
	s := &Store{
		dir: opts.Dir, opts: opts, db: db, lock: lk, codec: codec, bigLevel: big,
		refs: map[Hash]int32{}, pins: map[*parentPin]struct{}{}, badgerCompacts: compact,
	}
	s.files.init(opts.Dir)
	s.chunks.init(s)
	s.packer.init(s)
	if abs, err := filepath.Abs(dbDir(opts.Dir)); err == nil {
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			s.mapsPrefix = real + string(filepath.Separator)
		}
	}
	if err := s.checkFormat(); err != nil {
		s.closeParts()
		return nil, err
	}
	if empty, err := s.noChunks(); err != nil {
		s.closeParts()
		return nil, err
	} else if empty {
		s.chunks.startFresh()
	}
	s.events, err = openEventLog(opts.Dir, true)
	if err != nil {
		s.closeParts()
		return nil, err
	}
	return s, nil
}

// l0CompactAt is the level-0 table count from which a process compacts
// level 0 into the levels below when it closes the store (badgerOptions).
// An Open reads each table's index and every lookup that misses the
// memtable probes each level-0 table, ~0.3-0.5 ms of an Open per table on
// the project's machines (opens of stores with 2 and 42 level-0 tables);
// a compaction rewrites the base level's tables that overlap, ~60-90 ms
// for a store holding a venv-full snapshot. Every 8th writing command
// pays it.
const l0CompactAt = 8

// l0Long reports whether the store's database has at least l0CompactAt
// level-0 tables, from its manifest (Badger reads it again in Open; it is
// a few KB). A missing manifest is a new database. The store's lock is
// held: no other process changes the manifest.
func l0Long(opts Options) (bool, error) {
	f, err := os.Open(filepath.Join(dbDir(opts.Dir), badger.ManifestFilename))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read badger manifest: %w", err)
	}
	defer f.Close()
	m, _, err := badger.ReplayManifestFile(f, 0, badgerOptions(opts.Dir, opts.Logf, false))
	if err != nil {
		// Badger's Open reports (or repairs) a damaged manifest; no
		// compaction is no harm.
		return false, nil
	}
	n := 0
	for _, t := range m.Tables {
		if t.Level == 0 {
			n++
		}
	}
	return n >= l0CompactAt, nil
}

// compactL0IfLong compacts level 0 into the levels below, on a goroutine of
// the store's, when a commit finds l0CompactAt tables or more there and no
// compactor of Badger's runs in this process. l0Long decides only at Open,
// from what earlier processes left; a process that keeps the store open
// (a test framework through the Go API) adds a level-0 table each time
// its memtable fills, and without this its level 0 grew for as long as it
// ran: every lookup that misses the memtable probes each level-0 table.
// A short command's commit rarely gets past the count: its memtable goes to
// level 0 at Close, unless the command filled it (16 MiB of keys and small
// values) before, so its commits see level 0 as Open found it, which
// l0Long took care of.
//
// The compaction is Badger's Flatten, the one public call that compacts:
// level 0 into the base level, then, where the store has grown past one
// level below 0, those into the last. It holds gcMu, as GC's own Flatten
// does, so the two never compact at once; writes go on meanwhile. Close
// waits for it.
func (s *Store) compactL0IfLong() {
	if s.badgerCompacts || level0Count(s.db) < l0CompactAt {
		return
	}
	s.l0Mu.Lock()
	if s.l0Running || s.closed.Load() {
		s.l0Mu.Unlock()
		return
	}
	s.l0Running = true
	s.l0Done.Add(1)
	s.l0Mu.Unlock()
	go func() {
		defer s.l0Done.Done()
		defer func() {
			s.l0Mu.Lock()
			s.l0Running = false
			s.l0Mu.Unlock()
		}()
		s.gcMu.Lock()
		defer s.gcMu.Unlock()
		if s.closed.Load() {
			return
		}
		if err := s.db.Flatten(1); err != nil {
			badgerLogger{s.opts.Logf}.Warningf("compacting level 0 (%d tables): %v", level0Count(s.db), err)
		}
	}()
}

// level0Count counts the tables in db's level 0.
func level0Count(db *badger.DB) int {
	for _, l := range db.Levels() {
		if l.Level == 0 {
			return l.NumTables
		}
	}
	return 0
}

// removeEmptyLogFiles removes the 0-byte memtable (.mem) and value-log
// (.vlog) files a process killed between creating such a file and sizing
// it leaves behind: Badger's Open fails on them with "Create a new file"
// (badger issue #2207; TestCrashAtAnyPoint hit it). An empty file holds no
// entry, so nothing refers to it. We hold the store's lock: no other
// process has the database open.
func removeEmptyLogFiles(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || (filepath.Ext(name) != ".mem" && filepath.Ext(name) != ".vlog") {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if info.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove empty %s left by a crash: %w", name, err)
		}
	}
	return nil
}

// noChunks reports whether the database holds no chunk key (a new store,
// or one whose chunks GC all deleted).
func (s *Store) noChunks() (bool, error) {
	empty := true
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindChunk}})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("look for chunks: %w", err)
	}
	return empty, nil
}

// checkFormat records the layout version in a new store and refuses a store
// written by a newer major layout.
func (s *Store) checkFormat() error {
	key := metaKey("format")
	return s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set(key, []byte{StoreFormat})
		}
		if err != nil {
			return err
		}
		upgrade := false
		err = item.Value(func(v []byte) error {
			if len(v) != 1 {
				return fmt.Errorf("%w: store format record", ErrCorrupt)
			}
			if v[0] > StoreFormat {
				return fmt.Errorf("store layout %d, this build reads %d: %w", v[0], StoreFormat, ErrNewerFormat)
			}
			upgrade = v[0] < StoreFormat
			return nil
		})
		if err != nil || !upgrade {
			return err
		}
		// New values go to bulk files from now on (StoreFormat).
		return txn.Set(key, []byte{StoreFormat})
	})
}

// Close flushes and closes the store and releases its lock. Writers still
// open are aborted.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	err := s.closeDB()
	// A level-0 compaction a commit started has finished (it held gcMu)
	// or finds the store closed; none starts after this barrier, since
	// closed was set before it (compactL0IfLong).
	s.l0Mu.Lock()
	running := s.l0Running
	s.l0Mu.Unlock()
	if running {
		s.l0Done.Wait()
	}
	return err
}

// closeDB flushes what is queued and closes the database once a running GC
// or level-0 compaction has finished.
func (s *Store) closeDB() error {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	// Chunks queued but not written belong to writers that will never
	// commit now; writing them anyway keeps the store's state simple.
	flushErr := errors.Join(s.packer.flush(), s.chunks.flush())
	err := s.closeParts()
	if err == nil && flushErr != nil && !errors.Is(flushErr, ErrClosed) {
		err = flushErr
	}
	return err
}

func (s *Store) closeParts() error {
	var err error
	if s.events != nil {
		err = errors.Join(err, s.events.Close())
	}
	if s.db != nil {
		if e := s.db.Close(); e != nil {
			err = errors.Join(err, fmt.Errorf("close badger: %w", e))
		}
	}
	s.codec.Close()
	s.lock.release()
	return err
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// gated runs a Badger write under the write gate.
func (s *Store) gated(fn func() error) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	return fn()
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}
