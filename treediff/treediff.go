package treediff

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// Side is one tree: a directory entry of a view.
type Side struct {
	V    *view.View
	Root *view.Entry
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
func Compare(a, b Side, opts Options) ([]Change, error) {
	c := &cmp{a: a, b: b, opts: opts}
	if _, err := c.dir(a.Root, b.Root, ""); err != nil {
		return nil, err
	}
	sort.Slice(c.out, func(i, j int) bool { return c.out[i].Path < c.out[j].Path })
	return c.filter(), nil
}

type cmp struct {
	a, b Side
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
func (c *cmp) dir(ea, eb *view.Entry, rel string) (bool, error) {
	ka, err := c.a.V.ReadDir(ea.Path)
	if err != nil {
		return false, err
	}
	kb, err := c.b.V.ReadDir(eb.Path)
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
func (c *cmp) all(s Side, e *view.Entry, p string, kind byte) error {
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
	kids, err := s.V.ReadDir(e.Path)
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

func (c *cmp) pair(ea, eb *view.Entry, p string) (bool, error) {
	var what []string
	for _, w := range differs(ea, eb) {
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

func (c *cmp) allBelow(s Side, e *view.Entry, p string, kind byte) error {
	kids, err := s.V.ReadDir(e.Path)
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

func info(e *view.Entry) *Info {
	in := &Info{Type: typeName(e.Type), Mode: fmt.Sprintf("%04o", e.Mode&0o7777), Size: e.Size, Mtime: e.ModTime.UTC(), SHA256: e.SHA256()}
	if e.Type != manifest.TypeReg {
		in.Size = 0
	}
	if n := e.Node; n != nil {
		in.UID, in.GID = n.Rec.UID, n.Rec.GID
		if e.Type == manifest.TypeSymlink {
			in.Link = n.Rec.Linkname
		}
	}
	return in
}

func typeName(t byte) string {
	switch t {
	case manifest.TypeDir:
		return "dir"
	case manifest.TypeSymlink:
		return "symlink"
	case manifest.TypeChar:
		return "char"
	case manifest.TypeBlock:
		return "block"
	case manifest.TypeFifo:
		return "fifo"
	}
	return "file"
}

// differs names the fields that differ between two entries.
func differs(a, b *view.Entry) []string {
	if a.Type != b.Type {
		return []string{FieldType}
	}
	var w []string
	if a.Type == manifest.TypeReg {
		if a.Size != b.Size {
			w = append(w, FieldSize)
		}
		if a.SHA256() != b.SHA256() {
			w = append(w, FieldContent)
		}
	}
	if a.Mode&0o7777 != b.Mode&0o7777 {
		w = append(w, FieldMode)
	}
	ra, rb := rec(a), rec(b)
	if ra != nil && rb != nil {
		if ra.UID != rb.UID || ra.GID != rb.GID {
			w = append(w, FieldOwner)
		}
		if a.Type == manifest.TypeSymlink && ra.Linkname != rb.Linkname {
			w = append(w, FieldTarget)
		}
		if (a.Type == manifest.TypeChar || a.Type == manifest.TypeBlock) && (ra.DevMajor != rb.DevMajor || ra.DevMinor != rb.DevMinor) {
			w = append(w, FieldDevice)
		}
		if !sameXattrs(ra.Xattrs, rb.Xattrs) {
			w = append(w, FieldXattrs)
		}
	}
	if !sameTime(a.ModTime, b.ModTime) {
		w = append(w, FieldMtime)
	}
	return w
}

func rec(e *view.Entry) *manifest.Record {
	if e.Node == nil {
		return nil
	}
	return &e.Node.Rec
}

// sameTime compares at whole seconds when either side has no more (the
// engine's export stream, docker build layers).
func sameTime(a, b time.Time) bool {
	if a.Nanosecond() == 0 || b.Nanosecond() == 0 {
		return a.Unix() == b.Unix()
	}
	return a.Equal(b)
}

func sameXattrs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
