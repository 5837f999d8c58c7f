package layers

import (
	"sort"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
)

// Stack is a stack of layer indexes, base first, merged as an OCI runtime
// would (OCI image spec, "Applying Changesets"; overlayfs for what the spec
// leaves open, such as an opaque marker at a layer's root).
type Stack struct {
	Indexes []*fileindex.Index
	// Raw shows a single layer as stored: no merging, markers visible.
	Raw bool
}

// Node is a visible entry: the record that shows it and the layer it is in.
type Node struct {
	Layer int
	Rec   fileindex.Record
}

type walkState int

const (
	absent  walkState = iota // not in this layer: look lower
	found                    // this layer has it
	stopped                  // deleted or hidden here: lower layers do not count
)

func split(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// walk resolves comps in one layer. opaque reports an opaque marker in a
// directory on the way (the target included): then lower layers add
// nothing under it. A marker at a layer's root is not one: the kernel's
// overlayfs never makes its root opaque, and docker export of such an
// image shows every lower layer (a few bytes must not hide an implant).
func walk(ix *fileindex.Index, comps []string) (rec uint32, st walkState, opaque bool, err error) {
	cur := uint32(0)
	for j, c := range comps {
		if _, ok := ix.Child(cur, OpaqueMarker); ok && cur != 0 {
			opaque = true
		}
		if child, ok := ix.Child(cur, c); ok {
			if j == len(comps)-1 {
				if _, ok := ix.Child(child, OpaqueMarker); ok {
					opaque = true
				}
				return child, found, opaque, nil
			}
			typ, err := ix.Type(child)
			if err != nil {
				return 0, stopped, opaque, err
			}
			if typ != fileindex.TypeDir {
				// A file here hides anything a lower layer had below it.
				return 0, stopped, opaque, nil
			}
			cur = child
			continue
		}
		// Whiteouts and opaque markers hide lower layers only: an entry in
		// this layer (checked above) wins over its own layer's markers.
		if _, ok := ix.Child(cur, WhiteoutName(c)); ok || opaque {
			return 0, stopped, opaque, nil
		}
		return 0, absent, opaque, nil
	}
	return 0, found, opaque, nil // the root: never opaque
}

// Lookup finds the visible entry at path p ("" is the root).
func (l *Stack) Lookup(p string) (Node, bool, error) {
	if l.Raw {
		ix := l.Indexes[0]
		i, ok := ix.Lookup(strings.Trim(p, "/"))
		if !ok {
			return Node{}, false, nil
		}
		rec, err := ix.Record(i)
		return Node{Rec: rec}, err == nil, err
	}
	comps := split(p)
	for _, c := range comps {
		if IsMarker(c) {
			return Node{}, false, nil // markers are not part of a merged view
		}
	}
	var got *Node
	for i := len(l.Indexes) - 1; i >= 0; i-- {
		ix := l.Indexes[i]
		r, st, opaque, err := walk(ix, comps)
		if err != nil {
			return Node{}, false, err
		}
		switch st {
		case stopped:
			if got != nil {
				return *got, true, nil
			}
			return Node{}, false, nil
		case absent:
			continue
		}
		rec, err := ix.Record(r)
		if err != nil {
			return Node{}, false, err
		}
		if got == nil {
			got = &Node{Layer: i, Rec: rec}
			if !(rec.Type == fileindex.TypeDir && rec.Has(fileindex.FlagImplicit)) {
				return *got, true, nil
			}
			// An implied directory: its metadata is the nearest real
			// directory entry below, if the path goes on existing there.
			if opaque {
				return *got, true, nil
			}
			continue
		}
		if rec.Type != fileindex.TypeDir {
			return *got, true, nil
		}
		if !rec.Has(fileindex.FlagImplicit) {
			return Node{Layer: i, Rec: rec}, true, nil
		}
		if opaque {
			return *got, true, nil
		}
	}
	if got != nil {
		return *got, true, nil
	}
	return Node{}, false, nil
}

// ReadDir lists the visible children of the directory at p, sorted by name.
func (l *Stack) ReadDir(p string) ([]Node, error) {
	if l.Raw {
		ix := l.Indexes[0]
		d, ok := ix.Lookup(strings.Trim(p, "/"))
		if !ok {
			return nil, nil
		}
		first, n := ix.Children(d)
		out := make([]Node, 0, n)
		for k := first; k < first+n; k++ {
			rec, err := ix.Record(k)
			if err != nil {
				return nil, err
			}
			out = append(out, Node{Rec: rec})
		}
		return out, nil
	}
	comps := split(p)
	seen := map[string]bool{}
	deleted := map[string]bool{}
	var out []Node
	for i := len(l.Indexes) - 1; i >= 0; i-- {
		ix := l.Indexes[i]
		d, st, pathOpaque, err := walk(ix, comps)
		if err != nil {
			return nil, err
		}
		if st == stopped {
			break
		}
		if st == absent {
			continue
		}
		drec, err := ix.Record(d)
		if err != nil {
			return nil, err
		}
		if drec.Type != fileindex.TypeDir {
			break
		}
		first, n := ix.Children(d)
		if out == nil {
			out = make([]Node, 0, n)
		}
		var wh []string
		opaque := false
		for k := first; k < first+n; k++ {
			rec, err := ix.Record(k)
			if err != nil {
				return nil, err
			}
			name := rec.Name()
			switch {
			case name == OpaqueMarker:
				opaque = d != 0 // the root is never opaque (see walk)
				continue
			case IsMarker(name):
				t, _ := WhiteoutTarget(name)
				wh = append(wh, t)
				continue
			}
			if seen[name] || deleted[name] {
				continue
			}
			seen[name] = true
			out = append(out, Node{Layer: i, Rec: rec})
		}
		for _, w := range wh {
			deleted[w] = true
		}
		if opaque || pathOpaque {
			break
		}
	}
	// Implied directories take their metadata from below, as Lookup does.
	for k := range out {
		if out[k].Rec.Type == fileindex.TypeDir && out[k].Rec.Has(fileindex.FlagImplicit) {
			if n, ok, err := l.Lookup(out[k].Rec.Path); err == nil && ok {
				out[k] = n
			}
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Rec.Name() < out[b].Rec.Name() })
	return out, nil
}
