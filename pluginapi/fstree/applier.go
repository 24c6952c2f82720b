package fstree

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// Defaults of ApplyOptions.
const (
	// DefaultWorkers is the default number of goroutines writing files.
	// Creating a file is kernel work that needs a core (on a restore's
	// time scale nothing waits for the device): the workers make their
	// system calls without yielding their P (see rawOpenat), so more
	// workers than cores only queue. Three keep two cores busy beside the
	// host's decoding when one worker is held up in a large directory
	// (each directory's files go to one worker, Applier.queues).
	DefaultWorkers = 3
	// DefaultWriteBehindBytes bounds the memory of bodies queued for the
	// workers.
	DefaultWriteBehindBytes = 64 << 20
	// writeBehindMax: bodies up to this size are copied and written by a
	// worker; larger ones are written by Apply itself, streaming.
	writeBehindMax = 1 << 20
	// MaxRewriteSize is the largest file ApplyOptions.Rewrite may take:
	// such files are held in memory whole, and the size comes from the
	// stream, which is not trusted.
	MaxRewriteSize = 64 << 20
)

// ApplyOptions configures an Applier.
type ApplyOptions struct {
	// InPlace restores over an existing tree: entries marked Unchanged are
	// left alone (they must exist), others are replaced atomically (written
	// under a temporary name, then renamed), and at Finish everything under
	// the root that the stream did not mention is deleted, but for what
	// Excludes matches. Without InPlace the root must not exist or be an
	// empty directory.
	InPlace bool
	// Workers is the number of goroutines writing file bodies
	// (0: DefaultWorkers).
	Workers int
	// WriteBehindBytes bounds the memory of bodies waiting for a worker
	// (0: DefaultWriteBehindBytes).
	WriteBehindBytes int64
	// Rewrite, if set, is asked about every regular file; when it returns
	// ok, the file's whole body is passed through rewrite before it is
	// written (the size may change). The virtualenv engine relocates
	// scripts and pyvenv.cfg with it. rewrite runs on a worker goroutine
	// and may modify and return its argument. Files larger than
	// MaxRewriteSize fail the restore if Rewrite accepts them.
	Rewrite func(e *pluginapi.Entry) (rewrite func([]byte) ([]byte, error), ok bool)
	// TrustUnchangedDirs (in place) skips listing the directories marked
	// Unchanged when deleting what the stream does not mention: adding,
	// removing or renaming an entry changes its directory's mtime, so a
	// directory the host found with the snapshot's mtime has no extra
	// entries (git's untracked cache relies on the same). What it misses:
	// entries added to a directory whose mtime was then set back to the
	// snapshot's (touch -d, tar x), and the check that each Unchanged entry
	// inside such a directory exists. It spares a full listing of the
	// target, the bulk of an in-place restore that changes little.
	TrustUnchangedDirs bool
	// Excludes (in place) are the patterns the snapshot was captured with
	// (CaptureOptions.Excludes, matched the same way): Finish does not
	// delete an existing path they match, nor anything beneath a matched
	// directory, since the snapshot says nothing about them. Entries that
	// match are still applied if the stream has them.
	Excludes []string
	// Sparse (in place) takes a sparse stream (pluginapi.RestoreRequest.Sparse):
	// it names only what changes — entries to write, entries marked Delete,
	// which are removed while the stream goes on (through the parent's
	// directory fd, never following a symlink; see Applier.delete), and,
	// marked Unchanged, the directories along their paths. Nothing else
	// is listed or deleted: the host compared the target with the
	// snapshot. A hard link may name a file the stream did not send (kept
	// as it was) if the target holds a regular file there.
	Sparse bool
	// RecordWritten keeps the statistics of every regular file written,
	// taken after its last change (Written), for the host's restore index.
	RecordWritten bool
}

// Applier writes the entries of one stream into a directory. Call Apply for
// every entry in stream order, then Finish; Close releases everything if
// the restore is abandoned. An Applier is used from one goroutine.
//
// Safety: every entry path is checked with pluginapi.ValidatePath, an
// entry's parent must be a directory entry seen earlier in the stream, and
// directories are opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS),
// entries created with O_NOFOLLOW/*at calls, so nothing is written outside
// root, not through a symlink planted in the target nor one created by an
// earlier entry. A hard link must name a regular file of the same stream.
// Such refusals wrap pluginapi.ErrUnsafePath.
//
// Directories are created mode 0700 and get their mode, owner, xattrs and
// mtime at Finish, after their contents. Files get content, owner (when
// running as root; best effort otherwise), mode, xattrs and mtime before
// they appear under their name in place mode.
//
// Abandon: a restore to a new target that does not finish (Close without
// a successful Finish, or Finish failing, e.g. because ctx was cancelled)
// removes everything it wrote: the workers are stopped and waited for
// first, then the root is emptied through its directory fd with the same
// no-symlink, beneath-the-root removal the in-place prune uses; the root
// itself is removed too if NewApplier created it (with the parents it
// created, when they are empty), and left, empty, if it existed. So a new
// target is either complete or gone (DESIGN invariant 2). In place, every
// replaced entry is written under a temporary name and renamed over the old
// one, and a directory the target lacks is made under a temporary name,
// filled (what goes beneath it is written under its own name: there is
// nothing to replace, and one rename instead of one per file halves the
// system calls of recreating a removed package) and renamed into place at
// Finish; so an abandoned in-place restore leaves each entry either as it
// was or as the snapshot has it, never half written, and no temporary
// names (a crash may leave some; the next in-place restore deletes them,
// as the snapshot lacks them); it does not roll back what it already
// renamed into place.
//
// Durability: like cp -a and tar -x (strace of cp -a on venv-full: no
// fsync, fdatasync or syncfs), the Applier never syncs. When Finish returns,
// the restored tree is complete and consistent for every process on the
// machine, but it is in the page cache: the kernel writes it back on its
// own schedule, and a power loss or kernel crash before that can lose
// restored files or leave them empty or short. A caller that needs the
// tree on disk runs sync(1), or syncfs(2) on the target, after the
// restore.
type Applier struct {
	root   string
	opts   ApplyOptions
	isRoot bool
	euid   uint32
	egid   uint32

	// created is the topmost directory NewApplier created for a new
	// target (root or one of its parents), "" if root existed; rootStat
	// identifies root's inode, so the abandon path removes that directory
	// and not whatever may have been moved to its name since.
	created  string
	rootStat unix.Stat_t

	rootDir *dirHandle
	stack   []openDir // directories open along the current path; [0] is root
	// seen is every path applied so far: it checks the stream's order and
	// hard-link targets, and tells Finish what to keep.
	seen      map[string]seenEntry
	unchanged int             // entries marked Unchanged, all checked at Finish
	dirs      []dirMeta       // directory entries, in stream order
	dirty     map[string]bool // in place: directories whose children changed

	// fresh (in place) are the directories this restore created: what
	// goes into them has nothing to replace and is written under its own
	// name. Those whose parent is not fresh were made under a temporary
	// name (tmpDirs: path → that name) and are renamed into place whole
	// at Finish, so an abandoned restore leaves no half-written file
	// under a real name. direct: the entry being applied goes into a
	// fresh directory.
	fresh   map[string]bool
	tmpDirs map[string]string
	direct  bool

	writtenMu sync.Mutex
	written   map[string]pluginapi.IndexEntry // RecordWritten: by path
	// writtenLost: a written file's statistics could not be taken, so
	// Written reports nothing.
	writtenLost bool

	// early (a new target): each directory is created with its final
	// mode where that is safe, kept open from its creation, and given its
	// metadata on that descriptor as soon as nothing more can go into it
	// (dirHandle.fin), instead of being opened again by path at Finish.
	// predict: the owner and mode a fresh directory gets are known
	// (umask, no setgid or default ACL on the root), so fchown and
	// fchmod are made only where they change something.
	early   bool
	predict bool
	umask   uint32
	// earlyDirs are the directories finished early, by path, for
	// openParent to mark when a stream goes back into one.
	earlyDirs map[string]*earlyDir

	// queues are the workers' job queues, one each: every file of a
	// directory goes to the queue of the worker the directory was given
	// (dirHandle.worker), so no two workers create entries in the same
	// directory at once. Creating an entry takes its directory's i_rwsem
	// exclusively; workers sharing a directory spun on it
	// (rwsem_spin_on_owner under path_openat), burning CPU a 2-core
	// machine lacks.
	queues     []chan *fileJob
	nextWorker int // where the search for the least busy worker starts
	jobsClosed bool
	pending    sync.WaitGroup // jobs queued and not yet written
	workers    sync.WaitGroup
	// deletes are the sparse deletions under way (Applier.delete), at
	// most maxDeletes at once: deleteSlots holds one token each.
	deletes     sync.WaitGroup
	deleteSlots chan struct{}
	memory      *budget
	tmpSeq      atomic.Uint64

	errMu sync.Mutex
	err   error // the first failure; the Applier is unusable afterwards

	stopped atomic.Bool
	done    bool // Finish or Close ran
}

// dirHandle is an open directory shared by the stack and queued jobs; the
// last user closes it.
type dirHandle struct {
	fd   int
	refs atomic.Int32
	// worker is the index of the worker writing this directory's files
	// (Applier.queues), -1 until its first file; set and read only by
	// the goroutine calling Apply.
	worker int
	// fin, if set, is the metadata this fresh directory of a new target
	// gets once its last user lets it go: the Applier has moved past it
	// in the stream and every file queued into it is written, so nothing
	// changes it afterwards (in stream order; see Applier.openParent).
	fin *earlyDir
}

// earlyDir is a directory of a new target finished on its own descriptor
// (Applier.finishEarly) as soon as it is complete.
type earlyDir struct {
	a       *Applier
	e       pluginapi.Entry
	created uint32 // the mode it was created with (before the umask)
	// done: its metadata is set; refinish: something was written into it
	// after that (a stream not in pre-order), so Finish sets it again.
	done     atomic.Bool
	refinish bool
}

func newDirHandle(fd int) *dirHandle {
	d := &dirHandle{fd: fd, worker: -1}
	d.refs.Store(1)
	return d
}

func (d *dirHandle) ref() *dirHandle { d.refs.Add(1); return d }

func (d *dirHandle) unref() {
	if d.refs.Add(-1) == 0 {
		if d.fin != nil {
			d.fin.a.finishEarly(d.fd, d.fin)
		}
		unix.Close(d.fd)
	}
}

type openDir struct {
	path string
	dir  *dirHandle
}

type dirMeta struct {
	e         pluginapi.Entry
	unchanged bool
	// early, if set, finishes the directory as soon as it is complete
	// (Applier.early); Finish skips it once done unless refinish.
	early *earlyDir
}

// fileJob is a file body handed to a worker.
type fileJob struct {
	dir     *dirHandle
	name    string
	direct  bool // into a fresh directory
	e       pluginapi.Entry
	data    []byte
	cost    int64
	rewrite func([]byte) ([]byte, error)
}

// NewApplier prepares a restore into root. Without opts.InPlace, root must
// not exist (it is created, with its parents) or be an empty directory;
// otherwise the error wraps pluginapi.ErrTargetExists. With opts.InPlace a
// missing root is created and an existing one must be a directory.
func NewApplier(root string, opts ApplyOptions) (*Applier, error) {
	if err := checkExcludes(opts.Excludes); err != nil {
		return nil, fmt.Errorf("restore %s: %w", root, err)
	}
	root = filepath.Clean(root)
	created, err := prepareRoot(root, opts.InPlace)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if created != "" && !opts.InPlace {
			removeCreatedParents(root, created)
		}
		return nil, fmt.Errorf("open target %s: %w", root, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("target %s: %w", root, err)
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.WriteBehindBytes <= 0 {
		opts.WriteBehindBytes = DefaultWriteBehindBytes
	}
	a := &Applier{
		root:     root,
		created:  created,
		rootStat: st,
		opts:     opts,
		isRoot:   os.Geteuid() == 0,
		euid:     uint32(os.Geteuid()),
		egid:     uint32(os.Getegid()),
		rootDir:  newDirHandle(fd),
		seen:     make(map[string]seenEntry),
		dirty:    make(map[string]bool),
		fresh:    make(map[string]bool),
		tmpDirs:  make(map[string]string),
		queues:   make([]chan *fileJob, opts.Workers),
		memory:   newBudget(opts.WriteBehindBytes),

		deleteSlots: make(chan struct{}, maxDeletes),
	}
	if opts.RecordWritten {
		a.written = make(map[string]pluginapi.IndexEntry)
	}
	if !opts.InPlace {
		a.early = true
		a.umask, a.predict = processUmask()
		a.predict = a.predict && st.Mode&unix.S_ISGID == 0 && !hasDefaultACL(fd)
		a.earlyDirs = make(map[string]*earlyDir)
	}
	a.stack = []openDir{{path: "", dir: a.rootDir}}
	for i := range a.queues {
		a.queues[i] = make(chan *fileJob, workerQueueLen)
		a.workers.Add(1)
		go a.work(a.queues[i])
	}
	return a, nil
}

// prepareRoot checks or creates root and returns the topmost directory it
// created ("" if root existed).
func prepareRoot(root string, inPlace bool) (created string, err error) {
	fi, err := os.Lstat(root)
	if errors.Is(err, os.ErrNotExist) {
		created = root
		for p := filepath.Dir(created); p != created; p = filepath.Dir(p) {
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				break
			}
			created = p
		}
		if err := os.MkdirAll(root, 0o755); err != nil {
			return "", fmt.Errorf("create target %s: %w", root, err)
		}
		return created, nil
	}
	if err != nil {
		return "", fmt.Errorf("target %s: %w", root, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		// The user named a symlink: restore where it points.
		if fi, err = os.Stat(root); err != nil {
			return "", fmt.Errorf("target %s: %w", root, err)
		}
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: %s is not a directory", pluginapi.ErrTargetExists, root)
	}
	if inPlace {
		return "", nil
	}
	f, err := os.Open(root)
	if err != nil {
		return "", fmt.Errorf("target %s: %w", root, err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return "", fmt.Errorf("%w: %s is not empty (restore in place to overwrite it)", pluginapi.ErrTargetExists, root)
	}
	return "", nil
}

// Err returns the first error the Applier met, if any.
func (a *Applier) Err() error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return a.err
}

func (a *Applier) fail(err error) error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	if a.err == nil {
		a.err = err
		a.stopped.Store(true)
	}
	return a.err
}

// Apply writes one entry. body yields the file's Size bytes for a regular
// file that is not Unchanged, and is read before Apply returns (small
// bodies are copied and written by a worker). After an error the Applier
// is unusable: Close it.
func (a *Applier) Apply(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if err := a.Err(); err != nil {
		return err
	}
	if a.done {
		return errors.New("apply: applier already finished")
	}
	if err := ctx.Err(); err != nil {
		return a.fail(err)
	}
	if err := a.apply(ctx, e, body); err != nil {
		return a.fail(fmt.Errorf("apply %q: %w", e.Path, err))
	}
	return nil
}

func (a *Applier) apply(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return err
	}
	if _, dup := a.seen[e.Path]; dup {
		return fmt.Errorf("%w: path sent twice", pluginapi.ErrUnsafePath)
	}
	parent, name := splitPath(e.Path)
	if p := a.seen[parent]; parent != "" && (p.typ != pluginapi.TypeDir || p.deleted) {
		return fmt.Errorf("%w: parent %q is not a directory sent earlier", pluginapi.ErrUnsafePath, parent)
	}
	switch e.Type {
	case pluginapi.TypeFile, pluginapi.TypeDir, pluginapi.TypeSymlink, pluginapi.TypeHardlink:
	default:
		return fmt.Errorf("invalid entry type %d", e.Type)
	}
	if e.Delete {
		return a.delete(ctx, e.Path, e.Type, parent, name)
	}
	a.seen[e.Path] = seenEntry{typ: e.Type, unchanged: e.Unchanged}
	if e.Unchanged {
		return a.keep(e)
	}
	dir, err := a.openParent(parent)
	if err != nil {
		return err
	}
	if a.opts.InPlace {
		a.dirty[parent] = true
	}
	a.direct = a.fresh[parent]
	switch e.Type {
	case pluginapi.TypeDir:
		return a.applyDir(dir, name, e)
	case pluginapi.TypeFile:
		return a.applyFile(ctx, dir, name, e, body)
	case pluginapi.TypeSymlink:
		return a.applySymlink(dir, name, e)
	default:
		return a.applyHardlink(dir, name, e)
	}
}

func splitPath(p string) (parent, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// openParent returns the open directory parent, reusing the stack of
// directories along the previous entry's path: in pre-order most entries
// share their parent with the previous one.
func (a *Applier) openParent(parent string) (*dirHandle, error) {
	for len(a.stack) > 1 {
		top := a.stack[len(a.stack)-1].path
		if strings.HasPrefix(parent, top) && (len(parent) == len(top) || parent[len(top)] == '/') {
			break
		}
		a.stack[len(a.stack)-1].dir.unref()
		a.stack = a.stack[:len(a.stack)-1]
	}
	top := a.stack[len(a.stack)-1]
	rest := parent
	if top.path != "" {
		rest = strings.TrimPrefix(parent[len(top.path):], "/")
	}
	cur := top.path
	for rest != "" {
		name, tail, _ := strings.Cut(rest, "/")
		rest = tail
		if cur == "" {
			cur = name
		} else {
			cur += "/" + name
		}
		fd, err := openDirBeneath(a.stack[len(a.stack)-1].dir.fd, a.diskName(cur, name))
		if err != nil {
			return nil, err
		}
		if d := a.earlyDirs[cur]; d != nil {
			// A new target's directories stay open from their creation
			// until the stream has passed them, so this stream is not in
			// pre-order and goes back into one that may be finished:
			// Finish sets its metadata again.
			d.refinish = true
		}
		a.stack = append(a.stack, openDir{path: cur, dir: newDirHandle(fd)})
	}
	return a.stack[len(a.stack)-1].dir, nil
}

// keep handles an entry marked Unchanged: nothing is written, and Finish
// checks, while it lists every directory anyway, that the entry is there
// with the right type. That costs no system call per kept entry, which is
// nearly every entry of a typical in-place restore.
func (a *Applier) keep(e *pluginapi.Entry) error {
	if !a.opts.InPlace {
		return fmt.Errorf("entry marked unchanged in a restore to a new target")
	}
	a.unchanged++
	if e.Type == pluginapi.TypeDir {
		a.dirs = append(a.dirs, dirMeta{e: cloneEntry(e), unchanged: true})
	}
	return nil
}

// maxDeletes bounds the deletions a sparse restore runs at once.
const maxDeletes = 4

// delete removes, in a sparse restore, an entry the snapshot lacks (with
// everything beneath it) from its parent, a directory sent earlier. It is
// remembered as deleted: nothing may be sent at its path or beneath it.
//
// The removal runs on a goroutine of its own while the stream goes on;
// the file workers and hard links wait for it only at Finish (and
// applyHardlink). Removing a file whose blocks are on the disk waits for
// the device: the file system is mounted with discard and, without a
// journal, ext4 discards freed blocks within the unlink. Undoing change
// small deletes a package of 80 files of 65 KB, 0.08-2 ms each on this
// machine (synced, then unlinked one by one, 3 runs); the Apply goroutine
// sat in it 6-110 ms (traces of 2 restores), with the rest of the stream
// waiting behind it.
func (a *Applier) delete(ctx context.Context, path string, typ pluginapi.EntryType, parent, name string) error {
	if !a.opts.InPlace || !a.opts.Sparse {
		return fmt.Errorf("%w: entry marked delete outside a sparse in-place restore", pluginapi.ErrUnsafePath)
	}
	dir, err := a.openParent(parent)
	if err != nil {
		return err
	}
	a.dirty[parent] = true
	a.seen[path] = seenEntry{typ: typ, deleted: true}
	select {
	case a.deleteSlots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	d := dir.ref()
	a.deletes.Go(func() {
		defer func() {
			d.unref()
			<-a.deleteSlots
		}()
		if a.stopped.Load() {
			return
		}
		if err := removeAllAt(d.fd, name); err != nil {
			a.fail(fmt.Errorf("apply %q: delete: %w", path, err))
		}
	})
	return nil
}

// seenEntry is what the Applier remembers of each path.
type seenEntry struct {
	typ       pluginapi.EntryType
	unchanged bool
	deleted   bool // a sparse deletion (Applier.delete)
}

// direntTypes is the d_type of each entry type.
var direntTypes = map[pluginapi.EntryType]uint8{
	pluginapi.TypeFile: unix.DT_REG, pluginapi.TypeHardlink: unix.DT_REG,
	pluginapi.TypeDir: unix.DT_DIR, pluginapi.TypeSymlink: unix.DT_LNK,
}

// diskName is the name on disk of the directory entry path (whose last
// element is name): its temporary name until Finish if it is a fresh
// directory made under one.
func (a *Applier) diskName(path, name string) string {
	if tmp, ok := a.tmpDirs[path]; ok {
		return tmp
	}
	return name
}

// diskPath is path with each fresh directory still under its temporary
// name replaced by that name.
func (a *Applier) diskPath(path string) string {
	if len(a.tmpDirs) == 0 {
		return path
	}
	elems := strings.Split(path, "/")
	for i := range elems {
		if tmp, ok := a.tmpDirs[strings.Join(elems[:i+1], "/")]; ok {
			elems[i] = tmp
		}
	}
	return strings.Join(elems, "/")
}

// applyDir creates a directory (mode 0700 until Finish, so it can be
// filled without root). In place, an existing directory is kept and
// anything else of that name replaced; a new one is fresh (see
// Applier.fresh).
func (a *Applier) applyDir(dir *dirHandle, name string, e *pluginapi.Entry) error {
	if a.opts.InPlace && a.direct {
		// Beneath a fresh directory: nothing is there.
		if err := unix.Mkdirat(dir.fd, name, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		a.fresh[e.Path] = true
		a.dirs = append(a.dirs, dirMeta{e: cloneEntry(e)})
		return nil
	}
	if a.opts.InPlace {
		var st unix.Stat_t
		err := unix.Fstatat(dir.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			a.dirs = append(a.dirs, dirMeta{e: cloneEntry(e)})
			return nil
		case err == nil:
			if err := unix.Unlinkat(dir.fd, name, 0); err != nil {
				return fmt.Errorf("replace with a directory: %w", err)
			}
		case !errors.Is(err, unix.ENOENT):
			return err
		}
		tmp, err := a.create(name, false, func(n string) error { return unix.Mkdirat(dir.fd, n, 0o700) })
		if err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		a.fresh[e.Path] = true
		a.tmpDirs[e.Path] = tmp
		a.dirs = append(a.dirs, dirMeta{e: cloneEntry(e)})
		return nil
	}
	if a.early {
		return a.applyFreshDir(dir, name, e)
	}
	if err := unix.Mkdirat(dir.fd, name, 0o700); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	a.dirs = append(a.dirs, dirMeta{e: cloneEntry(e)})
	return nil
}

// applyFreshDir creates a directory of a new target and opens it as the
// top of the stack, where the next entries, in pre-order, find it; when the
// stream has passed it and its files are written, its handle's last user
// finishes it on that descriptor (finishEarly). Per directory that is
// mkdirat, openat2, utimensat and close — plus fchown and fchmod only
// where they change something — instead of mkdirat, openat2 and close
// while filling it and openat2, fchown, fchmod, utimensat and close again
// at Finish, after every file: on venv-full's 7,963 directories, 32,000
// system calls fewer, and no pass over the directories at the end.
//
// It is created with its final permissions when they include rwx for the
// owner (needed to fill it without root) and nothing more than r-x for
// group and others (so nobody else can add entries while it is filled:
// they would fail the restore), else 0700 as before. Without root, a
// directory whose mode lacks rwx for the owner is finished at Finish,
// deepest first, as before, since what is beneath it could not be reached
// once its mode is set.
func (a *Applier) applyFreshDir(dir *dirHandle, name string, e *pluginapi.Entry) error {
	created := uint32(0o700)
	if e.Mode&0o700 == 0o700 {
		created = e.Mode & createPerm
	}
	if err := rawMkdirat(dir.fd, name, created); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	m := dirMeta{e: cloneEntry(e)}
	if !a.isRoot && e.Mode&0o700 != 0o700 {
		a.dirs = append(a.dirs, m)
		return nil
	}
	fd, err := openDirBeneath(dir.fd, name)
	if err != nil {
		return err
	}
	m.early = &earlyDir{a: a, e: m.e, created: created}
	a.dirs = append(a.dirs, m)
	a.earlyDirs[e.Path] = m.early
	h := newDirHandle(fd)
	h.fin = m.early
	a.stack = append(a.stack, openDir{path: e.Path, dir: h})
	return nil
}

// finishEarly sets a fresh directory's owner, mode, xattrs and mtime on its
// descriptor fd, once nothing more goes into it (dirHandle.unref). An
// abandoned restore skips it: the target is removed.
func (a *Applier) finishEarly(fd int, d *earlyDir) {
	if a.stopped.Load() {
		return
	}
	e := &d.e
	chowned := false
	if !a.predict || e.UID != a.euid || e.GID != a.egid {
		if err := a.chown(func() error { return unix.Fchown(fd, int(e.UID), int(e.GID)) }, e); err != nil {
			a.fail(fmt.Errorf("finish directory %q: %w", e.Path, err))
			return
		}
		chowned = true
	}
	if !a.predict || chowned || d.created&^a.umask != e.Mode&0o7777 {
		if err := unix.Fchmod(fd, e.Mode&0o7777); err != nil {
			a.fail(fmt.Errorf("finish directory %q: chmod: %w", e.Path, err))
			return
		}
	}
	if len(e.Xattrs) > 0 {
		if err := setFdXattrs(fd, e.Xattrs, false); err != nil {
			a.fail(fmt.Errorf("finish directory %q: %w", e.Path, err))
			return
		}
	}
	if err := futimens(fd, e.MtimeNs); err != nil {
		a.fail(fmt.Errorf("finish directory %q: set mtime: %w", e.Path, err))
		return
	}
	d.done.Store(true)
}

// clearForReplace, in place, removes a directory standing where a
// non-directory entry goes (a rename cannot replace it). Files and
// symlinks are replaced by the rename itself.
func (a *Applier) clearForReplace(dir *dirHandle, name string) error {
	if !a.opts.InPlace || a.direct {
		return nil
	}
	var st unix.Stat_t
	err := unix.Fstatat(dir.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return removeAllAt(dir.fd, name)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

func (a *Applier) applyFile(ctx context.Context, dir *dirHandle, name string, e *pluginapi.Entry, body io.Reader) error {
	if e.Size < 0 {
		return fmt.Errorf("negative size %d", e.Size)
	}
	if body == nil {
		return errors.New("file without a body")
	}
	if err := a.clearForReplace(dir, name); err != nil {
		return err
	}
	var rewrite func([]byte) ([]byte, error)
	if a.opts.Rewrite != nil {
		if rw, ok := a.opts.Rewrite(e); ok {
			if e.Size > MaxRewriteSize {
				return fmt.Errorf("file of %d bytes is too large to rewrite (at most %d)", e.Size, MaxRewriteSize)
			}
			rewrite = rw
		}
	}
	if e.Size > writeBehindMax && rewrite == nil {
		// Large: stream it here; the caller's body is only valid now.
		return a.writeFile(dir, name, a.direct, e, nil, body)
	}
	job := &fileJob{name: name, direct: a.direct, e: cloneEntry(e), rewrite: rewrite, cost: a.memory.clamp(e.Size)}
	if err := a.memory.acquire(ctx, job.cost); err != nil {
		return err
	}
	job.data = getBuf(int(e.Size))
	if _, err := io.ReadFull(body, job.data); err != nil {
		putBuf(job.data)
		a.memory.release(job.cost)
		return fmt.Errorf("read body: %w", err)
	}
	job.dir = dir.ref()
	a.pending.Add(1)
	select {
	case a.queues[a.workerFor(dir)] <- job:
		return nil
	case <-ctx.Done():
		a.finishJob(job)
		return ctx.Err()
	}
}

// workerQueueLen is the length of each worker's queue. Memory is bounded
// by WriteBehindBytes; this only lets the Apply goroutine run ahead of a
// worker busy with a large directory, on to directories given to others.
const workerQueueLen = 64

// workerFor returns the worker that writes the files of dir, giving dir
// one if it has none yet: the worker with the fewest queued jobs, looking
// from the one after the last given, so consecutive directories go to
// different workers when several are idle.
func (a *Applier) workerFor(dir *dirHandle) int {
	if dir.worker >= 0 {
		return dir.worker
	}
	n := len(a.queues)
	best, bestLen := -1, 0
	for k := range n {
		i := (a.nextWorker + k) % n
		if l := len(a.queues[i]); best < 0 || l < bestLen {
			best, bestLen = i, l
		}
	}
	a.nextWorker = (best + 1) % n
	dir.worker = best
	return best
}

// work writes queued file bodies until the job channel closes.
func (a *Applier) work(jobs <-chan *fileJob) {
	defer a.workers.Done()
	for job := range jobs {
		if !a.stopped.Load() {
			data := job.data
			var err error
			if job.rewrite != nil {
				data, err = job.rewrite(data)
				job.e.Size = int64(len(data))
			}
			if err == nil {
				err = a.writeFile(job.dir, job.name, job.direct, &job.e, data, nil)
			}
			if err != nil {
				a.fail(fmt.Errorf("apply %q: %w", job.e.Path, err))
			}
		}
		a.finishJob(job)
	}
}

func (a *Applier) finishJob(job *fileJob) {
	putBuf(job.data)
	job.data = nil
	a.memory.release(job.cost)
	job.dir.unref()
	a.pending.Done()
}

// tempName returns a name for a file being written in place; Finish of a
// later in-place restore deletes any left by a crash, as it is not in the
// stream.
func (a *Applier) tempName() string {
	return fmt.Sprintf(".ptest-snap-%d-%d.tmp", os.Getpid(), a.tmpSeq.Add(1))
}

// create makes a new entry of some kind under a fresh temporary name (in
// place) or under its own name (new target, or direct: in a directory this
// restore made), retrying on a name clash.
func (a *Applier) create(name string, direct bool, make func(string) error) (string, error) {
	if !a.opts.InPlace || direct {
		return name, make(name)
	}
	for {
		tmp := a.tempName()
		err := make(tmp)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		return tmp, err
	}
}

// publish moves a finished temporary entry over its real name (in place).
func (a *Applier) publish(dir *dirHandle, tmp, name string) error {
	if tmp == name {
		return nil
	}
	if err := unix.Renameat(dir.fd, tmp, dir.fd, name); err != nil {
		_ = unix.Unlinkat(dir.fd, tmp, 0)
		return fmt.Errorf("rename into place: %w", err)
	}
	return nil
}

// createPerm is the part of an entry's mode a new file is created with:
// its permission bits without group and other write, so nobody else can
// change the file while it is being written. When the umask leaves those
// bits as they are (and the entry has no setuid, setgid or sticky bit and
// the file its owner already), the fstat that follows the write finds the
// mode right and no fchmod is needed: of venv-full's 38,542 files all but a
// handful. The fstat is the one RecordWritten takes anyway.
const createPerm = 0o755

// writeFile writes a regular file from data, or else from the first e.Size
// bytes of src, with all its metadata.
func (a *Applier) writeFile(dir *dirHandle, name string, direct bool, e *pluginapi.Entry, data []byte, src io.Reader) error {
	var fd int
	tmp, err := a.create(name, direct, func(n string) (err error) {
		fd, err = rawOpenat(dir.fd, n, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, e.Mode&createPerm)
		return err
	})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	var st unix.Stat_t
	if err := a.fillFile(fd, e, data, src, &st); err != nil {
		closeRaw(fd)
		_ = unix.Unlinkat(dir.fd, tmp, 0)
		return err
	}
	// Published while still open, so RecordWritten's statistics are those
	// after the rename (which sets the ctime). A failing close (not on
	// local file systems) still fails the restore.
	if err := a.publish(dir, tmp, name); err != nil {
		closeRaw(fd)
		return err
	}
	if a.written != nil {
		if tmp != name {
			// The rename moved the ctime.
			err = fstatRaw(fd, &st)
		}
		a.recordWritten(&st, err, e.Path)
	}
	if err := closeRaw(fd); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// recordWritten keeps st, the statistics of the file just written as path
// (or err, the failure to take them).
func (a *Applier) recordWritten(st *unix.Stat_t, err error, path string) {
	a.writtenMu.Lock()
	defer a.writtenMu.Unlock()
	if err != nil {
		a.writtenLost = true
		return
	}
	a.written[path] = pluginapi.IndexEntry{Size: st.Size, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}
}

// relinked updates the statistics of a written file that got a further
// name (linking changed its ctime), taken through that new name in dir,
// when it is still the same inode.
func (a *Applier) relinked(dir *dirHandle, name, target string) {
	var st unix.Stat_t
	err := unix.Fstatat(dir.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	a.writtenMu.Lock()
	defer a.writtenMu.Unlock()
	old, ok := a.written[target]
	switch {
	case !ok:
	case err != nil || st.Ino != old.Inode:
		delete(a.written, target)
	default:
		a.written[target] = pluginapi.IndexEntry{Size: st.Size, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}
	}
}

// Written returns the statistics of the regular files written, by path,
// after a successful Finish with RecordWritten; nil otherwise, or if any
// could not be taken. A file that got further hard links has the
// statistics after the last.
func (a *Applier) Written() map[string]pluginapi.IndexEntry {
	if !a.done || a.Err() != nil {
		return nil
	}
	a.writtenMu.Lock()
	defer a.writtenMu.Unlock()
	if a.writtenLost {
		return nil
	}
	return a.written
}

// fillFile writes a new file's content, xattrs and mtime, then sets its
// owner and mode where the file did not get them at creation, and leaves
// its statistics after the last change in st.
func (a *Applier) fillFile(fd int, e *pluginapi.Entry, data []byte, src io.Reader, st *unix.Stat_t) error {
	if src == nil {
		if err := rawWriteAll(fd, data); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	} else if err := copyExact(fd, src, e.Size); err != nil {
		return err
	}
	if len(e.Xattrs) > 0 {
		if err := setFdXattrs(fd, e.Xattrs, false); err != nil {
			return err
		}
	}
	// Neither chown nor chmod moves the mtime, so it is set once, here.
	if err := futimens(fd, e.MtimeNs); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	if err := fstatRaw(fd, st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	changed := false
	if st.Uid != e.UID || st.Gid != e.GID {
		// A setgid parent, or a restore by another user.
		if err := a.chown(func() error { return unix.Fchown(fd, int(e.UID), int(e.GID)) }, e); err != nil {
			return err
		}
		changed = true
	}
	// After the chown, which clears the setuid and setgid bits.
	if changed || st.Mode&0o7777 != e.Mode&0o7777 {
		if err := unix.Fchmod(fd, e.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
		changed = true
	}
	if changed {
		if err := unix.Fstat(fd, st); err != nil {
			return fmt.Errorf("stat: %w", err)
		}
	}
	return nil
}

// copyExact copies exactly size bytes from src to fd.
func copyExact(fd int, src io.Reader, size int64) error {
	buf := getBuf(int(min(size, 1<<20)))
	defer putBuf(buf)
	for size > 0 {
		n := int(min(int64(len(buf)), size))
		if _, err := io.ReadFull(src, buf[:n]); err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		if err := rawWriteAll(fd, buf[:n]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		size -= int64(n)
	}
	return nil
}

// setMeta gives an open file or directory its owner, mode, xattrs and
// mtime. Owner first: chown clears the setuid and setgid bits.
func (a *Applier) setMeta(fd int, e *pluginapi.Entry, pruneXattrs bool) error {
	if err := a.chown(func() error { return unix.Fchown(fd, int(e.UID), int(e.GID)) }, e); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, e.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if len(e.Xattrs) > 0 || pruneXattrs {
		if err := setFdXattrs(fd, e.Xattrs, pruneXattrs); err != nil {
			return err
		}
	}
	if err := futimens(fd, e.MtimeNs); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

// chown sets ownership: required as root, best effort otherwise (an
// unprivileged user can only give files its own uid and its groups).
func (a *Applier) chown(do func() error, e *pluginapi.Entry) error {
	if !a.isRoot && e.UID == a.euid && e.GID == a.egid {
		return nil
	}
	if err := do(); err != nil {
		if !a.isRoot && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL)) {
			return nil
		}
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

func (a *Applier) applySymlink(dir *dirHandle, name string, e *pluginapi.Entry) error {
	if strings.IndexByte(e.LinkTarget, 0) >= 0 || e.LinkTarget == "" {
		return fmt.Errorf("invalid symlink target %q", e.LinkTarget)
	}
	if err := a.clearForReplace(dir, name); err != nil {
		return err
	}
	tmp, err := a.create(name, a.direct, func(n string) error { return unix.Symlinkat(e.LinkTarget, dir.fd, n) })
	if err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	err = a.chown(func() error { return unix.Fchownat(dir.fd, tmp, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW) }, e)
	if err == nil && len(e.Xattrs) > 0 {
		// No fd can be opened on a symlink for writing; the l* call on
		// the name inside our already-checked directory fd does not
		// follow it.
		p := fmt.Sprintf("/proc/self/fd/%d/%s", dir.fd, tmp)
		for k, v := range e.Xattrs {
			if err = unix.Lsetxattr(p, k, v, 0); err != nil {
				err = fmt.Errorf("set xattr %s: %w", k, err)
				break
			}
		}
	}
	if err == nil {
		if err = lutimensAt(dir.fd, tmp, e.MtimeNs); err != nil {
			err = fmt.Errorf("set mtime: %w", err)
		}
	}
	if err != nil {
		_ = unix.Unlinkat(dir.fd, tmp, 0)
		return err
	}
	return a.publish(dir, tmp, name)
}

func (a *Applier) applyHardlink(dir *dirHandle, name string, e *pluginapi.Entry) error {
	if err := pluginapi.ValidatePath(e.LinkTarget); err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	s, sent := a.seen[e.LinkTarget]
	if sent && (s.typ != pluginapi.TypeFile || s.deleted) || !sent && !a.opts.Sparse {
		return fmt.Errorf("%w: hard link target %q is not a file earlier in the stream", pluginapi.ErrUnsafePath, e.LinkTarget)
	}
	// The target may still be queued for a worker (and, in place, not yet
	// renamed to its name), or beneath a deletion under way: wait for
	// every queued file and deletion.
	a.pending.Wait()
	a.deletes.Wait()
	if err := a.Err(); err != nil {
		return err
	}
	if err := a.clearForReplace(dir, name); err != nil {
		return err
	}
	tparent, tname := splitPath(e.LinkTarget)
	tfd := a.rootDir.fd
	if tparent != "" {
		fd, err := openDirBeneath(a.rootDir.fd, a.diskPath(tparent))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		tfd = fd
	}
	if !sent {
		// Sparse: a file the host kept. It must be a regular file where
		// the snapshot has it (linkat does not follow a symlink).
		var st unix.Stat_t
		if err := unix.Fstatat(tfd, tname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("hard link target %q: %w", e.LinkTarget, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("%w: hard link target %q is not a regular file in the target", pluginapi.ErrUnsafePath, e.LinkTarget)
		}
	}
	tmp, err := a.create(name, a.direct, func(n string) error { return unix.Linkat(tfd, tname, dir.fd, n, 0) })
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	if err := a.publish(dir, tmp, name); err != nil {
		return err
	}
	if tmp != name {
		// rename(2) does nothing when both names are already links to
		// the same file; do not leave the temporary name behind.
		_ = unix.Unlinkat(dir.fd, tmp, 0)
	}
	if a.written != nil {
		a.relinked(dir, name, e.LinkTarget)
	}
	return nil
}

// Finish waits for every queued file and sparse deletion, deletes (in
// place) whatever the stream did not mention, then sets each directory's
// owner, mode, xattrs and mtime, deepest first, so writing into a
// directory does not change its restored mtime afterwards. It releases the Applier's resources. If
// it fails, a new target is removed as by Close.
func (a *Applier) Finish(ctx context.Context) (err error) {
	if a.done {
		return errors.New("finish: applier already finished")
	}
	a.stopWorkers()
	defer func() {
		if err != nil {
			if derr := a.discard(); derr != nil {
				err = fmt.Errorf("%w; %w", err, derr)
			}
		}
		a.release()
	}()
	if err := a.Err(); err != nil {
		return err
	}
	if a.early {
		// The directories still open along the last entry's path are
		// complete now that every file is written: finish them (the
		// others finished as the stream passed them).
		if err := ctx.Err(); err != nil {
			return a.fail(err)
		}
		for len(a.stack) > 1 {
			a.stack[len(a.stack)-1].dir.unref()
			a.stack = a.stack[:len(a.stack)-1]
		}
		if err := a.Err(); err != nil {
			return err
		}
	}
	if err := a.publishDirs(); err != nil {
		return a.fail(fmt.Errorf("in place: %w", err))
	}
	switch {
	case a.opts.InPlace && a.opts.Sparse:
		// The stream named every deletion; nothing else is listed.
	case a.opts.InPlace && a.opts.TrustUnchangedDirs:
		if err := a.deleteExtrasInChangedDirs(ctx); err != nil {
			return a.fail(fmt.Errorf("in place: %w", err))
		}
	case a.opts.InPlace:
		found, err := a.deleteExtras(ctx)
		if err != nil {
			return a.fail(fmt.Errorf("in place: %w", err))
		}
		if found != a.unchanged {
			return a.fail(fmt.Errorf("in place: %w", a.missingUnchanged()))
		}
	}
	return a.finishDirs(ctx)
}

// finishDirWorkers is how many goroutines set directories' metadata at
// Finish. It is the last thing a restore does, with the host idle: on
// venv-full's 7,963 directories, five system calls each, one goroutine
// left the other core unused.
const finishDirWorkers = 4

// finishDirs sets the metadata of every directory to finish, deepest level
// first: a directory's mode may take away the access its subdirectories
// need to be opened (without root), and nothing at one level depends on
// another directory of the same level, so each level is done in parallel.
func (a *Applier) finishDirs(ctx context.Context) error {
	var levels [][]*dirMeta
	for i := range a.dirs {
		d := &a.dirs[i]
		if d.unchanged && !a.dirty[d.e.Path] {
			continue
		}
		if d.early != nil && d.early.done.Load() && !d.early.refinish {
			continue
		}
		depth := strings.Count(d.e.Path, "/")
		for len(levels) <= depth {
			levels = append(levels, nil)
		}
		levels[depth] = append(levels[depth], d)
	}
	for depth := len(levels) - 1; depth >= 0; depth-- {
		dirs := levels[depth]
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(finishDirWorkers, len(dirs)) {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= len(dirs) || a.stopped.Load() {
						return
					}
					if err := ctx.Err(); err != nil {
						a.fail(err)
						return
					}
					if err := a.finishDir(dirs[i]); err != nil {
						a.fail(fmt.Errorf("finish directory %q: %w", dirs[i].e.Path, err))
						return
					}
				}
			})
		}
		wg.Wait()
		if err := a.Err(); err != nil {
			return err
		}
	}
	return nil
}

// publishDirs renames the fresh directories made under temporary names
// into place, now that everything beneath them is written.
func (a *Applier) publishDirs() error {
	for path, tmp := range a.tmpDirs {
		parent, name := splitPath(path)
		fd := a.rootDir.fd
		if parent != "" {
			var err error
			if fd, err = openDirBeneath(a.rootDir.fd, parent); err != nil {
				return fmt.Errorf("directory %q: %w", path, err)
			}
		}
		err := unix.Renameat(fd, tmp, fd, name)
		if fd != a.rootDir.fd {
			unix.Close(fd)
		}
		if err != nil {
			return fmt.Errorf("directory %q: rename into place: %w", path, err)
		}
		delete(a.tmpDirs, path)
	}
	return nil
}

func (a *Applier) finishDir(d *dirMeta) error {
	fd, err := openDirBeneath(a.rootDir.fd, d.e.Path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if d.unchanged {
		// Its metadata was right; only our writes inside moved its mtime.
		return futimens(fd, d.e.MtimeNs)
	}
	return a.setMeta(fd, &d.e, a.opts.InPlace)
}

// pruneWorkers is how many directories deleteExtras lists at once: the
// walk is one system call after another, and the whole tree is listed on
// every in-place restore.
const pruneWorkers = 4

// pruner is one deleteExtras walk, shared by its goroutines.
type pruner struct {
	a     *Applier
	ctx   context.Context
	slots chan struct{} // free goroutine slots
	wg    sync.WaitGroup
	found atomic.Int64 // entries marked Unchanged that are there

	// shallow: list only the directories given, not their subdirectories.
	shallow bool

	mu    sync.Mutex
	err   error
	dirty []string // directories something was removed from
}

// deleteExtras removes, beneath root, every entry the stream did not
// mention, descends into the directories it did, checks the type of each
// entry marked Unchanged, and returns how many of those it found.
func (a *Applier) deleteExtras(ctx context.Context) (int, error) {
	p := &pruner{a: a, ctx: ctx, slots: make(chan struct{}, pruneWorkers-1)}
	fd, err := unix.Dup(a.rootDir.fd)
	if err != nil {
		return 0, err
	}
	p.prune(fd, "")
	p.wg.Wait()
	for _, d := range p.dirty {
		a.dirty[d] = true
	}
	return int(p.found.Load()), p.err
}

func (p *pruner) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *pruner) failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

// prune handles the directory open as dirFd at rel and closes dirFd. Each
// subdirectory goes to a new goroutine when a slot is free, else is
// handled inline, so the walk never waits for a slot.
func (p *pruner) prune(dirFd int, rel string) {
	defer unix.Close(dirFd)
	if err := p.ctx.Err(); err != nil {
		p.fail(err)
		return
	}
	if p.failed() {
		return
	}
	ents, err := readDirEntries(dirFd)
	if err != nil {
		p.fail(fmt.Errorf("list %q: %w", rel, err))
		return
	}
	for _, de := range ents {
		child := de.name
		if rel != "" {
			child = rel + "/" + de.name
		}
		s, ok := p.a.seen[child]
		if !ok {
			if matchExcludes(p.a.opts.Excludes, child, de.name) {
				continue // not part of the snapshot: left as it is
			}
			if err := removeAllAt(dirFd, de.name); err != nil {
				p.fail(fmt.Errorf("remove %q: %w", child, err))
				return
			}
			p.mu.Lock()
			p.dirty = append(p.dirty, rel)
			p.mu.Unlock()
			continue
		}
		if s.unchanged {
			if err := checkKept(dirFd, de, s, child); err != nil {
				p.fail(err)
				return
			}
			p.found.Add(1)
		}
		if s.typ != pluginapi.TypeDir || p.shallow {
			continue
		}
		fd, err := openDirBeneath(dirFd, de.name)
		if err != nil {
			p.fail(err)
			return
		}
		select {
		case p.slots <- struct{}{}:
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer func() { <-p.slots }()
				p.prune(fd, child)
			}()
		default:
			p.prune(fd, child)
		}
	}
}

// checkKept checks that a listed entry marked Unchanged has its type.
func checkKept(dirFd int, de dirent, s seenEntry, child string) error {
	typ := de.typ
	if typ == unix.DT_UNKNOWN {
		var err error
		if typ, err = direntTypeAt(dirFd, de.name); err != nil {
			return fmt.Errorf("unchanged %q: %w", child, err)
		}
	}
	if typ == direntTypes[s.typ] {
		return nil
	}
	if s.typ == pluginapi.TypeDir && typ == unix.DT_LNK {
		// Following it would put the entries beneath it wherever it
		// points.
		return fmt.Errorf("%w: unchanged directory %q is a symlink in the target", pluginapi.ErrUnsafePath, child)
	}
	return fmt.Errorf("unchanged %s %q is something else in the target", s.typ, child)
}

// deleteExtrasInChangedDirs is deleteExtras for TrustUnchangedDirs: it
// lists only the root and the directories not marked Unchanged.
func (a *Applier) deleteExtrasInChangedDirs(ctx context.Context) error {
	p := &pruner{a: a, ctx: ctx, shallow: true}
	rels := []string{""}
	for _, d := range a.dirs {
		if !d.unchanged {
			rels = append(rels, d.e.Path)
		}
	}
	for _, rel := range rels {
		var fd int
		var err error
		if rel == "" {
			fd, err = unix.Dup(a.rootDir.fd)
		} else {
			fd, err = openDirBeneath(a.rootDir.fd, rel)
		}
		if err != nil {
			return err
		}
		p.prune(fd, rel)
		if p.err != nil {
			return p.err
		}
	}
	for _, d := range p.dirty {
		a.dirty[d] = true
	}
	return nil
}

// missingUnchanged names an entry marked Unchanged that the target lacks.
func (a *Applier) missingUnchanged() error {
	for p, s := range a.seen {
		if !s.unchanged {
			continue
		}
		parent, name := splitPath(p)
		fd := a.rootDir.fd
		if parent != "" {
			var err error
			if fd, err = openDirBeneath(a.rootDir.fd, parent); err != nil {
				return fmt.Errorf("unchanged entry %q missing from target: %w", p, err)
			}
		}
		var st unix.Stat_t
		err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if fd != a.rootDir.fd {
			unix.Close(fd)
		}
		if err != nil {
			return fmt.Errorf("unchanged entry %q missing from target: %w", p, err)
		}
	}
	return errors.New("unchanged entries missing from target")
}

// Close abandons the restore if Finish has not run: queued files are
// dropped, workers stopped and waited for, and directories closed. A new
// target is then removed (see Applier); in place, what was renamed into
// place stays. Close after Finish does nothing. The error is that of the
// removal.
func (a *Applier) Close() error {
	if a.done {
		return nil
	}
	a.stopped.Store(true)
	a.fail(errAbandoned)
	a.stopWorkers()
	err := a.discard()
	a.release()
	return err
}

// errAbandoned is the Applier's error after Close.
var errAbandoned = errors.New("applier closed before the restore finished")

// discard removes what an unfinished new-target restore wrote; the
// workers must have stopped. In place it does nothing: each entry was
// renamed into place whole, and temporary names were removed on failure.
func (a *Applier) discard() error {
	if a.opts.InPlace {
		// Fresh directories not yet renamed into place go, with what
		// was written beneath them.
		var first error
		for path, tmp := range a.tmpDirs {
			parent, _ := splitPath(path)
			fd := a.rootDir.fd
			if parent != "" {
				var err error
				if fd, err = openDirBeneath(a.rootDir.fd, parent); err != nil {
					first = cmp.Or(first, err)
					continue
				}
			}
			if err := removeAllAt(fd, tmp); err != nil {
				first = cmp.Or(first, err)
			}
			if fd != a.rootDir.fd {
				unix.Close(fd)
			}
		}
		if first != nil {
			return fmt.Errorf("remove the unfinished new directories in %s: %w", a.root, first)
		}
		return nil
	}
	if err := emptyDir(a.rootDir.fd); err != nil {
		return fmt.Errorf("remove the partial target %s: %w", a.root, err)
	}
	if a.created == "" {
		return nil
	}
	if err := removeDirIfSame(a.root, &a.rootStat); err != nil {
		return fmt.Errorf("remove the partial target %s: %w", a.root, err)
	}
	removeCreatedParents(filepath.Dir(a.root), a.created)
	return nil
}

// removeCreatedParents removes the empty directories from dir up to top,
// which NewApplier created for a target that is gone again. A directory
// someone else filled meanwhile stays.
func removeCreatedParents(dir, top string) {
	for ; len(dir) >= len(top) && strings.HasPrefix(dir, top); dir = filepath.Dir(dir) {
		if unix.Rmdir(dir) != nil {
			return
		}
		if dir == top {
			return
		}
	}
}

// stopWorkers ends the file workers once they have written what is queued
// (or dropped it, stopped) and waits for them and for the deletions under
// way.
func (a *Applier) stopWorkers() {
	if !a.jobsClosed {
		for _, q := range a.queues {
			close(q)
		}
		a.jobsClosed = true
		a.workers.Wait()
	}
	a.deletes.Wait()
}

func (a *Applier) release() {
	a.done = true
	for _, d := range a.stack {
		d.dir.unref()
	}
	a.stack = nil
}

func cloneEntry(e *pluginapi.Entry) pluginapi.Entry {
	c := *e
	if e.Xattrs != nil {
		c.Xattrs = maps.Clone(e.Xattrs)
	}
	return c
}

// processUmask returns the process's umask, read from /proc/self/status
// (umask(2) can only read it by changing it, for every thread at once);
// ok is false where the kernel does not report it.
func processUmask() (mask uint32, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		v, found := strings.CutPrefix(line, "Umask:")
		if !found {
			continue
		}
		m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
		if err != nil {
			return 0, false
		}
		return uint32(m), true
	}
	return 0, false
}

// hasDefaultACL reports whether the directory fd has a default ACL, which
// gives what is created in it a mode other than the umask's (and is
// inherited by new subdirectories); true when that cannot be told.
func hasDefaultACL(fd int) bool {
	_, err := unix.Fgetxattr(fd, "system.posix_acl_default", nil)
	return !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP)
}
