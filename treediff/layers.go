package treediff

import (
	"sort"
	"strings"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// LayerChange is one path a layer added, modified or deleted.
type LayerChange struct {
	Kind byte   `json:"-"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	// Fate says what later layers did to it: "" (still visible),
	// "overwritten" or "deleted", and in which layer.
	Fate      string `json:"fate,omitempty"`
	FateLayer int    `json:"fate_layer,omitempty"`
}

// LayerReport is what one layer did.
type LayerReport struct {
	Index   int           `json:"index"`
	Changes []LayerChange `json:"changes"`
	Added   int           `json:"added"`
	Changed int           `json:"modified"`
	Deleted int           `json:"deleted"`
	// Wasted counts the bytes of this layer's files that later layers
	// overwrite or delete (as dive counts it).
	Wasted int64 `json:"wasted_bytes"`
}

// Layers reports, for each layer of a stack (base first), what it added,
// modified (relative to the layers below) and deleted (whiteouts, opaque
// directories), and what became of each file later.
func Layers(ixs []*manifest.Index) ([]LayerReport, error) {
	var out []LayerReport
	for n := range ixs {
		rep := LayerReport{Index: n}
		below := &view.Layered{Indexes: ixs[:n]}
		ix := ixs[n]
		var walk func(dir uint32, dirPath string) error
		walk = func(dir uint32, dirPath string) error {
			first, cnt := ix.Children(dir)
			present := map[string]bool{}
			opaque := false
			for k := first; k < first+cnt; k++ {
				r, err := ix.Record(k)
				if err != nil {
					return err
				}
				name := r.Name()
				present[name] = true
				if name == ".wh..wh..opq" {
					opaque = true
				}
			}
			for k := first; k < first+cnt; k++ {
				r, err := ix.Record(k)
				if err != nil {
					return err
				}
				name := r.Name()
				p := joinRel(dirPath, name)
				switch {
				case name == ".wh..wh..opq":
					continue
				case strings.HasPrefix(name, ".wh."):
					target := joinRel(dirPath, strings.TrimPrefix(name, ".wh."))
					if old, ok, err := below.Lookup(target); err != nil {
						return err
					} else if ok && n > 0 {
						rep.Changes = append(rep.Changes, LayerChange{Kind: 'D', Path: "/" + target, Size: fileSize(&old.Rec)})
					}
					continue
				}
				if !r.Has(manifest.FlagImplicit) {
					old, ok, err := below.Lookup(p)
					if err != nil {
						return err
					}
					if n == 0 {
						ok = false
					}
					switch {
					case !ok:
						rep.Changes = append(rep.Changes, LayerChange{Kind: 'A', Path: "/" + p, Size: fileSize(&r)})
					case r.Type == manifest.TypeDir && old.Rec.Type == manifest.TypeDir && !dirDiffers(&old.Rec, &r):
						// The directory is only on the way to something.
					default:
						rep.Changes = append(rep.Changes, LayerChange{Kind: 'C', Path: "/" + p, Size: fileSize(&r)})
					}
				}
				if r.Type == manifest.TypeDir {
					if err := walk(k, p); err != nil {
						return err
					}
				}
			}
			if opaque && n > 0 {
				kids, err := below.ReadDir(dirPath)
				if err != nil {
					return err
				}
				for _, kd := range kids {
					if !present[kd.Rec.Name()] {
						rep.Changes = append(rep.Changes, LayerChange{Kind: 'D', Path: "/" + joinRel(dirPath, kd.Rec.Name()), Size: fileSize(&kd.Rec)})
					}
				}
			}
			return nil
		}
		if ix.Len() > 0 {
			if err := walk(0, ""); err != nil {
				return nil, err
			}
		}
		// What later layers did to what this one added or modified.
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
				node, ok, err := (&view.Layered{Indexes: ixs[:m+1]}).Lookup(strings.TrimPrefix(ch.Path, "/"))
				if err != nil {
					return nil, err
				}
				if !ok {
					ch.Fate, ch.FateLayer = "deleted", m
				} else if node.Layer == m && !(node.Rec.Type == manifest.TypeDir && node.Rec.Has(manifest.FlagImplicit)) {
					if node.Rec.Type == manifest.TypeDir {
						continue
					}
					ch.Fate, ch.FateLayer = "overwritten", m
				} else {
					continue
				}
				rep.Wasted += ch.Size
				break
			}
		}
		sort.SliceStable(rep.Changes, func(i, j int) bool { return rep.Changes[i].Path < rep.Changes[j].Path })
		out = append(out, rep)
	}
	return out, nil
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func fileSize(r *manifest.Record) int64 {
	if r.Type == manifest.TypeReg {
		return r.Size
	}
	return 0
}

func dirDiffers(a, b *manifest.Record) bool {
	return a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || !manifest.SameXattrs(a.Xattrs, b.Xattrs)
}

// Touch is one layer's action on a path, for blame.
type Touch struct {
	Layer int    `json:"layer"`
	Kind  byte   `json:"-"`
	How   string `json:"how"` // added, modified, deleted (whiteout, opaque directory, replaced parent)
}

// Blame lists which layers touched path p, base first.
func Blame(ixs []*manifest.Index, p string) ([]Touch, error) {
	p = strings.Trim(p, "/")
	var out []Touch
	prev := false
	for n := range ixs {
		now := &view.Layered{Indexes: ixs[:n+1]}
		node, ok, err := now.Lookup(p)
		if err != nil {
			return nil, err
		}
		switch {
		case ok && node.Layer == n && !(node.Rec.Type == manifest.TypeDir && node.Rec.Has(manifest.FlagImplicit)):
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
