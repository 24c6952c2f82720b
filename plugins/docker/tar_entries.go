package docker

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/pypj/ptest-snap/pluginapi"
)

// xattrPrefix is how PAX tar headers carry extended attributes.
const xattrPrefix = "SCHILY.xattr."

// tarToEntries sends the entries of a tar (as the archive API returns a
// directory: its first element is the directory's own name, which is
// stripped) to w. Device nodes and FIFOs have no entry type and are
// skipped, as are entries matching excludes (path.Match patterns tried on
// the relative path and the base name, as fstree does; an excluded
// directory takes its contents with it); the number skipped is returned.
func tarToEntries(ctx context.Context, tr *tar.Reader, w pluginapi.CaptureWriter, excludes []string) (skipped int, err error) {
	var prev string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return skipped, nil
		}
		if err != nil {
			return skipped, fmt.Errorf("read archive: %w", err)
		}
		p := stripFirst(hdr.Name)
		if p == "" {
			continue // the directory itself: a stream's root is not an entry
		}
		if isExcluded(p, excludes) || (hdr.Typeflag == tar.TypeLink && isExcluded(stripFirst(hdr.Linkname), excludes)) {
			skipped++
			continue
		}
		e := pluginapi.Entry{
			Path:    p,
			Mode:    uint32(hdr.Mode) & 0o7777,
			UID:     uint32(hdr.Uid),
			GID:     uint32(hdr.Gid),
			MtimeNs: hdr.ModTime.UnixNano(),
		}
		var body io.Reader
		switch hdr.Typeflag {
		case tar.TypeDir:
			e.Type = pluginapi.TypeDir
		case tar.TypeReg: // the reader reports old TypeRegA as TypeReg
			e.Type = pluginapi.TypeFile
			e.Size = hdr.Size
			body = tr
		case tar.TypeSymlink:
			e.Type = pluginapi.TypeSymlink
			e.LinkTarget = hdr.Linkname
		case tar.TypeLink:
			e.Type = pluginapi.TypeHardlink
			e.LinkTarget = stripFirst(hdr.Linkname)
			if err := pluginapi.ValidatePath(e.LinkTarget); err != nil {
				return skipped, fmt.Errorf("hard link %q: %w", p, err)
			}
		default:
			skipped++
			continue
		}
		if err := pluginapi.ValidatePath(p); err != nil {
			return skipped, err
		}
		if prev != "" && !preorderLess(prev, p) {
			return skipped, fmt.Errorf("archive is not in depth-first name order: %q after %q", p, prev)
		}
		prev = p
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, xattrPrefix); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string][]byte{}
				}
				e.Xattrs[name] = []byte(v)
			}
		}
		if err := w.WriteEntry(ctx, &e, body); err != nil {
			return skipped, err
		}
	}
}

// isExcluded reports whether p or one of its ancestors matches a pattern.
func isExcluded(p string, excludes []string) bool {
	if len(excludes) == 0 {
		return false
	}
	for rel := p; rel != ""; {
		base := rel[strings.LastIndexByte(rel, '/')+1:]
		for _, pat := range excludes {
			if ok, _ := path.Match(pat, rel); ok {
				return true
			}
			if ok, _ := path.Match(pat, base); ok {
				return true
			}
		}
		i := strings.LastIndexByte(rel, '/')
		if i < 0 {
			break
		}
		rel = rel[:i]
	}
	return false
}

// validateExcludes rejects malformed patterns before anything is read.
func validateExcludes(excludes []string) error {
	for _, pat := range excludes {
		if _, err := path.Match(pat, ""); err != nil {
			return fmt.Errorf("docker: exclude pattern %q: %w", pat, err)
		}
	}
	return nil
}

// stripFirst removes the first element of a tar path and any trailing "/".
func stripFirst(name string) string {
	name = strings.TrimPrefix(name, "./")
	_, rest, _ := strings.Cut(name, "/")
	return strings.TrimSuffix(rest, "/")
}

// preorderLess reports whether path a comes before b in depth-first
// pre-order with siblings sorted by name: element by element.
func preorderLess(a, b string) bool {
	for {
		ea, ra, moreA := strings.Cut(a, "/")
		eb, rb, moreB := strings.Cut(b, "/")
		if ea != eb {
			return ea < eb
		}
		if !moreA || !moreB {
			return !moreA && moreB // a is b's ancestor
		}
		a, b = ra, rb
	}
}

// entryHeader is the tar header that recreates e.
func entryHeader(e *pluginapi.Entry) (*tar.Header, error) {
	if err := pluginapi.ValidatePath(e.Path); err != nil {
		return nil, err
	}
	hdr := &tar.Header{
		Name:    e.Path,
		Mode:    int64(e.Mode & 0o7777),
		Uid:     int(e.UID),
		Gid:     int(e.GID),
		ModTime: time.Unix(0, e.MtimeNs),
		Format:  tar.FormatPAX,
	}
	switch e.Type {
	case pluginapi.TypeDir:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case pluginapi.TypeFile:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = e.Size
	case pluginapi.TypeSymlink:
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = e.LinkTarget
	case pluginapi.TypeHardlink:
		if err := pluginapi.ValidatePath(e.LinkTarget); err != nil {
			return nil, fmt.Errorf("hard link %q: %w", e.Path, err)
		}
		hdr.Typeflag = tar.TypeLink
		hdr.Linkname = e.LinkTarget
	default:
		return nil, fmt.Errorf("entry %q: invalid type %d", e.Path, e.Type)
	}
	for name, v := range e.Xattrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[xattrPrefix+name] = string(v)
	}
	return hdr, nil
}

// writeEntryTar appends e (and its body) to tw.
func writeEntryTar(tw *tar.Writer, e *pluginapi.Entry, body io.Reader) error {
	hdr, err := entryHeader(e)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if e.Type == pluginapi.TypeFile {
		if body == nil {
			return fmt.Errorf("entry %q: no body", e.Path)
		}
		n, err := io.Copy(tw, body)
		if err != nil {
			return fmt.Errorf("entry %q: %w", e.Path, err)
		}
		if n != e.Size {
			return fmt.Errorf("entry %q: body is %d bytes, want %d", e.Path, n, e.Size)
		}
	}
	return nil
}
