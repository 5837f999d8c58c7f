// Reading the layout: a directory's children and listing from its
// entry (no walk from the top), file content, and walks.

package view

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
)

// Child resolves name in directory e, reusing e's tree (no walk from the
// top): what a file system lookup needs.
func (v *View) Child(e *Entry, name string) (*Entry, error) {
	if !e.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNotDir, e.Path)
	}
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, e.Path, name)
	}
	if e.Node == nil {
		p := name
		if e.Path != "" {
			p = e.Path + "/" + name
		}
		return v.Stat(p)
	}
	rel := name
	if e.rel != "" {
		rel = e.rel + "/" + name
	}
	n, ok, err := e.tree.Lookup(rel)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, e.Path, name)
	}
	ce := v.nodeEntry(e.tree, e.digests, e.ViewID, e.Path+"/"+name, rel, &n)
	ce.first = e.first
	return ce, nil
}

// ReadDir lists a directory of the view.
func (v *View) ReadDir(p string) ([]*Entry, error) {
	e, err := v.Stat(p)
	if err != nil {
		return nil, err
	}
	return v.ReadDirOf(e)
}

// ReadDirOf lists directory e, reusing its tree (no walk from the top):
// what a file system's READDIR needs.
func (v *View) ReadDirOf(e *Entry) ([]*Entry, error) {
	if !e.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNotDir, e.Path)
	}
	join := func(n string) string {
		if e.Path == "" {
			return n
		}
		return e.Path + "/" + n
	}
	if e.Node != nil {
		nodes, err := e.tree.ReadDir(e.rel)
		if err != nil {
			return nil, err
		}
		out := make([]*Entry, 0, len(nodes))
		// The entries point into nodes: one allocation for the directory.
		for i := range nodes {
			n := &nodes[i]
			ce := v.nodeEntry(e.tree, e.digests, e.ViewID, join(n.Rec.Name()), n.Rec.Path, n)
			ce.first = e.first
			out = append(out, ce)
		}
		return out, nil
	}
	_, names, err := v.route(clean(e.Path))
	if err != nil {
		return nil, err
	}
	out := make([]*Entry, 0, len(names))
	for _, n := range names {
		ce, err := v.Stat(join(n))
		if err != nil {
			return nil, err
		}
		out = append(out, ce)
	}
	return out, nil
}

// Open returns the content of a regular file.
func (v *View) Open(e *Entry) (io.Reader, error) {
	if e.Type != fileindex.TypeReg {
		return nil, fmt.Errorf("%s is not a regular file", e.Path)
	}
	if e.Member != nil {
		return v.A.Section(e.offset, e.Size), nil
	}
	if e.Virtual {
		return bytes.NewReader(e.data), nil
	}
	return v.A.Content(e.LayerDigest(), &e.Node.Rec)
}

// Walk calls fn for e and, if it is a directory, everything below it,
// depth first in name order.
func (v *View) Walk(e *Entry, fn func(e *Entry) error) error {
	if err := fn(e); err != nil {
		return err
	}
	if !e.IsDir() {
		return nil
	}
	kids, err := v.ReadDir(e.Path)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := v.Walk(k, fn); err != nil {
			return err
		}
	}
	return nil
}
