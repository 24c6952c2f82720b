package core

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/pypj/ptest-snap/store"
)

// ChangeKind says how a path differs between two snapshots.
type ChangeKind string

// Change kinds, one letter as in restic's and git's diff output.
const (
	ChangeAdded    ChangeKind = "+"
	ChangeRemoved  ChangeKind = "-"
	ChangeModified ChangeKind = "M"
)

// PathChange is one path that differs.
type PathChange struct {
	Kind   ChangeKind `json:"kind"`
	Stream string     `json:"stream"`
	Path   string     `json:"path"`
	// OldType/NewType are "file", "dir", "symlink", "hardlink" ("" when
	// absent on that side).
	OldType string `json:"old_type,omitempty"`
	NewType string `json:"new_type,omitempty"`
	// OldSize/NewSize are the file sizes before and after.
	OldSize int64  `json:"old_size"`
	NewSize int64  `json:"new_size"`
	OldMode uint32 `json:"old_mode,omitempty"`
	NewMode uint32 `json:"new_mode,omitempty"`
	// For ChangeModified: what changed. MetadataChanged covers owner,
	// mtime and xattrs.
	ContentChanged  bool `json:"content_changed,omitempty"`
	TypeChanged     bool `json:"type_changed,omitempty"`
	ModeChanged     bool `json:"mode_changed,omitempty"`
	LinkChanged     bool `json:"link_changed,omitempty"`
	MetadataChanged bool `json:"metadata_changed,omitempty"`
}

// PackageChange is one package that differs.
type PackageChange struct {
	Name string `json:"name"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

// PackageDiff is the package-level difference, when both snapshots'
// engine metadata carry a package list (PackagesField).
type PackageDiff struct {
	Added   []PackageChange `json:"added"`
	Removed []PackageChange `json:"removed"`
	Changed []PackageChange `json:"changed"`
}

// DiffResult is the difference from one snapshot to another.
type DiffResult struct {
	From, To *store.Snapshot
	// Changes are in tree order: by stream, then depth-first by name.
	Changes []PathChange
	// Counts and bytes: file bytes added (new files plus growth) and removed.
	Added, Removed, Modified int
	AddedBytes, RemovedBytes int64
	// StreamsAdded/StreamsRemoved name streams only one side has.
	StreamsAdded, StreamsRemoved []string
	// Packages is nil unless both sides carry a package list.
	Packages *PackageDiff
	// TreesRead counts the trees the walk had to read (identical subtrees
	// are skipped without reading them).
	TreesRead int
}

// Diff compares snapshot from with snapshot to (each an ID, unique prefix
// or name). It walks both trees together and skips every subtree whose hash
// is the same on both sides, so its cost follows the size of the change,
// not of the snapshots.
func (m *Manager) Diff(ctx context.Context, from, to string) (*DiffResult, error) {
	a, err := m.Resolve(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	b, err := m.Resolve(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	d := &differ{st: m.store, res: &DiffResult{From: a, To: b}}
	roots := map[string][2]store.Hash{}
	var names []string
	for _, s := range a.Streams {
		names = append(names, s.Name)
		r := roots[s.Name]
		r[0] = s.Root
		roots[s.Name] = r
	}
	for _, s := range b.Streams {
		if _, ok := roots[s.Name]; !ok {
			names = append(names, s.Name)
		}
		r := roots[s.Name]
		r[1] = s.Root
		roots[s.Name] = r
	}
	sort.Strings(names)
	for _, name := range names {
		r := roots[name]
		switch {
		case r[0].IsZero():
			d.res.StreamsAdded = append(d.res.StreamsAdded, name)
		case r[1].IsZero():
			d.res.StreamsRemoved = append(d.res.StreamsRemoved, name)
		}
		if err := d.diffTrees(ctx, name, "", r[0], r[1]); err != nil {
			return nil, fmt.Errorf("diff %s %s: stream %s: %w", a.ID, b.ID, name, err)
		}
	}
	pa, pb := packagesOf(a.Metadata), packagesOf(b.Metadata)
	if pa != nil && pb != nil {
		d.res.Packages = diffPackages(pa, pb)
	}
	return d.res, nil
}

type differ struct {
	st  *store.Store
	res *DiffResult
}

func (d *differ) tree(ctx context.Context, h store.Hash) ([]store.Node, error) {
	if h.IsZero() {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := d.st.GetTree(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", h, err)
	}
	d.res.TreesRead++
	return t.Nodes, nil
}

// diffTrees compares two directories (a zero hash is an absent side).
func (d *differ) diffTrees(ctx context.Context, stream, prefix string, ha, hb store.Hash) error {
	if ha == hb {
		return nil
	}
	na, err := d.tree(ctx, ha)
	if err != nil {
		return err
	}
	nb, err := d.tree(ctx, hb)
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(na) || j < len(nb) {
		switch {
		case j >= len(nb) || i < len(na) && na[i].Name < nb[j].Name:
			if err := d.one(ctx, stream, prefix, &na[i], ChangeRemoved); err != nil {
				return err
			}
			i++
		case i >= len(na) || nb[j].Name < na[i].Name:
			if err := d.one(ctx, stream, prefix, &nb[j], ChangeAdded); err != nil {
				return err
			}
			j++
		default:
			if err := d.both(ctx, stream, prefix, &na[i], &nb[j]); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

// one reports a node present on one side only, and everything under it.
func (d *differ) one(ctx context.Context, stream, prefix string, n *store.Node, kind ChangeKind) error {
	c := PathChange{Kind: kind, Stream: stream, Path: prefix + n.Name}
	if kind == ChangeAdded {
		c.NewType, c.NewSize, c.NewMode = n.Type.String(), n.Size, n.Mode
		d.res.Added++
		d.res.AddedBytes += fileSize(n)
	} else {
		c.OldType, c.OldSize, c.OldMode = n.Type.String(), n.Size, n.Mode
		d.res.Removed++
		d.res.RemovedBytes += fileSize(n)
	}
	d.res.Changes = append(d.res.Changes, c)
	if n.Type != store.NodeDir {
		return nil
	}
	if kind == ChangeAdded {
		return d.diffTrees(ctx, stream, c.Path+"/", store.Hash{}, n.Subtree)
	}
	return d.diffTrees(ctx, stream, c.Path+"/", n.Subtree, store.Hash{})
}

func fileSize(n *store.Node) int64 {
	if n.Type == store.NodeFile {
		return n.Size
	}
	return 0
}

// both compares a node present on both sides.
func (d *differ) both(ctx context.Context, stream, prefix string, a, b *store.Node) error {
	p := prefix + a.Name
	if a.Type != b.Type {
		// A type change: the old thing went, the new one came (with what is
		// under either).
		d.res.Changes = append(d.res.Changes, PathChange{Kind: ChangeModified, Stream: stream, Path: p,
			OldType: a.Type.String(), NewType: b.Type.String(), OldSize: a.Size, NewSize: b.Size,
			OldMode: a.Mode, NewMode: b.Mode, TypeChanged: true, ContentChanged: true})
		d.res.Modified++
		d.res.RemovedBytes += fileSize(a)
		d.res.AddedBytes += fileSize(b)
		var ha, hb store.Hash
		if a.Type == store.NodeDir {
			ha = a.Subtree
		}
		if b.Type == store.NodeDir {
			hb = b.Subtree
		}
		return d.diffTrees(ctx, stream, p+"/", ha, hb)
	}
	c := PathChange{Kind: ChangeModified, Stream: stream, Path: p, OldType: a.Type.String(), NewType: b.Type.String(),
		OldSize: a.Size, NewSize: b.Size, OldMode: a.Mode, NewMode: b.Mode}
	c.ContentChanged = a.Type == store.NodeFile && (a.Size != b.Size || !slices.Equal(a.Content, b.Content))
	c.ModeChanged = a.Mode != b.Mode
	c.LinkChanged = a.LinkTarget != b.LinkTarget
	c.MetadataChanged = a.UID != b.UID || a.GID != b.GID || !slices.EqualFunc(a.Xattrs, b.Xattrs, func(x, y store.Xattr) bool {
		return x.Name == y.Name && string(x.Value) == string(y.Value)
	})
	if a.Type != store.NodeDir && a.MtimeNs != b.MtimeNs {
		// A directory's mtime changes with any change inside it, which the
		// entries under it already report.
		c.MetadataChanged = true
	}
	if c.ContentChanged || c.ModeChanged || c.LinkChanged || c.MetadataChanged {
		d.res.Changes = append(d.res.Changes, c)
		d.res.Modified++
		if c.ContentChanged {
			if delta := b.Size - a.Size; delta > 0 {
				d.res.AddedBytes += delta
			} else {
				d.res.RemovedBytes -= delta
			}
		}
	}
	if a.Type == store.NodeDir {
		return d.diffTrees(ctx, stream, p+"/", a.Subtree, b.Subtree)
	}
	return nil
}

// diffPackages compares two package lists.
func diffPackages(a, b map[string]string) *PackageDiff {
	pd := &PackageDiff{Added: []PackageChange{}, Removed: []PackageChange{}, Changed: []PackageChange{}}
	for name, v := range a {
		nv, ok := b[name]
		switch {
		case !ok:
			pd.Removed = append(pd.Removed, PackageChange{Name: name, Old: v})
		case nv != v:
			pd.Changed = append(pd.Changed, PackageChange{Name: name, Old: v, New: nv})
		}
	}
	for name, v := range b {
		if _, ok := a[name]; !ok {
			pd.Added = append(pd.Added, PackageChange{Name: name, New: v})
		}
	}
	for _, l := range [][]PackageChange{pd.Added, pd.Removed, pd.Changed} {
		sort.Slice(l, func(i, j int) bool { return l[i].Name < l[j].Name })
	}
	return pd
}
