package fstree

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// The walk's own cost is a few system calls per entry (getdents, lstat,
// openat, readlink). Directory readers make them for the directories
// ahead of the walk, so the walk itself mostly assembles entries in order.
// On venv-full's second capture after change small they are ~140 of the
// plugin's ~235 ms of CPU: lstat ~70, getdents ~30, openat ~16, close
// ~12 (profiles of 8 creates; directories' xattrs are read only for those
// sent, see xattrsLater).
const (
	// dirReaders is the number of goroutines listing directories ahead.
	// With one, the walk was bound by it (readDirsAhead was 68 % of the
	// plugin's CPU, the walk mostly waiting on its listings), so two
	// let the listing use both cores of an idle 2-core machine. On a
	// loaded one the cores are the limit either way: one against two,
	// 6 alternating second creates each at load ~6, CPU 0.525 and
	// 0.490 s, wall 0.73 and 0.68 s (medians), within the noise (as an
	// earlier measurement at load 5-6 found).
	dirReaders = 2
	// maxAheadDirs and maxAheadEntries bound the listings the readers
	// hold ahead of the walk (and so the memory and directory
	// descriptors they keep): past either, they wait for the walk to
	// take some.
	maxAheadDirs    = 512
	maxAheadEntries = 32 << 10
)

// Which directories are listed ahead, and in what order. The readers
// themselves make a job for every subdirectory of a directory they list,
// and always take the queued job that comes first in the walk's order, so
// they work depth-first just ahead of the walk, both of them, whatever the
// walk is doing. (When the walk made the jobs, for the subdirectories of
// the directories it had reached, a narrow stretch of the tree left a
// reader without work: on venv-full's second capture each reader idled
// ~45 % of the walk, while the walk waited on them ~75 % of it.) A job the
// walk needs that no reader has started yet, the walk lists itself, so it
// never waits for a reader held back by the bounds above.

// jobState is where a dirJob is; guarded by dirSched.mu.
type jobState uint8

const (
	jobQueued  jobState = iota // in the queue, not started
	jobReading                 // taken by a reader
	jobTaken                   // listed by the walk itself, or taken from a reader
)

// dirJob is the listing of one directory, made ahead of the walk by a
// reader or, when the walk needs it first, by the walk.
type dirJob struct {
	rel  string
	from dirFrom
	// key is the directory's place in the walk's order: its parent's
	// key and its index among the parent's sorted entries.
	key   []uint32
	done  chan struct{} // closed when a reader has set dirListing or err
	state jobState
	dirListing
	err error
	// checked: res is what subtree found of the directory (set and
	// read by the walker only). Kept here rather than in a map by path:
	// a map of venv-full's 7,963 directories, filled by every in-place
	// listing, was ~2 % of its CPU (hashing, growing).
	checked bool
	res     subtreeResult
}

// dirSched is the queue of directories to list, in the walk's order.
type dirSched struct {
	mu    sync.Mutex
	wake  sync.Cond // work queued, room ahead, or closed
	queue jobQueue
	// aheadDirs and aheadEntries count the listings readers made that
	// the walk has not taken yet.
	aheadDirs, aheadEntries int
	closed                  bool
}

func newDirSched() *dirSched {
	s := &dirSched{}
	s.wake.L = &s.mu
	return s
}

// next returns the next job for a reader, or nil once the queue is closed.
func (s *dirSched) next() *dirJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for !s.closed && (len(s.queue) == 0 || s.aheadDirs >= maxAheadDirs || s.aheadEntries >= maxAheadEntries) {
			s.wake.Wait()
		}
		if s.closed {
			return nil
		}
		j := heap.Pop(&s.queue).(*dirJob)
		if j.state == jobQueued {
			j.state = jobReading
			return j
		}
		// Listed by the walk meanwhile.
	}
}

// add queues jobs; a reader that listed a directory counts it ahead.
func (s *dirSched) add(jobs []*dirJob, listed *dirJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if listed != nil {
		s.aheadDirs++
		s.aheadEntries += len(listed.kids)
	}
	for _, j := range jobs {
		heap.Push(&s.queue, j)
	}
	if len(jobs) > 0 {
		s.wake.Broadcast()
	}
}

// claim marks j taken by the walk, and reports whether the walk must list
// it itself (no reader has started it).
func (s *dirSched) claim(j *dirJob) (self bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	self = j.state == jobQueued
	j.state = jobTaken
	return self
}

// taken tells that the walk took the listing a reader made of j.
func (s *dirSched) taken(j *dirJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	full := s.aheadDirs >= maxAheadDirs || s.aheadEntries >= maxAheadEntries
	s.aheadDirs--
	s.aheadEntries -= len(j.kids)
	if full {
		s.wake.Broadcast()
	}
}

// close ends the readers' loops; jobs still queued are never listed.
func (s *dirSched) close() {
	s.mu.Lock()
	s.closed = true
	s.wake.Broadcast()
	s.mu.Unlock()
}

// jobQueue is a heap of jobs, the first in the walk's order on top.
type jobQueue []*dirJob

func (q jobQueue) Len() int           { return len(q) }
func (q jobQueue) Less(i, k int) bool { return slices.Compare(q[i].key, q[k].key) < 0 }
func (q jobQueue) Swap(i, k int)      { q[i], q[k] = q[k], q[i] }
func (q *jobQueue) Push(x any)        { *q = append(*q, x.(*dirJob)) }
func (q *jobQueue) Pop() any {
	old := *q
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return j
}

// dirListing is what readDir found in one directory.
type dirListing struct {
	kids []child
	// excluded: an entry of the directory was left out by an exclude.
	excluded bool
	// dir is the directory itself, kept open for opening its
	// subdirectories (nil when it has none).
	dir *listedDir
}

// A directory is opened from its parent's descriptor (openat of its name,
// O_NOFOLLOW) while the parent is still open, instead of by its path from
// the root (openat2 RESOLVE_BENEATH), whose kernel path walk looked up
// every component again: 26 of the plugin's 235 ms of CPU in venv-full's
// second capture (8 profiles), ~10 with openat. The name is one component
// from getdents (never "." or ".."), and O_NOFOLLOW refuses a symlink put
// in its place, so the directory opened is beneath the one listed, as
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS guarantees.

// listedDir is a listed directory's descriptor, open until each of its
// subdirectories has been opened from it (pending), or until the capture
// ends (closeDirs). Should the walk ever ask for more subdirectories than
// were counted, the extra ones are opened by path, never through a
// descriptor already closed (and perhaps reused).
type listedDir struct {
	mu      sync.Mutex
	fd      int
	pending int // subdirectories not opened yet; 0: fd is closed
}

// dirFrom says where a directory is opened from: its parent's handle and
// its name there, or (dir nil) its path from the root; or it is open
// already (open: fd, see openSubdir).
type dirFrom struct {
	dir  *listedDir
	name string
	fd   int
	open bool
}

// openSub opens the subdirectory name of h; ok is false if h is closed.
func (h *listedDir) openSub(name string) (fd int, ok bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending <= 0 {
		return -1, false, nil
	}
	fd, err = openDirCached(h.fd, name)
	if h.pending--; h.pending == 0 {
		closeRaw(h.fd)
	}
	return fd, true, err
}

// close closes h unless it is closed already.
func (h *listedDir) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending > 0 {
		closeRaw(h.fd)
		h.pending = 0
	}
}

// keepDir returns a handle for the directory open as fd, which has nsub
// subdirectories, or closes fd and returns nil when it has none.
func (c *capturer) keepDir(fd int, nsub int) *listedDir {
	if nsub == 0 {
		closeRaw(fd)
		return nil
	}
	h := &listedDir{fd: fd, pending: nsub}
	c.dirsMu.Lock()
	c.dirs = append(c.dirs, h)
	c.dirsMu.Unlock()
	return h
}

// closeDirs closes the handles of directories some of whose
// subdirectories were never opened, and the directories opened ahead that
// were never listed (the capture ended early). Called once every
// goroutine of the capture has ended.
func (c *capturer) closeDirs() {
	for _, h := range c.dirs {
		h.close()
	}
	c.dirs = nil
	for _, j := range c.openJobs {
		if j.from.open {
			closeRaw(j.from.fd)
			j.from.open = false
		}
	}
	c.openJobs = nil
}

// openDir opens the directory rel as from says, or takes the descriptor
// it was opened with ahead (then from is marked so).
func (c *capturer) openDir(rel string, from *dirFrom) (int, error) {
	if from.open {
		from.open = false
		c.openAhead.Add(-1)
		return from.fd, nil
	}
	if from.dir == nil {
		return openDirBeneath(c.rootFd, rel)
	}
	fd, ok, err := from.dir.openSub(from.name)
	switch {
	case !ok:
		return openDirBeneath(c.rootFd, rel)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return -1, fmt.Errorf("%w: %q is not a directory beneath the target (%v)", pluginapi.ErrUnsafePath, rel, err)
	case err != nil:
		return -1, fmt.Errorf("open directory %q: %w", rel, err)
	}
	return fd, nil
}

// child is what the walk needs of one entry of a directory.
type child struct {
	name, rel  string
	st         entryStat
	linkTarget string
	xattrs     map[string][]byte
	// dirOpen: a directory opened by openSubdir, as dirFd, which its
	// job takes (subJobs).
	dirOpen bool
	dirFd   int32
	// unchanged: a regular file the parent index has with the same size,
	// mtime, ctime and inode (looked up once, here, off the walk's
	// goroutine).
	unchanged bool
	// xattrsFromParent: an unchanged file whose xattrs were not read,
	// since the host takes the parent's (CaptureOptions.ParentXattrs).
	xattrsFromParent bool
	// job is the listing of a directory (see subJobs).
	job *dirJob
	// xattrsLater: a directory or symlink whose xattrs were not read,
	// since it will most likely not be sent (checkDirs): the walk reads
	// them if it sends it (walk).
	xattrsLater bool
}

// entryStat is what the walk uses of an entry's lstat: 64 bytes of the
// 144 of a unix.Stat_t. A listing holds one per entry (46,509 for
// venv-full) until the walk is past its directory, and an in-place
// restore's listing, which sends a handful of them, allocated, cleared
// and copied ~10 MB of children, ~2/3 of it Stat_t fields nobody reads.
type entryStat struct {
	Mode, Uid, Gid   uint32
	Size             int64
	MtimeNs, CtimeNs int64
	Ino, Dev, Nlink  uint64
}

// set fills s from st.
func (s *entryStat) set(st *unix.Stat_t) {
	*s = entryStat{
		Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Size: st.Size,
		MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(),
		Ino: st.Ino, Dev: uint64(st.Dev), Nlink: uint64(st.Nlink),
	}
}

// readDirsAhead lists queued directories until the queue closes.
func (c *capturer) readDirsAhead(ctx context.Context) {
	scratch := newListScratch()
	for {
		j := c.sched.next()
		if j == nil {
			return
		}
		if err := ctx.Err(); err != nil {
			j.err = err
		} else {
			j.dirListing, j.err = c.readDir(j.rel, &j.from, scratch)
		}
		c.sched.add(c.subJobs(j), j)
		close(j.done)
	}
}

// subJobs makes the jobs of the subdirectories of j, which was just listed
// (kids' job fields), to be queued.
func (c *capturer) subJobs(j *dirJob) []*dirJob {
	if j.err != nil {
		return nil
	}
	var jobs, opened []*dirJob
	for i := range j.kids {
		k := &j.kids[i]
		if k.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		key := make([]uint32, len(j.key)+1)
		copy(key, j.key)
		key[len(j.key)] = uint32(i)
		k.job = &dirJob{rel: k.rel, from: dirFrom{dir: j.dir, name: k.name}, key: key, done: make(chan struct{})}
		if k.dirOpen {
			k.job.from.fd, k.job.from.open = int(k.dirFd), true
			k.dirOpen = false
			opened = append(opened, k.job)
		}
		jobs = append(jobs, k.job)
	}
	if len(opened) > 0 {
		c.dirsMu.Lock()
		c.openJobs = append(c.openJobs, opened...)
		c.dirsMu.Unlock()
	}
	return jobs
}

// readDir lists the directory rel ("" for the root): its entries sorted by
// name, without excluded ones (excluded reports whether there were any)
// and those removed since listed, each with its lstat, symlink target and
// xattrs. A file that will be read ahead gets its xattrs from its open
// file later instead; an unchanged one whose xattrs the host takes from
// the parent gets none.
func (c *capturer) readDir(rel string, from *dirFrom, scratch *listScratch) (l dirListing, err error) {
	fd := c.rootFd
	var nsub int
	if rel != "" {
		if fd, err = c.openDir(rel, from); err != nil {
			return dirListing{}, err
		}
		defer func() {
			if err != nil {
				nsub = 0
			}
			l.dir = c.keepDir(fd, nsub)
		}()
	} else {
		l.dir = c.rootHandle()
	}
	kids, excluded, err := c.readOpenDir(fd, rel, scratch)
	for i := range kids {
		if kids[i].st.Mode&unix.S_IFMT == unix.S_IFDIR && !kids[i].dirOpen {
			nsub++
		}
	}
	l.kids, l.excluded = kids, excluded
	return l, err
}

// rootHandle returns the root's handle, which its subdirectories never
// close (the capture owns the root's descriptor).
func (c *capturer) rootHandle() *listedDir {
	return &listedDir{fd: c.rootFd, pending: math.MaxInt}
}

// listScratch is the reusable memory of one goroutine listing
// directories.
type listScratch struct {
	xattrs []byte // xattr name lists
	dents  []byte // getdents64 records
	// names holds the names of the directory being listed, each
	// NUL-terminated (for fstatat), at the offsets in refs.
	names []byte
	refs  []nameRef
	st    unix.Stat_t // each entry's lstat
}

// nameRef is one name in listScratch.names, and its d_type.
type nameRef struct {
	off, n int32
	typ    uint8
}

func newListScratch() *listScratch {
	return &listScratch{xattrs: make([]byte, 1024), dents: make([]byte, 32<<10)}
}

// name returns the bytes of r's name, without its NUL.
func (s *listScratch) name(r nameRef) []byte { return s.names[r.off : r.off+r.n] }

// list reads the names of the directory open as fd into s (refs, sorted
// by name), without "." and "..", with raw system calls if raw is set
// (an IndexOnly listing; see readOpenDir).
func (s *listScratch) list(fd int, raw bool) error {
	s.names, s.refs = s.names[:0], s.refs[:0]
	for {
		var n int
		var err error
		if raw {
			r, _, errno := unix.RawSyscall(unix.SYS_GETDENTS64, uintptr(fd), uintptr(unsafe.Pointer(&s.dents[0])), uintptr(len(s.dents)))
			n = int(r)
			if errno != 0 {
				err = errno
			}
		} else {
			n, err = unix.Getdents(fd, s.dents)
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			break
		}
		s.parse(s.dents[:n])
	}
	// slices.SortFunc: sort.Slice's reflection-based swapper cost 6%
	// of the directory reader's time on venv-full.
	slices.SortFunc(s.refs, func(a, b nameRef) int { return bytes.Compare(s.name(a), s.name(b)) })
	return nil
}

// parse appends the entries of a getdents64 buffer.
func (s *listScratch) parse(b []byte) {
	forDirents(b, func(name []byte, typ uint8) {
		s.refs = append(s.refs, nameRef{off: int32(len(s.names)), n: int32(len(name)), typ: typ})
		s.names = append(append(s.names, name...), 0)
	})
}

// lstatAt is fstatat(2) of name (NUL-terminated) in the directory open as
// dirFd, without following a symlink: unix.Fstatat, minus the copy of the
// name it makes to terminate it; a raw system call if raw is set (see
// readOpenDir).
func lstatAt(dirFd int, name []byte, st *unix.Stat_t, raw bool) error {
	for {
		var errno unix.Errno
		if raw {
			_, _, errno = unix.RawSyscall6(unix.SYS_NEWFSTATAT, uintptr(dirFd), uintptr(unsafe.Pointer(&name[0])),
				uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		} else {
			_, _, errno = unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(dirFd), uintptr(unsafe.Pointer(&name[0])),
				uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		}
		runtime.KeepAlive(name)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return errno
	}
}

// An IndexOnly listing (an in-place restore's, of the tree it restores,
// nearly always in the caches) makes its getdents and lstats as raw system
// calls (see cached_io.go): made the usual way, each of venv-full's
// ~62,000 of them told the scheduler it might block, and the runtime's
// monitor thread, finding the readers' Ps in system calls, woke every
// 20 µs to look at them. No-op in-place restores of venv-full, CPU of the
// host and the engine: 185.2 -> 173.9 ms (medians of 30 alternating runs).
// A raw call that waits for the disk holds its P, which may be every P
// with two directory readers; an IndexOnly capture has no body readers
// that would then wait to start their reads, only the walker, which waits
// for the listings anyway, and the sender of its few entries. Other
// captures list the usual way: there, with a tree not in the caches, the
// body readers' reads would wait behind the listings' (and timing the
// listings to tell a cold tree from a loaded machine did not work: on this
// 2-core machine at load 3, warm captures of venv-full had 0 to 6
// listings slower than 50 µs per entry and 2 ms in all). capturer.rawList
// says which.

// readOpenDir is readDir of the directory rel open as fd.
func (c *capturer) readOpenDir(fd int, rel string, scratch *listScratch) (kids []child, excluded bool, err error) {
	raw := c.rawList
	if err := scratch.list(fd, raw); err != nil {
		return nil, false, fmt.Errorf("read directory %q: %w", rel, err)
	}
	// Every entry's path, in one string: its rel and its name are
	// slices of it (one allocation per directory, not two per entry).
	size := 0
	for _, r := range scratch.refs {
		size += len(rel) + 1 + int(r.n)
	}
	var sb strings.Builder
	sb.Grow(size)
	for _, r := range scratch.refs {
		if rel != "" {
			sb.WriteString(rel)
			sb.WriteByte('/')
		}
		sb.Write(scratch.name(r))
	}
	paths := sb.String()
	kids = make([]child, 0, len(scratch.refs))
	at := 0
	for _, r := range scratch.refs {
		k := child{}
		start := at
		if rel != "" {
			at += len(rel) + 1
		}
		k.name = paths[at : at+int(r.n)]
		at += int(r.n)
		k.rel = paths[start:at]
		if c.excluded(k.rel, k.name) {
			excluded = true
			continue
		}
		cname := scratch.names[r.off : r.off+r.n+1]
		if r.typ != unix.DT_DIR || !c.opts.IndexOnly || !c.openSubdir(fd, cname, &k, &scratch.st) {
			if err := lstatAt(fd, cname, &scratch.st, raw); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // removed since listed
				}
				c.closeOpened(kids)
				return nil, false, fmt.Errorf("lstat %q: %w", k.rel, err)
			}
		}
		k.st.set(&scratch.st)
		switch k.st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
		case unix.S_IFREG:
			k.unchanged = c.unchanged(k.rel, &k.st)
			// A file with other names may turn into hard-link entries,
			// which carry their own xattrs. An index-only listing for
			// the host, which judges files by their ctime, reads none
			// (pluginapi.Entry.XattrsFromParent): a listxattr per file
			// was ~45 ms of system time of an in-place restore's listing
			// of venv-full (~150 ms of lstat).
			k.xattrsFromParent = (k.unchanged || c.opts.IndexOnly) && c.opts.ParentXattrs && k.st.Nlink == 1
		case unix.S_IFLNK:
			if k.linkTarget, err = readlinkat(fd, k.name); err != nil {
				c.closeOpened(kids)
				return nil, false, fmt.Errorf("readlink %q: %w", k.rel, err)
			}
		default:
			kids = append(kids, k) // special: the walk reports it
			continue
		}
		// A directory or symlink inside an unchanged subtree is not sent,
		// and a second capture finds nearly every one so: its xattrs are
		// read only if the walk sends it. A listxattrat per directory was
		// 8,000 system calls of venv-full's second capture.
		k.xattrsLater = c.checkDirs && k.st.Mode&unix.S_IFMT != unix.S_IFREG
		if !c.readsAhead(&k) && !k.xattrsFromParent && !k.xattrsLater {
			if k.xattrs, err = readXattrsAt(fd, k.name, c.prefix+k.rel, scratch.xattrs); err != nil {
				c.closeOpened(append(kids, k))
				return nil, false, err
			}
		}
		kids = append(kids, k)
	}
	return kids, excluded, nil
}

// A subdirectory is opened as its parent is listed, where it was lstat'ed:
// openat of its name in the parent and fstat of the open directory, which
// its own listing then takes (dirFrom.open), instead of lstat of its name
// there and openat of it again later: each of venv-full's 7,963
// directories was looked up twice (__d_lookup_rcu alone was a third of
// the lstats' time). The open is the one openDirCached makes (from the
// caches, O_NOFOLLOW, O_DIRECTORY); whatever keeps it from opening a
// directory (not in the caches, replaced by a symlink or a file, removed,
// no permission, too many open ahead) leaves the entry to the lstat, as
// before, and its listing opens it. At most maxDirsOpenAhead are open
// ahead at once, and only in an IndexOnly listing: a capture that reads
// bodies keeps up to maxOpenAhead files open besides, and its second
// capture of venv-full was no cheaper with them (CPU 195.0 -> 194.7 ms,
// 10 alternating creates).
const maxDirsOpenAhead = 256

// openSubdir opens the subdirectory name (NUL-terminated) of the
// directory open as dirFd and fills st from it, and k's dirOpen and
// dirFd; false if it did not (st is then garbage).
func (c *capturer) openSubdir(dirFd int, name []byte, k *child, st *unix.Stat_t) bool {
	if noCachedOpen.Load() || c.openAhead.Load() >= maxDirsOpenAhead {
		return false
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveCached}
	fd, err := rawOpenat2(dirFd, &name[0], &how)
	runtime.KeepAlive(name)
	if err != nil {
		return false
	}
	if err := fstatRaw(fd, st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || fd > math.MaxInt32 {
		closeRaw(fd)
		return false
	}
	c.openAhead.Add(1)
	k.dirOpen, k.dirFd = true, int32(fd)
	return true
}

// closeOpened closes the directories openSubdir opened for kids, a
// listing given up.
func (c *capturer) closeOpened(kids []child) {
	for i := range kids {
		if kids[i].dirOpen {
			closeRaw(int(kids[i].dirFd))
			kids[i].dirOpen = false
			c.openAhead.Add(-1)
		}
	}
}

// listing returns the listing of the directory of job j: kept by subtree
// for the walk, made by a reader, or made now if no reader has started
// it. Walker goroutine only.
func (c *capturer) listing(ctx context.Context, j *dirJob) (dirListing, error) {
	if l, ok := c.kept[j.rel]; ok {
		delete(c.kept, j.rel)
		return l, nil
	}
	if c.sched.claim(j) {
		j.dirListing, j.err = c.readDir(j.rel, &j.from, c.listScratch)
		c.sched.add(c.subJobs(j), nil)
	} else {
		select {
		case <-j.done:
		case <-ctx.Done():
			return dirListing{}, ctx.Err()
		}
		c.sched.taken(j)
	}
	l, err := j.dirListing, j.err
	// The walk holds the listing as long as it needs it; the job (which
	// the parent's listing holds) does not.
	j.dirListing = dirListing{}
	return l, err
}

// keepListing keeps a listing the walk will need again for listing.
func (c *capturer) keepListing(rel string, l dirListing) {
	if c.kept == nil {
		c.kept = map[string]dirListing{}
	}
	c.kept[rel] = l
}

// readsAhead reports whether the walk will hand k to a reader (see
// planBody): then the reader takes its xattrs from the open file, which is
// cheaper than a lookup of its path. Files with several links may turn
// into hard-link entries and get theirs by path here.
func (c *capturer) readsAhead(k *child) bool {
	return k.st.Mode&unix.S_IFMT == unix.S_IFREG && k.st.Nlink == 1 && !c.opts.IndexOnly &&
		k.st.Size > 0 && k.st.Size <= readAheadMax && !k.unchanged
}
