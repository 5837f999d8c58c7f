package treediff

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/view"
)

// Node is one entry of a tree, as the comparison sees it.
type Node struct {
	Name     string
	Type     byte // fileindex.Type*
	Mode     uint32
	UID, GID uint32
	Size     int64
	ModTime  time.Time
	Link     string
	DevMajor uint32
	DevMinor uint32
	Xattrs   map[string]string
	// HasOwner is false where owners are not known (amber's own entries).
	HasOwner bool
	sum      func() (hashing.Digest, error)
	digest   *hashing.Digest
	key      any // the tree's handle for ReadDir
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.Type == fileindex.TypeDir }

// SHA256 is a regular file's content digest (computed on first use for a
// local directory).
func (n *Node) SHA256() (hashing.Digest, error) {
	if n.digest != nil {
		return *n.digest, nil
	}
	if n.sum == nil || n.Type != fileindex.TypeReg {
		return hashing.Digest{}, nil
	}
	d, err := n.sum()
	if err != nil {
		return d, err
	}
	n.digest = &d
	return d, nil
}

// Tree is one side of a comparison.
type Tree interface {
	Root() (*Node, error)
	ReadDir(n *Node) ([]*Node, error)
}

// ViewTree is a directory of an archive's view.
type ViewTree struct {
	V   *view.View
	Dir *view.Entry
}

// Root is the tree's top directory.
func (t ViewTree) Root() (*Node, error) { return viewNode(t.Dir), nil }

func (t ViewTree) ReadDir(n *Node) ([]*Node, error) {
	kids, err := t.V.ReadDir(n.key.(*view.Entry).Path)
	if err != nil {
		return nil, err
	}
	out := make([]*Node, len(kids))
	for i, k := range kids {
		out[i] = viewNode(k)
	}
	return out, nil
}

func viewNode(e *view.Entry) *Node {
	n := &Node{Name: e.Name, Type: e.Type, Mode: e.Mode & 0o7777, Size: e.Size, ModTime: e.ModTime, key: e}
	if e.Type != fileindex.TypeReg {
		n.Size = 0
	}
	if e.Type == fileindex.TypeReg {
		d := e.SHA256()
		n.digest = &d
	}
	if r := e.Node; r != nil {
		n.UID, n.GID, n.HasOwner = r.Rec.UID, r.Rec.GID, true
		n.Link, n.DevMajor, n.DevMinor, n.Xattrs = r.Rec.Linkname, r.Rec.DevMajor, r.Rec.DevMinor, r.Rec.Xattrs
	}
	return n
}

// Fields that can change, as named in Change.What and Options.Ignore.
const (
	FieldType    = "type"
	FieldContent = "content"
	FieldSize    = "size"
	FieldMode    = "mode"
	FieldOwner   = "owner"
	FieldMtime   = "mtime"
	FieldTarget  = "target"
	FieldXattrs  = "xattrs"
	FieldDevice  = "device"
)

// Options filter a comparison.
type Options struct {
	// Prefix limits the output to paths under it ("/etc").
	Prefix string
	// Ignore lists fields whose changes do not count (e.g. mtime).
	Ignore map[string]bool
	// Kinds keeps only these kinds ("AC"); empty keeps all.
	Kinds string
}

// Info is what the index records of one side of a path.
type Info struct {
	Type   string         `json:"type"`
	Mode   string         `json:"mode"`
	UID    uint32         `json:"uid"`
	GID    uint32         `json:"gid"`
	Size   int64          `json:"size"`
	Mtime  time.Time      `json:"mtime"`
	SHA256 hashing.Digest `json:"sha256,omitzero"`
	Link   string         `json:"link,omitempty"`
}

// Change is one path that differs.
type Change struct {
	Kind byte   `json:"-"`
	Path string `json:"path"`
	// What changed, for C.
	What []string `json:"what,omitempty"`
	// ChildrenOnly: a directory listed because something below it
	// changed; its own metadata did not.
	ChildrenOnly bool  `json:"children_only,omitempty"`
	Old          *Info `json:"old,omitempty"`
	New          *Info `json:"new,omitempty"`
}

// Compare lists what differs from a to b, sorted by path.
func Compare(a, b Tree, opts Options) ([]Change, error) {
	c := &cmp{a: a, b: b, opts: opts}
	ra, err := a.Root()
	if err != nil {
		return nil, err
	}
	rb, err := b.Root()
	if err != nil {
		return nil, err
	}
	if _, err := c.dir(ra, rb, ""); err != nil {
		return nil, err
	}
	sort.Slice(c.out, func(i, j int) bool { return c.out[i].Path < c.out[j].Path })
	return c.filter(), nil
}

type cmp struct {
	a, b Tree
	opts Options
	out  []Change
}

func (c *cmp) filter() []Change {
	var out []Change
	p := strings.TrimSuffix(c.opts.Prefix, "/")
	for _, ch := range c.out {
		if p != "" && ch.Path != p && !strings.HasPrefix(ch.Path, p+"/") {
			continue
		}
		if c.opts.Kinds != "" && !strings.ContainsRune(c.opts.Kinds, rune(ch.Kind)) {
			continue
		}
		out = append(out, ch)
	}
	return out
}

// dir compares two directories' children; it reports whether anything
// below changed.
func (c *cmp) dir(ea, eb *Node, rel string) (bool, error) {
	ka, err := c.a.ReadDir(ea)
	if err != nil {
		return false, err
	}
	kb, err := c.b.ReadDir(eb)
	if err != nil {
		return false, err
	}
	changed := false
	i, j := 0, 0
	for i < len(ka) || j < len(kb) {
		switch {
		case j >= len(kb) || i < len(ka) && ka[i].Name < kb[j].Name:
			if err := c.all(c.a, ka[i], rel+"/"+ka[i].Name, 'D'); err != nil {
				return false, err
			}
			i++
		case i >= len(ka) || kb[j].Name < ka[i].Name:
			if err := c.all(c.b, kb[j], rel+"/"+kb[j].Name, 'A'); err != nil {
				return false, err
			}
			j++
		default:
			p := rel + "/" + ka[i].Name
			ch, err := c.pair(ka[i], kb[j], p)
			if err != nil {
				return false, err
			}
			if ch {
				changed = true
			}
			i++
			j++
			continue
		}
		changed = true
	}
	return changed, nil
}

// all lists e and everything below it as added or deleted.
func (c *cmp) all(s Tree, e *Node, p string, kind byte) error {
	ch := Change{Kind: kind, Path: p}
	if kind == 'A' {
		ch.New = info(e)
	} else {
		ch.Old = info(e)
	}
	c.out = append(c.out, ch)
	if !e.IsDir() {
		return nil
	}
	return c.allBelow(s, e, p, kind)
}

func (c *cmp) pair(ea, eb *Node, p string) (bool, error) {
	var what []string
	ws, err := differs(ea, eb)
	if err != nil {
		return false, err
	}
	for _, w := range ws {
		if !c.opts.Ignore[w] {
			what = append(what, w)
		}
	}
	below := false
	if ea.IsDir() && eb.IsDir() {
		var err error
		if below, err = c.dir(ea, eb, p); err != nil {
			return false, err
		}
	} else if ea.IsDir() && !eb.IsDir() {
		// Replaced by a file: all it held is gone.
		if err := c.allBelow(c.a, ea, p, 'D'); err != nil {
			return false, err
		}
	} else if eb.IsDir() && !ea.IsDir() {
		if err := c.allBelow(c.b, eb, p, 'A'); err != nil {
			return false, err
		}
	}
	if len(what) == 0 && !below {
		return false, nil
	}
	c.out = append(c.out, Change{Kind: 'C', Path: p, What: what, ChildrenOnly: len(what) == 0, Old: info(ea), New: info(eb)})
	return true, nil
}

func (c *cmp) allBelow(s Tree, e *Node, p string, kind byte) error {
	kids, err := s.ReadDir(e)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := c.all(s, k, p+"/"+k.Name, kind); err != nil {
			return err
		}
	}
	return nil
}

func info(e *Node) *Info {
	in := &Info{Type: view.TypeName(e.Type), Mode: fmt.Sprintf("%04o", e.Mode&0o7777), UID: e.UID, GID: e.GID, Size: e.Size, Mtime: e.ModTime.UTC(), Link: e.Link}
	if e.digest != nil {
		in.SHA256 = *e.digest
	}
	return in
}

// differs names the fields that differ between two entries.
func differs(a, b *Node) ([]string, error) {
	if a.Type != b.Type {
		return []string{FieldType}, nil
	}
	var w []string
	if a.Type == fileindex.TypeReg {
		if a.Size != b.Size {
			w = append(w, FieldSize)
		} else {
			// Only equal sizes need the content compared (a local file
			// is hashed then).
			da, err := a.SHA256()
			if err != nil {
				return nil, err
			}
			db, err := b.SHA256()
			if err != nil {
				return nil, err
			}
			if da != db {
				w = append(w, FieldContent)
			}
		}
		if a.Size != b.Size {
			w = append(w, FieldContent)
		}
	}
	if a.Mode&0o7777 != b.Mode&0o7777 {
		w = append(w, FieldMode)
	}
	if a.HasOwner && b.HasOwner && (a.UID != b.UID || a.GID != b.GID) {
		w = append(w, FieldOwner)
	}
	if a.Type == fileindex.TypeSymlink && a.Link != b.Link {
		w = append(w, FieldTarget)
	}
	if (a.Type == fileindex.TypeChar || a.Type == fileindex.TypeBlock) && (a.DevMajor != b.DevMajor || a.DevMinor != b.DevMinor) {
		w = append(w, FieldDevice)
	}
	if a.HasOwner && b.HasOwner && !fileindex.SameXattrs(a.Xattrs, b.Xattrs) {
		w = append(w, FieldXattrs)
	}
	if !fileindex.SameMtime(a.ModTime, b.ModTime) {
		w = append(w, FieldMtime)
	}
	return w, nil
}
