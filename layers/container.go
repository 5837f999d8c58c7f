package layers

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/internal/textsafe"
)

// Change is one line of a change list.
type Change struct {
	Kind byte // 'A', 'C' or 'D'
	Path string
	// What lists what changed, for C.
	What []string
}

// ContainerChanges compares a container's changes layer with the image below it by content
// and metadata: the content-aware answer to "docker diff". A path is C
// only when something about it differs; an entry copied into the layer
// unchanged is not listed.
func ContainerChanges(pristine *Stack, changes *fileindex.Index) ([]Change, error) {
	var out []Change
	var walkDir func(dir uint32, dirPath string) error
	walkDir = func(dir uint32, dirPath string) error {
		first, n := changes.Children(dir)
		opaque := false
		present := map[string]bool{}
		for k := first; k < first+n; k++ {
			rec, err := changes.Record(k)
			if err != nil {
				return err
			}
			name := rec.Name()
			if name == OpaqueMarker {
				opaque = dir != 0 // overlayfs never makes a root opaque
				continue
			}
			present[name] = true
		}
		for k := first; k < first+n; k++ {
			rec, err := changes.Record(k)
			if err != nil {
				return err
			}
			name := rec.Name()
			p := JoinRel(dirPath, name)
			switch {
			case name == OpaqueMarker:
				continue
			case IsMarker(name):
				t, _ := WhiteoutTarget(name)
				target := JoinRel(dirPath, t)
				if _, ok, err := pristine.Lookup(target); err != nil {
					return err
				} else if ok {
					out = append(out, Change{Kind: 'D', Path: "/" + target})
				}
				continue
			}
			old, ok, err := pristine.Lookup(p)
			if err != nil {
				return err
			}
			under := ok && old.Rec.Type == fileindex.TypeDir && rec.Type == fileindex.TypeDir
			switch {
			case !ok:
				out = append(out, Change{Kind: 'A', Path: "/" + p})
			case rec.Has(fileindex.FlagImplicit):
				// Only a parent of something changed: not listed itself.
			default:
				if what := Differs(&old.Rec, &rec); len(what) > 0 {
					out = append(out, Change{Kind: 'C', Path: "/" + p, What: what})
				}
			}
			if rec.Type == fileindex.TypeDir {
				if err := walkDir(k, p); err != nil {
					return err
				}
			}
			if ok && old.Rec.Type == fileindex.TypeDir && !under {
				// A directory replaced by something else: all it held is gone.
				if err := deletedBelow(pristine, p, nil, &out); err != nil {
					return err
				}
			}
		}
		if opaque {
			if err := deletedBelow(pristine, dirPath, present, &out); err != nil {
				return err
			}
		}
		return nil
	}
	if changes.Len() == 0 {
		return nil, nil
	}
	if err := walkDir(0, ""); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// deletedBelow lists what lay under dir in the image and is gone: every
// child not in keep, and all below it.
func deletedBelow(pristine *Stack, dir string, keep map[string]bool, out *[]Change) error {
	kids, err := pristine.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, k := range kids {
		name := k.Rec.Name()
		if keep[name] {
			continue
		}
		p := JoinRel(dir, name)
		*out = append(*out, Change{Kind: 'D', Path: "/" + p})
		if k.Rec.Type == fileindex.TypeDir {
			if err := deletedBelow(pristine, p, nil, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// Differs lists what differs between an image's record and a container's
// (content, size, type, mode, owner, mtime, target, xattrs, device): what a
// C line of a change list says.
func Differs(old, cur *fileindex.Record) []string {
	var w []string
	if old.Type != cur.Type {
		return []string{"type"}
	}
	if old.Type == fileindex.TypeReg && (old.SHA256 != cur.SHA256 || old.Size != cur.Size) {
		if old.Size != cur.Size {
			w = append(w, "size")
		}
		if old.SHA256 != cur.SHA256 {
			w = append(w, "content")
		}
	}
	if old.Mode != cur.Mode {
		w = append(w, "mode")
	}
	if old.UID != cur.UID || old.GID != cur.GID {
		w = append(w, "owner")
	}
	if old.Type == fileindex.TypeSymlink && old.Linkname != cur.Linkname {
		w = append(w, "target")
	}
	if (old.Type == fileindex.TypeChar || old.Type == fileindex.TypeBlock) && (old.DevMajor != cur.DevMajor || old.DevMinor != cur.DevMinor) {
		w = append(w, "device")
	}
	if !fileindex.SameMtime(old.ModTime, cur.ModTime) {
		w = append(w, "mtime")
	}
	if !fileindex.SameXattrs(old.Xattrs, cur.Xattrs) {
		w = append(w, "xattrs")
	}
	return w
}

// FormatChanges renders a change list as docker diff prints it, one path
// per line; non-printable bytes in names are escaped (%q style) so that
// every line is one path.
func FormatChanges(cs []Change) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		fmt.Fprintf(&b, "%c %s\n", c.Kind, printablePath(c.Path))
	}
	return b.Bytes()
}

// printablePath shows a path as every text output of amber does: as it is
// when it prints as itself, else Go-quoted (control, bidi and invisible
// characters, bytes that are not UTF-8).
func printablePath(p string) string { return textsafe.Escape(p) }
