package core

import (
	"context"
	"fmt"
	"io"
	"path"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/pypj/ptest-snap/store"
)

const (
	// defaultCreateWorkers hash, compress and store chunks. The machines
	// this runs on have 2 cores and the capture goroutine (reading and
	// chunking) needs one part of one; 3 keeps both cores busy while one
	// worker waits on Badger.
	defaultCreateWorkers = 3
	// createInFlightBytes bounds the chunk bytes copied and waiting for a
	// worker, so a create's memory stays flat whatever the environment's
	// size (peak RSS target: 300 MB with the store's own buffers).
	createInFlightBytes = 16 << 20
)

// failure keeps the first error of a pipeline.
type failure struct {
	once sync.Once
	err  atomic.Pointer[error]
}

func (f *failure) set(err error) {
	if err == nil {
		return
	}
	f.once.Do(func() { f.err.Store(&err) })
}

func (f *failure) get() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// chunkJob is one chunk on its way to the store.
type chunkJob struct {
	data []byte
	kind string // store.Writer.PutChunkKind
	file *pendingFile
	i    int
}

// maxChunkKind bounds the extension passed as a chunk's kind: a longer
// one is no file type, just a name with a dot in it.
const maxChunkKind = 12

// chunkKind is the kind of the chunks of the file called name: its
// extension, so that the store packs like files side by side
// (store.Writer.PutChunkKind).
func chunkKind(name string) string {
	if k := path.Ext(name); len(k) <= maxChunkKind && k != name {
		return k
	}
	return ""
}

// pendingFile collects the hashes of one file's chunks as workers store
// them, and reports the chunk list once the last one is in.
type pendingFile struct {
	mu        sync.Mutex
	hashes    []store.Hash
	remaining int
	sealed    bool
	done      func(content []store.Hash)
	kind      string // of the file's chunks
}

// add reserves the slot of the next chunk.
func (p *pendingFile) add() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hashes = append(p.hashes, store.Hash{})
	p.remaining++
	return len(p.hashes) - 1
}

// stored fills in chunk i.
func (p *pendingFile) stored(i int, h store.Hash) {
	p.mu.Lock()
	p.hashes[i] = h
	p.remaining--
	fire := p.sealed && p.remaining == 0
	p.mu.Unlock()
	if fire {
		p.done(p.hashes)
	}
}

// seal says no more chunks follow.
func (p *pendingFile) seal() {
	p.mu.Lock()
	p.sealed = true
	fire := p.remaining == 0
	p.mu.Unlock()
	if fire {
		p.done(p.hashes)
	}
}

// fileSaver chunks file bodies on the capture goroutine and stores the
// chunks with a bounded pool of workers. Reading and chunking stay on one
// goroutine (the engine's body must be consumed before WriteEntry returns);
// hashing and compression, the expensive part, run in parallel.
type fileSaver struct {
	w       *store.Writer
	fail    *failure
	jobs    chan chunkJob
	sem     *semaphore.Weighted
	semCap  int64
	wg      sync.WaitGroup
	chunker *store.Chunker // capture goroutine only
	cr      countingReader
	// budget, if set, fails the create once the chunks stored take the
	// store past Options.MaxStoreBytes (set before the first save).
	budget *storeBudget
}

func newFileSaver(ctx context.Context, w *store.Writer, fail *failure, workers int) *fileSaver {
	if workers <= 0 {
		workers = defaultCreateWorkers
	}
	fs := &fileSaver{
		w:      w,
		fail:   fail,
		jobs:   make(chan chunkJob, 64),
		sem:    semaphore.NewWeighted(createInFlightBytes),
		semCap: createInFlightBytes,
	}
	fs.chunker = store.NewChunker(&fs.cr)
	for i := 0; i < workers; i++ {
		fs.wg.Add(1)
		go fs.work(ctx)
	}
	return fs
}

func (fs *fileSaver) weight(n int) int64 {
	w := int64(n)
	if w < 1 {
		w = 1
	}
	if w > fs.semCap {
		w = fs.semCap
	}
	return w
}

func (fs *fileSaver) work(ctx context.Context) {
	defer fs.wg.Done()
	for j := range fs.jobs {
		if fs.fail.get() == nil {
			h, err := fs.w.PutChunkKind(ctx, j.data, j.kind)
			if err != nil {
				fs.fail.set(fmt.Errorf("store chunk: %w", err))
			} else {
				if err := fs.budget.check(fs.w.Stats().StoredBytes); err != nil {
					fs.fail.set(err)
				}
				fs.sem.Release(fs.weight(len(j.data)))
				putBuf(j.data)
				j.file.stored(j.i, h)
				continue
			}
		}
		fs.sem.Release(fs.weight(len(j.data)))
		putBuf(j.data)
	}
}

// save reads exactly size bytes from body, chunks them and queues the
// chunks, of the given kind (chunkKind); done is called with the chunk list
// once every chunk is stored (possibly from a worker, possibly before save
// returns). On error done is never called.
func (fs *fileSaver) save(ctx context.Context, body io.Reader, size int64, kind string, done func([]store.Hash)) error {
	pf := &pendingFile{done: done, kind: kind}
	if size <= int64(store.DefaultChunkerParams.Min) {
		return fs.saveSmall(ctx, body, size, pf)
	}
	// Read one byte more than announced to catch an engine sending too much.
	fs.cr.r = io.LimitReader(body, size+1)
	fs.cr.n = 0
	fs.chunker.Reset(&fs.cr)
	for {
		data, err := fs.chunker.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		if fs.cr.n > size {
			return fmt.Errorf("%w: body longer than its size %d", ErrEngine, size)
		}
		if err := fs.fail.get(); err != nil {
			return err
		}
		if err := fs.sem.Acquire(ctx, fs.weight(len(data))); err != nil {
			return err
		}
		buf := getBuf(len(data))
		copy(buf, data)
		if err := fs.queue(ctx, pf, buf); err != nil {
			return err
		}
	}
	if fs.cr.n != size {
		return fmt.Errorf("%w: body has %d bytes, its size says %d", ErrEngine, fs.cr.n, size)
	}
	pf.seal()
	return nil
}

// saveSmall stores a body that is one chunk whatever its content (the
// chunker never cuts below its Min): read straight into a pooled buffer,
// one copy instead of two.
func (fs *fileSaver) saveSmall(ctx context.Context, body io.Reader, size int64, pf *pendingFile) error {
	if size == 0 {
		var one [1]byte
		if n, _ := io.ReadFull(body, one[:]); n != 0 {
			return fmt.Errorf("%w: body longer than its size 0", ErrEngine)
		}
		pf.seal()
		return nil
	}
	if err := fs.sem.Acquire(ctx, fs.weight(int(size))); err != nil {
		return err
	}
	buf := getBuf(int(size) + 1)
	n, err := io.ReadFull(body, buf)
	switch {
	case err == nil:
		err = fmt.Errorf("%w: body longer than its size %d", ErrEngine, size)
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		if int64(n) == size {
			err = nil
		} else {
			err = fmt.Errorf("%w: body has %d bytes, its size says %d", ErrEngine, n, size)
		}
	default:
		err = fmt.Errorf("read body: %w", err)
	}
	if err != nil {
		fs.sem.Release(fs.weight(int(size)))
		putBuf(buf)
		return err
	}
	if err := fs.queue(ctx, pf, buf[:size]); err != nil {
		return err
	}
	pf.seal()
	return nil
}

// queue hands one chunk (a pooled buffer whose weight is acquired) to the
// workers.
func (fs *fileSaver) queue(ctx context.Context, pf *pendingFile, buf []byte) error {
	i := pf.add()
	select {
	case fs.jobs <- chunkJob{data: buf, kind: pf.kind, file: pf, i: i}:
		return nil
	case <-ctx.Done():
		fs.sem.Release(fs.weight(len(buf)))
		putBuf(buf)
		return ctx.Err()
	}
}

// close stops the workers after the queued chunks are handled.
func (fs *fileSaver) close() {
	close(fs.jobs)
	fs.wg.Wait()
	dropLargeBufs()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
