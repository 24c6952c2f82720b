package fstree

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// ErrFileChanged is returned (wrapped) when a file keeps changing while it is
// read, so no consistent body can be sent for it.
var ErrFileChanged = errors.New("file changed while being read")

// Defaults of CaptureOptions.
const (
	// DefaultReaders is the default number of read-ahead goroutines. Reading
	// from the page cache is system-call bound, so a few more goroutines
	// than cores keep the cores busy while one waits on the disk.
	DefaultReaders = 4
	// DefaultReadAheadBytes bounds the memory of bodies read ahead.
	DefaultReadAheadBytes = 32 << 20
	// readAheadMax: files up to this size are read ahead whole; larger
	// ones are streamed by the goroutine calling the writer. Most files of
	// a virtualenv are a few KiB, so this covers nearly all of them.
	readAheadMax = 1 << 20
	// readAttempts is how often a small file that changes while read is
	// re-read before the capture fails with ErrFileChanged.
	readAttempts = 3
)

// CaptureOptions configures Capture.
type CaptureOptions struct {
	// Stream is the stream's name ("rootfs", "volume:data"). Capture calls
	// BeginStream with it and looks entries up in Parent under it.
	Stream string
	// Excludes are path.Match patterns, each matched against an entry's
	// slash-separated path relative to the root and against its base name.
	// A matched directory is skipped with everything beneath it.
	Excludes []string
	// Parent is the parent snapshot's change index, or nil. A regular file
	// whose size, mtime, ctime and inode all equal the parent's is sent with
	// Unchanged set and no body, without being opened.
	Parent pluginapi.ParentIndex
	// ParentFingerprints is the parent index as fingerprints
	// (pluginapi.CaptureRequest.ParentFingerprints), looked up under
	// Stream like Parent, which a stream found here is not looked up in.
	ParentFingerprints map[string]*pluginapi.ParentFingerprints
	// ParentXattrs (pluginapi.CaptureRequest.ParentXattrs: the host takes
	// the xattrs of an unchanged file from the parent): an Unchanged file
	// with a single link is sent with XattrsFromParent and no xattrs,
	// which spares a listxattr per unchanged file. With IndexOnly, every
	// regular file with a single link is sent so.
	ParentXattrs bool
	// UnchangedDirs (pluginapi.CaptureRequest.UnchangedDirs): a directory
	// whose whole subtree is as in Parent (which then holds directories
	// and symlinks too) is sent as one entry marked Unchanged, with
	// SubtreeFiles, SubtreeDirs and SubtreeBytes, and nothing beneath it
	// (see unchanged_dirs.go).
	UnchangedDirs bool
	// IndexOnly sends every entry without a body (and never an Unchanged
	// file). With UnchangedDirs it still sends an unchanged subtree as one
	// Unchanged directory: an in-place restore's listing of a target that
	// is mostly as captured is then a few hundred entries, not one per
	// entry (venv-full: 46,509).
	IndexOnly bool
	// OnSpecial is called for each socket, device or FIFO found. Those are
	// never captured: nil skips them silently, and an error returned by
	// OnSpecial ends the capture with that error.
	OnSpecial func(path, kind string) error
	// Readers is the number of goroutines reading small files ahead
	// (0: DefaultReaders).
	Readers int
	// ReadAheadBytes bounds the memory held by bodies read ahead
	// (0: DefaultReadAheadBytes).
	ReadAheadBytes int64
	// Prelude, if set, is called once the walk has begun (directories
	// are being listed ahead), before BeginStream: an engine writes its
	// metadata there, so that collecting it overlaps the listing instead
	// of delaying it. No file is opened for its body before it returns.
	// An error from it ends the capture and is returned as it is.
	Prelude func(ctx context.Context) error
}

// RequestOptions are the CaptureOptions that carry out req for a stream:
// its excludes, its parent index in whichever form the host sent it, and
// what it asks for (index only, parent xattrs, unchanged subtrees). An
// engine that captures one directory tree passes them to Capture as they
// are, so every file-tree engine honours a request the same way.
func RequestOptions(stream string, req *pluginapi.CaptureRequest) CaptureOptions {
	return CaptureOptions{
		Stream:             stream,
		Excludes:           req.Excludes,
		Parent:             req.Parent,
		ParentFingerprints: req.ParentFingerprints,
		IndexOnly:          req.IndexOnly,
		ParentXattrs:       req.ParentXattrs,
		UnchangedDirs:      req.UnchangedDirs,
	}
}

// Capture sends the tree under root to w as one stream: BeginStream(
// opts.Stream), then one WriteEntry per directory, regular file, symlink and
// hard link beneath root (root itself is not sent), depth-first in
// pre-order, siblings sorted by byte order. It uses lstat and never follows
// a symlink beneath root (root itself may be a symlink).
//
// Entries carry mode (07777), uid, gid, mtime and ctime in nanoseconds,
// inode, size and xattrs. A second name of a regular file already sent
// (same device and inode) is sent as TypeHardlink naming the first path,
// with Size 0 and no body. Only regular files are ever Unchanged.
// Sockets, devices and FIFOs are never sent (see OnSpecial). A directory
// replaced by a symlink while the walk is under way fails the capture
// with an error wrapping pluginapi.ErrUnsafePath.
//
// w is called from the calling goroutine only, in order; bodies are read
// ahead in parallel. A body always yields exactly Size bytes: a small file
// that changes while read is re-read, and a file that keeps changing, or a
// large one that changes while streamed, fails the capture with an error
// wrapping ErrFileChanged. Files removed during the capture, before they
// are read, are left out (unless other names of them were seen).
func Capture(ctx context.Context, root string, opts CaptureOptions, w pluginapi.CaptureWriter) error {
	if opts.Stream == "" {
		return errors.New("capture: empty stream name")
	}
	if err := checkExcludes(opts.Excludes); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	root = filepath.Clean(root)
	rootFd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("capture %s: %w", root, err)
	}
	if opts.Readers <= 0 {
		opts.Readers = DefaultReaders
	}
	if opts.ReadAheadBytes <= 0 {
		opts.ReadAheadBytes = DefaultReadAheadBytes
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &capturer{
		opts:        opts,
		rootFd:      rootFd,
		prefix:      strings.TrimSuffix(root, "/") + "/",
		links:       make(map[devIno]string),
		ordered:     make(chan *item, 1024),
		work:        make(chan *item, 256),
		sched:       newDirSched(),
		budget:      newBudget(opts.ReadAheadBytes),
		scratch:     make([]byte, 1024),
		listScratch: newListScratch(),
		parent:      opts.Parent[opts.Stream],
		prints:      opts.ParentFingerprints[opts.Stream],
		rawList:     opts.IndexOnly,
	}
	if c.prints != nil {
		c.parent = nil
	}
	if f, ok := w.(pluginapi.BodyFiller); ok {
		c.filler = f
	}
	c.checkDirs = opts.UnchangedDirs && (len(c.parent) > 0 || c.prints.Len() > 0)
	// The directory readers wait on a condition, not on ctx.
	stopSched := context.AfterFunc(ctx, c.sched.close)
	defer stopSched()
	// The readers start once the prelude is done. Nothing is sent before
	// it, and with 4 readers, 2 directory readers and the walker runnable
	// on 2 cores the prelude's goroutine, back from each read of a
	// METADATA file, waited for a processor behind them: the host, with
	// nothing to store until the first entry, idled meanwhile. The walker
	// and the directory readers still start at once (the first listings
	// are what the first entries need); the walker stops at the work
	// queue's bound until the readers start.
	readersGo := make(chan struct{})
	var wg sync.WaitGroup
	for range opts.Readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-readersGo:
			case <-ctx.Done():
			}
			// Even after ctx ends: the readers see every item of
			// c.work through (readAhead marks each with ctx's error).
			c.readAhead(ctx)
		}()
	}
	for range dirReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.readDirsAhead(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(c.ordered)
		defer close(c.work)
		defer c.sched.close()
		root := &dirJob{done: make(chan struct{})}
		if err := c.walk(ctx, root); err != nil {
			c.emit(ctx, &item{err: err})
		}
	}()

	// BeginStream's and the prelude's errors are returned as they are.
	var early error
	if opts.Prelude != nil {
		early = opts.Prelude(ctx)
	}
	close(readersGo)
	if early == nil {
		early = w.BeginStream(ctx, opts.Stream)
	}
	if early == nil {
		err = c.send(ctx, w)
	}
	// Stop the walker and the readers whatever happened, and wait for them
	// so no goroutine outlives the call.
	cancel()
	wg.Wait()
	// Files the readers opened for a sender that stopped early.
	for it := range c.ordered {
		it.closeFile()
	}
	c.closeDirs()
	unix.Close(rootFd)
	if early != nil {
		return early
	}
	if err != nil {
		return fmt.Errorf("capture %s: %w", root, err)
	}
	return nil
}

type devIno struct{ dev, ino uint64 }

// item is one entry on its way from the walker to the writer.
type item struct {
	e    pluginapi.Entry
	err  error // a walk error: ends the capture
	body bodyKind
	// For bodyReadAhead: done is closed once buf (or readErr) is set.
	done    chan struct{}
	buf     []byte
	readErr error
	cost    int64
	// fd is the open file of a read-ahead body the sender reads itself
	// (capturer.filler), fdOpen whether it is still open.
	fd     int
	fdOpen bool
	// linked: the file has other names, which may follow as hard links.
	linked bool
}

type bodyKind uint8

const (
	bodyNone      bodyKind = iota // no body (not a file, unchanged, index only)
	bodyEmpty                     // a file of size 0
	bodyReadAhead                 // read by a reader goroutine into buf
	bodyStream                    // streamed from the file by the sender
)

type capturer struct {
	opts CaptureOptions
	// filler, if set, is the writer as a BodyFiller: the readers only
	// open small files and read their xattrs, and the sender reads each
	// body straight into the memory it is sent from.
	filler  pluginapi.BodyFiller
	rootFd  int
	prefix  string // root + "/"
	links   map[devIno]string
	ordered chan *item // walker → sender, in stream order
	work    chan *item // walker → readers
	sched   *dirSched
	budget  *budget
	scratch []byte // xattr list buffer, walker only
	// listScratch is the walker's, for the directories it lists itself.
	listScratch *listScratch
	// parent is the parent index of the stream (opts.Parent's), or nil.
	parent map[string]pluginapi.IndexEntry
	// prints is the parent index of the stream as fingerprints, or nil;
	// when set, parent is nil.
	prints *pluginapi.ParentFingerprints
	// kept are the listings subtree took that the walk will need again,
	// by path (keepListing, listing); walker goroutine only.
	kept map[string]dirListing
	// checkDirs: send unchanged subtrees as one entry (UnchangedDirs).
	checkDirs bool
	// hungry is set while the sender waits for the next item or its
	// body: the goroutine that hands it over then yields its processor
	// (handOver), or the sender, ready to run, may wait behind the
	// readers and the directory readers, which keep both of a 2-core
	// machine's processors busy reading ahead, while the host has
	// nothing to store.
	hungry atomic.Bool
	// rawList: listings make raw system calls (IndexOnly; see
	// readOpenDir).
	rawList bool
	// dirs are the directory handles made (keepDir), and openJobs the
	// jobs of directories opened ahead (openSubdir), for closeDirs.
	dirsMu   sync.Mutex
	dirs     []*listedDir
	openJobs []*dirJob
	// openAhead counts the directories opened ahead and not yet listed.
	openAhead atomic.Int32
}

func (c *capturer) emit(ctx context.Context, it *item) bool {
	select {
	case c.ordered <- it:
		c.handOver()
		return true
	case <-ctx.Done():
		return false
	}
}

// handOver lets the sender run at once if it waits: made runnable by this
// goroutine, it is next on this processor once this goroutine yields, and
// would otherwise wait until it blocks (the execution trace of a create of
// venv-full showed the sender runnable for 30 ms after the walker handed
// it an item, both processors reading ahead meanwhile).
func (c *capturer) handOver() {
	if c.hungry.Load() {
		runtime.Gosched()
	}
}

func (c *capturer) excluded(rel, name string) bool {
	return matchExcludes(c.opts.Excludes, rel, name)
}

// walk sends the entries beneath the directory of job j (the root's has
// no path), listed ahead by the directory readers or read by listing.
func (c *capturer) walk(ctx context.Context, j *dirJob) error {
	l, err := c.listing(ctx, j)
	if err != nil {
		return err
	}
	kids := l.kids
	// One allocation for the directory's items instead of one per entry;
	// the slice lives until the sender is done with its last item.
	items := make([]item, len(kids))
	for i := range kids {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		k := &kids[i]
		it := &items[i]
		it.e = k.st.entry(k.rel)
		it.e.Xattrs = k.xattrs
		switch k.st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			it.e.Type = pluginapi.TypeDir
			if c.checkDirs {
				res, err := c.subtree(ctx, k)
				if err != nil {
					return err
				}
				if res.unchanged {
					it.e.Unchanged, it.e.Xattrs = true, nil
					it.e.SubtreeFiles, it.e.SubtreeDirs, it.e.SubtreeBytes = res.files, res.dirs, res.nbytes
				}
			}
		case unix.S_IFLNK:
			it.e.Type = pluginapi.TypeSymlink
			it.e.LinkTarget = k.linkTarget
		case unix.S_IFREG:
			it.e.Type = pluginapi.TypeFile
			it.e.Size = k.st.Size
			if err := c.planBody(ctx, it, k); err != nil {
				return err
			}
		default:
			if c.opts.OnSpecial != nil {
				if err := c.opts.OnSpecial(k.rel, specialKind(k.st.Mode)); err != nil {
					return err
				}
			}
			continue
		}
		if k.xattrsLater && !it.e.Unchanged {
			var err error
			if it.e.Xattrs, err = readXattrs(c.prefix+k.rel, c.scratch); err != nil {
				return err
			}
		}
		if it.body == bodyReadAhead {
			select {
			case c.work <- it:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// Decided before the item is handed over: the writer owns it
		// then.
		descend := it.e.Type == pluginapi.TypeDir && !it.e.Unchanged
		if !c.emit(ctx, it) {
			if it.body == bodyReadAhead {
				// The readers see every item of c.work through.
				<-it.done
				it.closeFile()
			}
			return ctx.Err()
		}
		if descend {
			if err := c.walk(ctx, k.job); err != nil {
				return err
			}
		}
	}
	return nil
}

// planBody decides how the body of regular file it is sent: as a hard link,
// unchanged, not at all, read ahead, or streamed.
func (c *capturer) planBody(ctx context.Context, it *item, k *child) error {
	st := &k.st
	if st.Nlink > 1 {
		it.linked = true
		key := devIno{st.Dev, st.Ino}
		if first, ok := c.links[key]; ok {
			it.e.Type = pluginapi.TypeHardlink
			it.e.LinkTarget = first
			it.e.Size = 0
			return nil
		}
		c.links[key] = it.e.Path
	}
	if c.opts.IndexOnly {
		it.e.XattrsFromParent = k.xattrsFromParent
		return nil
	}
	if k.unchanged {
		it.e.Unchanged = true
		it.e.XattrsFromParent = k.xattrsFromParent
		return nil
	}
	switch {
	case it.e.Size == 0:
		it.body = bodyEmpty
	case it.e.Size <= readAheadMax:
		it.body = bodyReadAhead
		it.cost = c.budget.clamp(it.e.Size)
		if c.filler != nil {
			// The bodies are not held here, but the files are open
			// until sent: bound how many.
			it.cost = c.budget.clamp(max(it.e.Size, c.opts.ReadAheadBytes/maxOpenAhead))
		}
		if err := c.budget.acquire(ctx, it.cost); err != nil {
			return err
		}
		it.done = make(chan struct{})
	default:
		it.body = bodyStream
	}
	return nil
}

// unchanged reports whether the parent index has the file at rel with the
// same size, mtime, ctime and inode.
func (c *capturer) unchanged(rel string, st *entryStat) bool {
	if c.prints != nil {
		return c.prints.File(rel, st.Size, st.MtimeNs, st.CtimeNs, st.Ino)
	}
	p, ok := c.parent[rel]
	return ok && p.Type == 0 && p.Size == st.Size && p.MtimeNs == st.MtimeNs && p.CtimeNs == st.CtimeNs && p.Inode == st.Ino
}

// readAhead reads the bodies of small files until the work channel closes.
func (c *capturer) readAhead(ctx context.Context) {
	scratch := make([]byte, 1024)
	for it := range c.work {
		switch {
		case ctx.Err() != nil:
			it.readErr = ctx.Err()
		case c.filler != nil:
			it.fd, it.readErr = openSmallFile(c.rootFd, it.e.Path, &it.e, scratch)
			it.fdOpen = it.readErr == nil
		default:
			it.buf, it.readErr = readSmallFile(c.rootFd, it.e.Path, &it.e, scratch)
		}
		close(it.done)
		c.handOver()
	}
}

// maxOpenAhead bounds the files open for the sender (CaptureOptions
// .ReadAheadBytes / maxOpenAhead is the least a file costs of the
// read-ahead budget when the sender reads the bodies).
const maxOpenAhead = 512

// closeFile closes the file a reader opened for the sender, if it did and
// it is still open.
func (it *item) closeFile() {
	if it.fdOpen {
		closeRaw(it.fd)
		it.fdOpen = false
	}
}

// openSmallFile opens the file name in dirFd (as openCached), whose entry e
// was made from an earlier lstat, and fills e.Xattrs from the open file
// (scratch is a reusable buffer for that). fillSmallFile reads it.
//
// The capture opens its files by their path from the root's descriptor,
// not by their full path: the kernel looks up every component of the
// path anew in each open, and the root's own (/work/data/venv-full is
// three) were a third of the lookups of a file of venv-full's
// site-packages — perf of a create: the path walk (__d_lookup_rcu,
// link_path_walk, walk_component, inode_permission) was ~200 of the
// plugin's ~2,500 samples.
func openSmallFile(dirFd int, name string, e *pluginapi.Entry, scratch []byte) (int, error) {
	fd, err := openCached(dirFd, name)
	if err != nil {
		return -1, fmt.Errorf("open %q: %w", e.Path, err)
	}
	if e.Xattrs, err = readFdXattrs(fd, scratch); err != nil {
		closeRaw(fd)
		return -1, fmt.Errorf("%q: %w", e.Path, err)
	}
	return fd, nil
}

// fillSmallFile reads the file open as fd into buf, which is e.Size bytes,
// as readSmallFile does: if the file changed since e was made (it reads
// short, or size, mtime or ctime differ after the read), it updates e from
// the open file and returns pluginapi.ErrRefill, to be called again with a
// buffer of the new size, at most readAttempts times in all (*attempts
// counts them).
func fillSmallFile(fd int, e *pluginapi.Entry, buf []byte, attempts *int) error {
	*attempts++
	n, err := preadFull(fd, buf)
	if err != nil {
		return fmt.Errorf("read %q: %w", e.Path, err)
	}
	var st unix.Stat_t
	if err := fstatRaw(fd, &st); err != nil {
		return fmt.Errorf("fstat %q: %w", e.Path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != e.Inode {
		return fmt.Errorf("%q was replaced: %w", e.Path, ErrFileChanged)
	}
	if n == len(buf) && int64(n) == e.Size && sameContentStat(e, &st) {
		return nil
	}
	if *attempts >= readAttempts {
		return fmt.Errorf("%q: %w", e.Path, ErrFileChanged)
	}
	*e = refreshEntry(e, &st)
	return pluginapi.ErrRefill
}

// readSmallFile reads the whole file name in dirFd (as openSmallFile),
// whose entry e was made from an earlier lstat. If the file changed since
// (size, mtime or ctime differ after the read), e is updated from the open
// file and the file re-read, so the body always matches e. It also fills
// e.Xattrs from the open file; scratch is a reusable buffer for that.
func readSmallFile(dirFd int, name string, e *pluginapi.Entry, scratch []byte) ([]byte, error) {
	fd, err := openSmallFile(dirFd, name, e, scratch)
	if err != nil {
		return nil, err
	}
	defer closeRaw(fd)
	for range readAttempts {
		// One byte more than expected, to notice a file that grew.
		buf := getBuf(int(e.Size) + 1)
		n, err := preadFull(fd, buf)
		if err != nil {
			putBuf(buf)
			return nil, fmt.Errorf("read %q: %w", e.Path, err)
		}
		var st unix.Stat_t
		if err := fstatRaw(fd, &st); err != nil {
			putBuf(buf)
			return nil, fmt.Errorf("fstat %q: %w", e.Path, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != e.Inode {
			putBuf(buf)
			return nil, fmt.Errorf("%q was replaced: %w", e.Path, ErrFileChanged)
		}
		if int64(n) == e.Size && sameContentStat(e, &st) {
			return buf[:n], nil
		}
		putBuf(buf)
		*e = refreshEntry(e, &st)
	}
	return nil, fmt.Errorf("%q: %w", e.Path, ErrFileChanged)
}

// refreshEntry returns e with the metadata of st.
func refreshEntry(e *pluginapi.Entry, st *unix.Stat_t) pluginapi.Entry {
	fresh := entryFromStat(e.Path, st)
	fresh.Type = e.Type
	fresh.Size = st.Size
	fresh.Xattrs = e.Xattrs
	return fresh
}

// preadFull reads from fd at offset 0 until buf is full or a read comes
// back short. A regular file reads short only at its end, so this saves the
// extra read that would return 0; a file that grows meanwhile is caught by
// the fstat that follows. (A read from the page cache alone may also come
// back short, where the cached part ends: it reads on then.)
func preadFull(fd int, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, nowait, err := preadCached(fd, buf[n:], int64(n))
		if err != nil {
			return n, err
		}
		n += m
		if m == 0 || n < len(buf) && !nowait {
			break
		}
	}
	return n, nil
}

// send calls w for every item, in order, until the walk ends.
func (c *capturer) send(ctx context.Context, w pluginapi.CaptureWriter) error {
	for {
		var it *item
		var ok bool
		select {
		case it, ok = <-c.ordered:
		default:
			c.hungry.Store(true)
			it, ok = <-c.ordered
			c.hungry.Store(false)
		}
		if !ok {
			break
		}
		if it.err != nil {
			return it.err
		}
		if err := c.sendItem(ctx, w, it); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (c *capturer) sendItem(ctx context.Context, w pluginapi.CaptureWriter, it *item) error {
	switch it.body {
	case bodyNone:
		return w.WriteEntry(ctx, &it.e, nil)
	case bodyEmpty:
		return w.WriteEntry(ctx, &it.e, bytes.NewReader(nil))
	case bodyReadAhead:
		select {
		case <-it.done:
		default:
			c.hungry.Store(true)
			select {
			case <-it.done:
			case <-ctx.Done():
			}
			c.hungry.Store(false)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		defer c.budget.release(it.cost)
		if it.readErr != nil {
			if c.vanished(it, it.readErr) {
				return nil
			}
			return it.readErr
		}
		if it.fdOpen {
			defer it.closeFile()
			attempts := 0
			return c.filler.WriteEntryFill(ctx, &it.e, func(buf []byte) error {
				return fillSmallFile(it.fd, &it.e, buf, &attempts)
			})
		}
		err := w.WriteEntry(ctx, &it.e, bytes.NewReader(it.buf))
		putBuf(it.buf)
		it.buf = nil
		return err
	default:
		return c.streamFile(ctx, w, it)
	}
}

// vanished reports whether err says the file of it was removed between the
// walk and its reading, in which case it is left out of the stream like a
// file removed before the walk saw it. The first name of a hard-linked
// file cannot be left out: later entries name it.
func (c *capturer) vanished(it *item, err error) bool {
	return errors.Is(err, unix.ENOENT) && !it.linked
}

// streamFile sends a large file straight from disk. If it changes while
// streamed, the entry already sent would not match its body, so the capture
// fails.
func (c *capturer) streamFile(ctx context.Context, w pluginapi.CaptureWriter, it *item) error {
	fd, err := openCached(c.rootFd, it.e.Path)
	if err != nil {
		if c.vanished(it, err) {
			return nil
		}
		return fmt.Errorf("open %q: %w", it.e.Path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat %q: %w", it.e.Path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != it.e.Inode {
		return fmt.Errorf("%q was replaced: %w", it.e.Path, ErrFileChanged)
	}
	if !sameContentStat(&it.e, &st) {
		// Changed between the walk and now, but nothing is sent yet.
		it.e = refreshEntry(&it.e, &st)
	}
	body := &exactReader{fd: fd, size: it.e.Size, path: it.e.Path}
	if err := w.WriteEntry(ctx, &it.e, body); err != nil {
		return err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat %q: %w", it.e.Path, err)
	}
	if !sameContentStat(&it.e, &st) {
		return fmt.Errorf("%q: %w", it.e.Path, ErrFileChanged)
	}
	return nil
}

func sameContentStat(e *pluginapi.Entry, st *unix.Stat_t) bool {
	return st.Size == e.Size && st.Mtim.Nano() == e.MtimeNs && st.Ctim.Nano() == e.CtimeNs
}

// exactReader yields exactly size bytes of a file from offset 0, and fails
// with ErrFileChanged if the file ends early.
type exactReader struct {
	fd   int
	off  int64
	size int64
	path string
}

func (r *exactReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if rest := r.size - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	for {
		n, err := unix.Pread(r.fd, p, r.off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %q: %w", r.path, err)
		}
		if n == 0 {
			return 0, fmt.Errorf("%q shrank: %w", r.path, ErrFileChanged)
		}
		r.off += int64(n)
		return n, nil
	}
}

// WriteTo lets io.Copy into a writer skip an intermediate buffer copy.
func (r *exactReader) WriteTo(w io.Writer) (int64, error) {
	buf := getBuf(256 << 10)
	defer putBuf(buf)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// entry is entryFromStat of the entry s is the lstat of.
func (s *entryStat) entry(rel string) pluginapi.Entry {
	return pluginapi.Entry{
		Path:    rel,
		Mode:    s.Mode & 0o7777,
		UID:     s.Uid,
		GID:     s.Gid,
		MtimeNs: s.MtimeNs,
		CtimeNs: s.CtimeNs,
		Inode:   s.Ino,
	}
}

func entryFromStat(rel string, st *unix.Stat_t) pluginapi.Entry {
	return pluginapi.Entry{
		Path:    rel,
		Mode:    st.Mode & 0o7777,
		UID:     st.Uid,
		GID:     st.Gid,
		MtimeNs: st.Mtim.Nano(),
		CtimeNs: st.Ctim.Nano(),
		Inode:   st.Ino,
	}
}

func specialKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "unknown"
}

func readlinkat(dirFd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirFd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// readDirNames lists the names in the directory open as fd, without "."
// and "..".
func readDirNames(fd int) ([]string, error) {
	ents, err := readDirEntries(fd)
	names := make([]string, len(ents))
	for i, de := range ents {
		names[i] = de.name
	}
	return names, err
}

// dirent is a directory entry's name and d_type (unix.DT_*).
type dirent struct {
	name string
	typ  uint8
}

// readDirEntries lists the directory open as fd, without "." and "..".
// Unlike unix.ParseDirent it keeps d_type, which lets an in-place restore
// check kept entries without a stat each.
func readDirEntries(fd int) ([]dirent, error) {
	buf := getBuf(32 << 10)
	defer putBuf(buf)
	var ents []dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return ents, nil
		}
		ents = parseDirents(buf[:n], ents)
	}
}

// parseDirents appends the entries of a getdents64 buffer.
func parseDirents(b []byte, ents []dirent) []dirent {
	forDirents(b, func(name []byte, typ uint8) {
		ents = append(ents, dirent{name: string(name), typ: typ})
	})
	return ents
}

// forDirents calls fn with the name and d_type of each entry of a
// getdents64 buffer but "." and "..": each record is d_ino (8 bytes),
// d_off (8), d_reclen (2), d_type (1), then the NUL-terminated name. name
// is only valid during the call.
func forDirents(b []byte, fn func(name []byte, typ uint8)) {
	const nameOff = 19
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameOff || reclen > len(b) {
			break
		}
		rec := b[:reclen]
		b = b[reclen:]
		name := rec[nameOff:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if binary.NativeEndian.Uint64(rec[0:8]) == 0 {
			continue // deleted entry
		}
		if string(name) == "." || string(name) == ".." {
			continue
		}
		fn(name, rec[18])
	}
}

// direntTypeAt returns the d_type of name in dirFd from an lstat, for file
// systems that do not fill d_type.
func direntTypeAt(dirFd int, name string) (uint8, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return unix.DT_REG, nil
	case unix.S_IFDIR:
		return unix.DT_DIR, nil
	case unix.S_IFLNK:
		return unix.DT_LNK, nil
	}
	return unix.DT_UNKNOWN, nil
}

// budget is a byte-weighted semaphore bounding the memory of bodies read
// ahead. acquire is called by one goroutine (the walker).
type budget struct {
	mu    sync.Mutex
	total int64
	avail int64
	wake  chan struct{}
}

func newBudget(n int64) *budget { return &budget{total: n, avail: n, wake: make(chan struct{})} }

// clamp limits a request to what the budget can ever grant, so one file
// larger than the whole budget still gets read (alone).
func (b *budget) clamp(n int64) int64 { return min(n, b.total) }

func (b *budget) acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.avail >= n {
			b.avail -= n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.avail += n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}
