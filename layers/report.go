package layers

import (
	"fmt"
	"sort"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
)

// PathChange is one path a layer added, modified or deleted.
type PathChange struct {
	Kind byte   `json:"-"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	// Fate says what later layers did to it: "" (still visible),
	// "overwritten" or "deleted", and in which layer.
	Fate      string `json:"fate,omitempty"`
	FateLayer int    `json:"fate_layer,omitempty"`
	// LinkTo is set on a hard link: the name, in the same layer, of the
	// inode whose bytes it shares. Size is still the file's size, but
	// the bytes are the inode's and are counted once, under that name.
	LinkTo string `json:"hard_link_to,omitempty"`
	// LinkToEarlier: the entry linked to is an earlier one of LinkTo,
	// which the same layer writes again later (the link keeps the
	// earlier content, as tar and the engine extract it).
	LinkToEarlier bool `json:"hard_link_to_earlier,omitempty"`
	// VisibleAs is set on a file that later layers overwrite or delete
	// while another name of its inode still shows the same bytes in the
	// merged tree: they are not wasted.
	VisibleAs string `json:"visible_as,omitempty"`

	ino    uint32 // the inode's record in its layer, for names of linked inodes
	linked bool   // one of several names of an inode
	dir    bool   // a directory (A and C)
}

// Report is what one layer did.
type Report struct {
	Index   int          `json:"index"`
	Changes []PathChange `json:"changes"`
	Added   int          `json:"added"`
	Changed int          `json:"modified"`
	Deleted int          `json:"deleted"`
	// Wasted is the bytes of this layer's regular files that later layers
	// overwrite (with a file, link or directory) or delete (a whiteout of
	// the file or of a directory above it, an opaque directory, a parent
	// replaced by a file): shipped, but seen by no container. Each inode
	// counts once, whatever its number of hard-linked names, and not at
	// all while another of its names is still visible in the merged tree.
	// dive counts otherwise: it sums every version of a path that is a
	// leaf in two or more layers, the visible version included, and does
	// not count files deleted through a whiteout of their directory.
	Wasted int64 `json:"wasted_bytes"`
}

// Reports tells, for each layer of a stack (base first), what it added,
// modified (relative to the layers below) and deleted (whiteouts, opaque
// directories), and what became of each file later.
func Reports(ixs []*fileindex.Index) ([]Report, error) {
	var out []Report
	for n := range ixs {
		lr := &layerReport{ixs: ixs, n: n, below: &Stack{Indexes: ixs[:n]}, rep: Report{Index: n}}
		if ixs[n].Len() > 0 {
			if err := lr.walk(0, ""); err != nil {
				return nil, err
			}
		}
		if err := lr.fates(); err != nil {
			return nil, err
		}
		rep := lr.rep
		sort.SliceStable(rep.Changes, func(i, j int) bool { return rep.Changes[i].Path < rep.Changes[j].Path })
		rep.Wasted = wasted(rep.Changes)
		out = append(out, rep)
	}
	return out, nil
}

// layerReport builds the report of layer n of ixs.
type layerReport struct {
	ixs   []*fileindex.Index
	n     int
	below *Stack
	rep   Report
}

// add records a change of a path whose record r is in index ix.
func (lr *layerReport) add(ix *fileindex.Index, r *fileindex.Record, ch PathChange) error {
	if err := linkInfo(ix, r, &ch); err != nil {
		return err
	}
	lr.rep.Changes = append(lr.rep.Changes, ch)
	return nil
}

// walk lists what directory dir (at dirPath) of the layer changes.
func (lr *layerReport) walk(dir uint32, dirPath string) error {
	ix := lr.ixs[lr.n]
	first, cnt := ix.Children(dir)
	present := map[string]bool{}
	opaque := false
	for k := first; k < first+cnt; k++ {
		r, err := ix.Record(k)
		if err != nil {
			return err
		}
		present[r.Name()] = true
		opaque = opaque || r.Name() == OpaqueMarker
	}
	for k := first; k < first+cnt; k++ {
		r, err := ix.Record(k)
		if err != nil {
			return err
		}
		if err := lr.entry(k, &r, dirPath); err != nil {
			return err
		}
	}
	// A marker at the root hides nothing: overlayfs ignores it (see
	// Stack's walk).
	if !opaque || lr.n == 0 || dir == 0 {
		return nil
	}
	kids, err := lr.below.ReadDir(dirPath)
	if err != nil {
		return err
	}
	for _, kd := range kids {
		if !present[kd.Rec.Name()] {
			ch := PathChange{Kind: 'D', Path: "/" + JoinRel(dirPath, kd.Rec.Name()), Size: fileSize(&kd.Rec)}
			if err := lr.add(lr.ixs[kd.Layer], &kd.Rec, ch); err != nil {
				return err
			}
		}
	}
	return nil
}

// entry lists what record r (number k) of the layer, in dirPath, changes,
// and walks it if it is a directory.
func (lr *layerReport) entry(k uint32, r *fileindex.Record, dirPath string) error {
	ix, name := lr.ixs[lr.n], r.Name()
	p := JoinRel(dirPath, name)
	switch {
	case name == OpaqueMarker:
		return nil
	case IsMarker(name):
		t, _ := WhiteoutTarget(name)
		target := JoinRel(dirPath, t)
		old, ok, err := lr.below.Lookup(target)
		if err != nil || !ok || lr.n == 0 {
			return err
		}
		return lr.add(lr.ixs[old.Layer], &old.Rec, PathChange{Kind: 'D', Path: "/" + target, Size: fileSize(&old.Rec)})
	}
	if !r.Has(fileindex.FlagImplicit) {
		old, ok, err := lr.below.Lookup(p)
		if err != nil {
			return err
		}
		ch := PathChange{Kind: 'A', Path: "/" + p, Size: fileSize(r), dir: r.Type == fileindex.TypeDir}
		switch {
		case !ok || lr.n == 0:
			err = lr.add(ix, r, ch)
		case r.Type == fileindex.TypeDir && old.Rec.Type == fileindex.TypeDir && !dirDiffers(&old.Rec, r):
			// The directory is only on the way to something.
		default:
			ch.Kind = 'C'
			err = lr.add(ix, r, ch)
		}
		if err != nil {
			return err
		}
	}
	if r.Type == fileindex.TypeDir {
		return lr.walk(k, p)
	}
	return nil
}

// fates counts the changes and says what later layers did to what this
// one added or modified.
func (lr *layerReport) fates() error {
	rep, n, ixs := &lr.rep, lr.n, lr.ixs
	for i := range rep.Changes {
		ch := &rep.Changes[i]
		switch ch.Kind {
		case 'A':
			rep.Added++
		case 'C':
			rep.Changed++
		case 'D':
			rep.Deleted++
			continue
		}
		for m := n + 1; m < len(ixs); m++ {
			node, ok, err := (&Stack{Indexes: ixs[:m+1]}).Lookup(strings.TrimPrefix(ch.Path, "/"))
			if err != nil {
				return err
			}
			switch {
			case !ok:
				ch.Fate, ch.FateLayer = "deleted", m
			case !ch.dir && node.Layer != n:
				// Anything a later layer puts at a file's path hides
				// it, a directory too (an implied one included).
				ch.Fate, ch.FateLayer = "overwritten", m
			case ch.dir && node.Layer == m && node.Rec.Type != fileindex.TypeDir:
				// A later directory is merged with this one; only
				// something else replaces it.
				ch.Fate, ch.FateLayer = "overwritten", m
			default:
				continue
			}
			break
		}
	}
	return nil
}

// JoinRel joins a name to a path inside a tree ("" is the root).
func JoinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// linkInfo marks a change whose record is one of several names of an
// inode (a hard link, or the file that hard links point to), and names the
// inode on a hard link.
func linkInfo(ix *fileindex.Index, r *fileindex.Record, ch *PathChange) error {
	if r.Type != fileindex.TypeReg || (r.Ino == r.Index && r.Nlink < 2) {
		return nil
	}
	ch.ino, ch.linked = r.Ino, true
	if r.Ino != r.Index {
		p, err := ix.Path(r.Ino)
		if err != nil {
			return fmt.Errorf("hard link %s: %w", ch.Path, err)
		}
		ch.LinkTo = "/" + p
		target, err := ix.Record(r.Ino)
		if err != nil {
			return fmt.Errorf("hard link %s: %w", ch.Path, err)
		}
		ch.LinkToEarlier = target.Has(fileindex.FlagShadowed)
	}
	return nil
}

// wasted sums the bytes of a layer's changes (sorted by path) that later
// layers overwrite or delete: each inode once, and not an inode that
// another of its names still shows. It marks those names VisibleAs.
func wasted(changes []PathChange) int64 {
	type inode struct {
		size    int64
		gone    bool   // some name of it is overwritten or deleted
		visible string // a name that still shows it
	}
	var total int64
	inodes := map[uint32]*inode{}
	for _, ch := range changes {
		switch {
		case ch.Kind == 'D':
		case !ch.linked:
			if ch.Fate != "" {
				total += ch.Size
			}
		default:
			in := inodes[ch.ino]
			if in == nil {
				in = &inode{}
				inodes[ch.ino] = in
			}
			in.size = max(in.size, ch.Size)
			if ch.Fate != "" {
				in.gone = true
			} else if in.visible == "" {
				in.visible = ch.Path
			}
		}
	}
	for i := range changes {
		ch := &changes[i]
		if ch.Kind != 'D' && ch.linked && ch.Fate != "" && ch.LinkTo == "" {
			ch.VisibleAs = inodes[ch.ino].visible
		}
	}
	for _, in := range inodes {
		if in.gone && in.visible == "" {
			total += in.size
		}
	}
	return total
}

func fileSize(r *fileindex.Record) int64 {
	if r.Type == fileindex.TypeReg {
		return r.Size
	}
	return 0
}

// DirDiffers reports whether a directory's own metadata changed between
// two records of it, as layers counts a modified directory (its mtime,
// which every write below it moves, does not count).
func DirDiffers(a, b *fileindex.Record) bool { return dirDiffers(a, b) }

func dirDiffers(a, b *fileindex.Record) bool {
	return a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || !fileindex.SameXattrs(a.Xattrs, b.Xattrs)
}

// Touch is one layer's action on a path, for blame.
type Touch struct {
	Layer int    `json:"layer"`
	Kind  byte   `json:"-"`
	How   string `json:"how"` // added, modified, deleted (whiteout, opaque directory, replaced parent)
}

// Blame lists which layers touched path p, base first.
func Blame(ixs []*fileindex.Index, p string) ([]Touch, error) {
	p = strings.Trim(p, "/")
	var out []Touch
	prev := false
	for n := range ixs {
		now := &Stack{Indexes: ixs[:n+1]}
		node, ok, err := now.Lookup(p)
		if err != nil {
			return nil, err
		}
		switch {
		case ok && node.Layer == n && !(node.Rec.Type == fileindex.TypeDir && node.Rec.Has(fileindex.FlagImplicit)):
			how, kind := "added", byte('A')
			if prev {
				how, kind = "modified", 'C'
			}
			out = append(out, Touch{Layer: n, Kind: kind, How: how})
		case !ok && prev:
			out = append(out, Touch{Layer: n, Kind: 'D', How: "deleted"})
		}
		prev = ok
	}
	return out, nil
}
