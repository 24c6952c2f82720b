package fstree

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// The walk's own cost is a few system calls per entry (getdents, lstat,
// listxattr, readlink). Directory readers make them for the directories
// ahead of the walk, so the walk itself mostly assembles entries in order.
// On venv-full's unchanged second capture they are ~140 ms of the
// plugin's ~340 ms CPU: lstat 50, getdents 45, openat2 27, close 7,
// listxattr (directories and symlinks only, with ParentXattrs) 8.
const (
	// dirReaders is the number of goroutines listing directories ahead.
	// One overlaps the listing with the walk on an idle machine; more
	// measured slower (wall time) on a loaded 2-core one, where every
	// hand-off between goroutines waits for a core. Re-measured with the
	// parent's xattrs (10 alternating unchanged creates each, load 5-6):
	// two readers, with or without a 2048-directory queue, changed
	// neither wall nor CPU; the machine's cores, not the walk's
	// parallelism, are the limit there.
	dirReaders = 1
	// dirQueue bounds the directories queued for them; when it is full
	// the walk lists the directory itself, so it never waits for room.
	dirQueue = 256
)

// dirJob is one directory listed ahead of the walk.
type dirJob struct {
	rel  string
	done chan struct{} // closed when kids or err is set
	kids []child
	// excluded: an entry of the directory was left out by an exclude.
	excluded bool
	err      error
}

// child is what the walk needs of one entry of a directory.
type child struct {
	name, rel  string
	st         unix.Stat_t
	linkTarget string
	xattrs     map[string][]byte
	// unchanged: a regular file the parent index has with the same size,
	// mtime, ctime and inode (looked up once, here, off the walk's
	// goroutine).
	unchanged bool
	// xattrsFromParent: an unchanged file whose xattrs were not read,
	// since the host takes the parent's (CaptureOptions.ParentXattrs).
	xattrsFromParent bool
}

// submitDir queues the listing of rel for the directory readers, or
// returns nil if the queue is full.
func (c *capturer) submitDir(rel string) *dirJob {
	j := &dirJob{rel: rel, done: make(chan struct{})}
	select {
	case c.dirWork <- j:
		return j
	default:
		return nil
	}
}

// readDirsAhead lists queued directories until the queue closes.
func (c *capturer) readDirsAhead(ctx context.Context) {
	scratch := make([]byte, 1024)
	for j := range c.dirWork {
		if err := ctx.Err(); err != nil {
			j.err = err
		} else {
			j.kids, j.excluded, j.err = c.readDir(j.rel, scratch)
		}
		close(j.done)
	}
}

// readDir lists the directory rel ("" for the root): its entries sorted by
// name, without excluded ones (excluded reports whether there were any)
// and those removed since listed, each with its lstat, symlink target and
// xattrs. A file that will be read ahead gets its xattrs from its open
// file later instead; an unchanged one whose xattrs the host takes from
// the parent gets none.
func (c *capturer) readDir(rel string, scratch []byte) (kids []child, excluded bool, err error) {
	fd := c.rootFd
	if rel != "" {
		if fd, err = openDirBeneath(c.rootFd, rel); err != nil {
			return nil, false, fmt.Errorf("open directory %q: %w", rel, err)
		}
		defer unix.Close(fd)
	}
	ents, err := readDirEntries(fd)
	if err != nil {
		return nil, false, fmt.Errorf("read directory %q: %w", rel, err)
	}
	// slices.SortFunc: sort.Slice's reflection-based swapper cost 6%
	// of the directory reader's time on venv-full.
	slices.SortFunc(ents, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	kids = make([]child, 0, len(ents))
	for _, de := range ents {
		k := child{name: de.name, rel: de.name}
		if rel != "" {
			k.rel = rel + "/" + de.name
		}
		if c.excluded(k.rel, k.name) {
			excluded = true
			continue
		}
		if err := unix.Fstatat(fd, k.name, &k.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since listed
			}
			return nil, false, fmt.Errorf("lstat %q: %w", k.rel, err)
		}
		switch k.st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
		case unix.S_IFREG:
			k.unchanged = !c.opts.IndexOnly && c.unchanged(k.rel, &k.st)
			// A file with other names may turn into hard-link entries,
			// which carry their own xattrs. An index-only listing for
			// the host, which judges files by their ctime, reads none
			// (pluginapi.Entry.XattrsFromParent): a listxattr per file
			// was ~45 ms of system time of an in-place restore's listing
			// of venv-full (~150 ms of lstat).
			k.xattrsFromParent = (k.unchanged || c.opts.IndexOnly) && c.opts.ParentXattrs && k.st.Nlink == 1
		case unix.S_IFLNK:
			if k.linkTarget, err = readlinkat(fd, k.name); err != nil {
				return nil, false, fmt.Errorf("readlink %q: %w", k.rel, err)
			}
		default:
			kids = append(kids, k) // special: the walk reports it
			continue
		}
		if !c.readsAhead(&k) && !k.xattrsFromParent {
			if k.xattrs, err = readXattrsAt(fd, k.name, c.prefix+k.rel, scratch); err != nil {
				return nil, false, err
			}
		}
		kids = append(kids, k)
	}
	return kids, excluded, nil
}

// listing returns the entries of directory rel (readDir's): from the job
// queued for it (queueDir), if any, or read now. Walker goroutine only.
func (c *capturer) listing(ctx context.Context, rel string) ([]child, bool, error) {
	j, ok := c.jobs[rel]
	if !ok {
		return c.readDir(rel, c.scratch)
	}
	delete(c.jobs, rel)
	select {
	case <-j.done:
		return j.kids, j.excluded, j.err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// queueDir has the directory readers list rel ahead of the walk, unless it
// is queued already or the queue is full. Walker goroutine only.
func (c *capturer) queueDir(rel string) {
	if _, ok := c.jobs[rel]; ok {
		return
	}
	if j := c.submitDir(rel); j != nil {
		c.jobs[rel] = j
	}
}

// keepListing puts a listing the walk will need again back for listing.
func (c *capturer) keepListing(rel string, kids []child, excluded bool) {
	j := &dirJob{rel: rel, done: make(chan struct{}), kids: kids, excluded: excluded}
	close(j.done)
	c.jobs[rel] = j
}

// readsAhead reports whether the walk will hand k to a reader (see
// planBody): then the reader takes its xattrs from the open file, which is
// cheaper than a lookup of its path. Files with several links may turn
// into hard-link entries and get theirs by path here.
func (c *capturer) readsAhead(k *child) bool {
	return k.st.Mode&unix.S_IFMT == unix.S_IFREG && k.st.Nlink == 1 && !c.opts.IndexOnly &&
		k.st.Size > 0 && k.st.Size <= readAheadMax && !k.unchanged
}
