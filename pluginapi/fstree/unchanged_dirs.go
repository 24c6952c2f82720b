package fstree

import (
	"context"

	"golang.org/x/sys/unix"

	"github.com/pypj/ptest-snap/pluginapi"
)

// A second capture of a slightly changed environment finds nearly every
// directory as the parent saw it. Sent entry by entry, each of venv-full's
// 46,509 entries costs a message, a lookup of the parent's tree node and,
// per directory, a tree encoded, hashed and checked in the host: most of
// the host's work in a create whose walk is the rest. With
// CaptureOptions.UnchangedDirs a directory whose whole subtree is the
// parent's is sent as one entry marked Unchanged, with counts of what is
// beneath it, and the host reuses the parent's tree and index for it.
//
// A subtree is unchanged when the directory and every directory beneath it
// have the parent's ctime and inode (so the same names, mode, owner, mtime
// and xattrs: changing any of them sets the ctime), every regular file is
// unchanged by the rule for files (size, mtime, ctime, inode) and has one
// link, every symlink has the parent's ctime and inode, and nothing in it
// is excluded or special. The walk still lstats every entry, as it must to
// find changed files; it only stops sending what did not change.

// subtreeResult is what the check found of one directory's subtree.
type subtreeResult struct {
	unchanged           bool
	files, dirs, nbytes int64
}

// subtree reports whether the subtree of directory k (a child the walk
// listed) is unchanged, and what is beneath
// it. Results are kept on k's job, so a directory inside a changed one is
// checked once, and a changed directory's listing is kept for the walk,
// which goes through the same children again. Walker goroutine only.
func (c *capturer) subtree(ctx context.Context, k *child) (subtreeResult, error) {
	if k.job.checked {
		return k.job.res, nil
	}
	if !c.sameMeta(k, pluginapi.TypeDir) {
		return subtreeResult{}, nil
	}
	l, err := c.listing(ctx, k.job)
	if err != nil {
		return subtreeResult{}, err
	}
	kids := l.kids
	res := subtreeResult{unchanged: !l.excluded}
	for i := 0; i < len(kids) && res.unchanged; i++ {
		kk := &kids[i]
		switch kk.st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			res.unchanged = kk.unchanged && kk.st.Nlink == 1
			res.files++
			res.nbytes += kk.st.Size
		case unix.S_IFLNK:
			res.unchanged = c.sameMeta(kk, pluginapi.TypeSymlink)
			res.files++
		case unix.S_IFDIR:
			sub, err := c.subtree(ctx, kk)
			if err != nil {
				return subtreeResult{}, err
			}
			res.unchanged = sub.unchanged
			res.files += sub.files
			res.dirs += 1 + sub.dirs
			res.nbytes += sub.nbytes
		default:
			res.unchanged = false
		}
	}
	if !res.unchanged {
		res = subtreeResult{}
		c.keepListing(k.rel, l)
	}
	k.job.checked, k.job.res = true, res
	return res, nil
}

// sameMeta reports whether the parent index has k as an entry of type typ
// with k's ctime and inode.
func (c *capturer) sameMeta(k *child, typ pluginapi.EntryType) bool {
	if c.prints != nil {
		return c.prints.Meta(typ, k.rel, k.st.CtimeNs, k.st.Ino)
	}
	p, ok := c.parent[k.rel]
	return ok && p.Type == typ && p.CtimeNs == k.st.CtimeNs && p.Inode == k.st.Ino
}
