package browse

// The right pane's tree: a directory's children are read when it is
// unfolded (never the whole layer), and in a single layer they stay in the
// index: a row is decoded when it is drawn.

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/layers"
)

// Marks of an entry against the layers below it, readable without colour.
const (
	markAdded    = '+'
	markModified = '~'
	markRemoved  = '-'
	markSame     = ' '
)

// row is one entry of the tree as drawn.
type row struct {
	name string // last component (or the path, in a filtered list)
	rel  string // path inside the tree, no leading slash
	rec  fileindex.Record
	// layer is the artifact's layer whose record rec is (-1: a member
	// file of a container, read through the view).
	layer int
	mark  byte
	note  string // what the mark means when it is not plain
	view  string // view path of a member file
}

func (r *row) isDir() bool { return r.rec.Type == fileindex.TypeDir }

// lister gives a directory's children one at a time: the rows of a
// single layer are decoded from the index only when asked for.
type lister interface {
	Len() int
	At(i int) (row, error)
}

type rowList []row

func (l rowList) Len() int              { return len(l) }
func (l rowList) At(i int) (row, error) { return l[i], nil }

// layerList is a range of a layer index's records (a directory's
// children), or the records picked out by idx (changes only, a filter).
type layerList struct {
	t     *tree
	first uint32
	n     int
	idx   []uint32
}

func (l *layerList) Len() int {
	if l.idx != nil {
		return len(l.idx)
	}
	return l.n
}

func (l *layerList) At(i int) (row, error) {
	k := l.first + uint32(i)
	if l.idx != nil {
		k = l.idx[i]
	}
	rec, err := l.t.ix().Record(k)
	if err != nil {
		return row{}, err
	}
	return l.t.layerRow(rec)
}

// dirNode is an unfolded directory: its children, and those of its
// unfolded children (only these are kept).
type dirNode struct {
	parent *dirNode
	rel    string
	list   lister
	open   map[int]*dirNode
	order  []int // keys of open, sorted
	total  int   // rows below it: its children and theirs, unfolded
}

// at finds visible row i below d: the directory holding it, its child
// index there and its depth.
func (d *dirNode) at(i, depth int) (*dirNode, int, int) {
	prev := 0
	for _, c := range d.order {
		if gap := c - prev; i < gap {
			return d, prev + i, depth
		} else {
			i -= gap
		}
		if i == 0 {
			return d, c, depth
		}
		i--
		sub := d.open[c]
		if i < sub.total {
			return sub.at(i, depth+1)
		}
		i -= sub.total
		prev = c + 1
	}
	return d, prev + i, depth
}

// grow adds n rows to d and the directories above it.
func (d *dirNode) grow(n int) {
	for x := d; x != nil; x = x.parent {
		x.total += n
	}
}

// tree is what the right pane shows: one layer of an artifact alone, or
// the stage up to it, or a container's memory files.
type tree struct {
	art         *artInfo
	layer       int
	stage       bool
	changesOnly bool
	below, cur  *layers.Stack
	root        *dirNode
	// filter, when set, replaces the tree by a flat list of matches.
	filter   string
	filtered lister
}

func newTree(a *artInfo, layer int, stage, changesOnly bool) (*tree, error) {
	t := &tree{art: a, layer: layer, stage: stage, changesOnly: changesOnly}
	if a.memory != "" {
		return t, t.reset()
	}
	t.below = &layers.Stack{Indexes: a.ixs[:layer]}
	t.cur = &layers.Stack{Indexes: a.ixs[:layer+1]}
	return t, t.reset()
}

func (t *tree) ix() *fileindex.Index { return t.art.ixs[t.layer] }

func (t *tree) reset() error {
	l, err := t.children("")
	if err != nil {
		return err
	}
	t.root = &dirNode{list: l, open: map[int]*dirNode{}, total: l.Len()}
	return nil
}

// rows is the number of visible rows.
func (t *tree) rows() int {
	if t.filtered != nil {
		return t.filtered.Len()
	}
	return t.root.total
}

// rowAt returns visible row i, its depth, and whether it is unfolded.
func (t *tree) rowAt(i int) (row, int, bool, error) {
	if i < 0 || i >= t.rows() {
		return row{}, 0, false, errNoRow
	}
	if t.filtered != nil {
		r, err := t.filtered.At(i)
		return r, 0, false, err
	}
	d, c, depth := t.root.at(i, 0)
	r, err := d.list.At(c)
	_, open := d.open[c]
	return r, depth, open, err
}

// errNoRow: a key on an empty pane.
var errNoRow = errors.New("nothing here")

// toggle folds or unfolds the directory at visible row i.
func (t *tree) toggle(i int) error {
	if t.filtered != nil || i < 0 || i >= t.rows() {
		return nil
	}
	d, c, _ := t.root.at(i, 0)
	if sub, ok := d.open[c]; ok {
		delete(d.open, c)
		k := sort.SearchInts(d.order, c)
		d.order = append(d.order[:k], d.order[k+1:]...)
		d.grow(-sub.total)
		return nil
	}
	r, err := d.list.At(c)
	if err != nil || !r.isDir() {
		return err
	}
	var l lister
	if r.mark == markRemoved {
		l, err = t.removedChildren(r)
	} else {
		l, err = t.children(r.rel)
	}
	if err != nil {
		return err
	}
	sub := &dirNode{parent: d, rel: r.rel, list: l, open: map[int]*dirNode{}}
	d.open[c] = sub
	k := sort.SearchInts(d.order, c)
	d.order = append(d.order[:k], append([]int{c}, d.order[k:]...)...)
	sub.grow(l.Len())
	return nil
}

// children lists directory rel of the tree.
func (t *tree) children(rel string) (lister, error) {
	switch {
	case t.art.memory != "":
		return t.art.memberRows(t.art.memory, rel)
	case t.stage:
		return t.stageChildren(rel)
	}
	ix := t.ix()
	d, ok := ix.Lookup(rel)
	if !ok {
		return rowList{}, nil
	}
	first, n := ix.Children(d)
	l := &layerList{t: t, first: first, n: int(n)}
	if !t.changesOnly {
		return l, nil
	}
	// Changes only: the unchanged entries of the layer (directories
	// holding no change) are left out; reading each child once.
	l.idx = []uint32{}
	for k := first; k < first+n; k++ {
		rec, err := ix.Record(k)
		if err != nil {
			return nil, err
		}
		r, err := t.layerRow(rec)
		if err != nil {
			return nil, err
		}
		if r.mark != markSame || rec.NumChild > 0 {
			l.idx = append(l.idx, k)
		}
	}
	return l, nil
}

// removedChildren lists what a directory this layer removed held below:
// removed too, and still evidence in the layers that have it.
func (t *tree) removedChildren(r row) (lister, error) {
	if t.below == nil || r.layer < 0 {
		return rowList{}, nil
	}
	nodes, err := t.below.ReadDir(r.rel)
	if err != nil {
		return nil, err
	}
	out := make(rowList, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, row{name: n.Rec.Name(), rel: n.Rec.Path, rec: n.Rec, layer: n.Layer, mark: markRemoved, note: "removed with its directory"})
	}
	return out, nil
}

// layerRow marks record rec of the tree's layer against the layers below.
func (t *tree) layerRow(rec fileindex.Record) (row, error) {
	r := row{name: rec.Name(), rel: rec.Path, rec: rec, layer: t.layer}
	dir := path.Dir(rec.Path)
	if dir == "." {
		dir = ""
	}
	switch name := rec.Name(); {
	case name == layers.OpaqueMarker:
		r.mark, r.note = markRemoved, "opaque directory: what lower layers had here is hidden"
		return r, nil
	case layers.IsMarker(name):
		target, _ := layers.WhiteoutTarget(name)
		r.name, r.rel, r.mark, r.note = target, layers.JoinRel(dir, target), markRemoved, "removed (whiteout "+name+")"
		// The removed version, from below: its content is still evidence.
		if n, ok, err := t.below.Lookup(r.rel); err != nil {
			return r, err
		} else if ok {
			r.rec, r.layer = n.Rec, n.Layer
		} else {
			r.note = "whiteout of a path no lower layer has (" + name + ")"
		}
		return r, nil
	}
	m, err := t.markBelow(&rec)
	r.mark = m
	return r, err
}

// markBelow marks a record of the top layer against the layers below.
func (t *tree) markBelow(rec *fileindex.Record) (byte, error) {
	n, ok, err := t.below.Lookup(rec.Path)
	switch {
	case err != nil:
		return markSame, err
	case !ok:
		return markAdded, nil
	case rec.Type == fileindex.TypeDir && n.Rec.Type == fileindex.TypeDir:
		if !layers.DirDiffers(&n.Rec, rec) || rec.Has(fileindex.FlagImplicit) {
			return markSame, nil
		}
	}
	return markModified, nil
}

// stageChildren lists directory rel of the layers merged up to the
// tree's layer, with what this layer removed from it.
func (t *tree) stageChildren(rel string) (lister, error) {
	nodes, err := t.cur.ReadDir(rel)
	if err != nil {
		return nil, err
	}
	var out rowList
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		r := row{name: n.Rec.Name(), rel: n.Rec.Path, rec: n.Rec, layer: n.Layer, mark: markSame}
		seen[r.name] = true
		if n.Layer == t.layer {
			if r.mark, err = t.markBelow(&n.Rec); err != nil {
				return nil, err
			}
		}
		if t.changesOnly && r.mark == markSame {
			// A directory this layer changed something below.
			if _, ok := t.ix().Lookup(r.rel); !(r.isDir() && ok) {
				continue
			}
		}
		out = append(out, r)
	}
	if t.layer > 0 {
		// What was below and is not any more: whiteouts, opaque
		// directories, a directory replaced.
		gone, err := t.below.ReadDir(rel)
		if err != nil {
			return nil, err
		}
		for _, n := range gone {
			if name := n.Rec.Name(); !seen[name] {
				out = append(out, row{name: name, rel: n.Rec.Path, rec: n.Rec, layer: n.Layer, mark: markRemoved, note: "removed in this layer"})
			}
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out, nil
}

// matcher compiles a filter: "re:EXPR" is a regular expression, a
// pattern with * ? or [ a glob (of the whole path from / or of the last
// component), anything else a substring of the path.
func matcher(p string) (func(string) bool, error) {
	if e, ok := strings.CutPrefix(p, "re:"); ok {
		re, err := regexp.Compile(e)
		if err != nil {
			return nil, fmt.Errorf("filter %q: %w", p, err)
		}
		return func(s string) bool { return re.MatchString("/" + s) }, nil
	}
	if strings.ContainsAny(p, "*?[") {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("filter %q: %w", p, err)
		}
		return func(s string) bool {
			full, _ := path.Match(p, "/"+s)
			base, _ := path.Match(p, path.Base(s))
			return full || base
		}, nil
	}
	return func(s string) bool { return strings.Contains("/"+s, p) }, nil
}

// setFilter replaces the tree by the paths that match p ("" clears it).
// A single layer keeps the matches as record numbers; a stage as paths.
func (t *tree) setFilter(p string) error {
	t.filter, t.filtered = "", nil
	if p == "" {
		return nil
	}
	match, err := matcher(p)
	if err != nil {
		return err
	}
	if t.art.memory != "" {
		l, err := t.art.memberRows(t.art.memory, "")
		if err != nil {
			return err
		}
		var out rowList
		for i := 0; i < l.Len(); i++ {
			if r, _ := l.At(i); match(r.rel) {
				out = append(out, r)
			}
		}
		t.filter, t.filtered = p, out
		return nil
	}
	if !t.stage {
		ix := t.ix()
		l := &layerList{t: t, idx: []uint32{}}
		for k := uint32(1); k < ix.TreeLen(); k++ {
			p, err := ix.Path(k)
			if err != nil {
				return err
			}
			if match(p) {
				l.idx = append(l.idx, k)
			}
		}
		t.filter, t.filtered = p, &pathRows{l: l}
		return nil
	}
	// The matches of every layer, packed in one buffer (a million paths
	// as Go strings in a set cost more than the 200 MB amber browse may
	// use), then sorted and deduplicated when several layers have some.
	ps := &stagePaths{t: t}
	layersWith := 0
	for n := 0; n <= t.layer; n++ {
		ix := t.art.ixs[n]
		before := len(ps.ends)
		for k := uint32(1); k < ix.TreeLen(); k++ {
			q, err := ix.Path(k)
			if err != nil {
				return err
			}
			if !layers.IsMarker(path.Base(q)) && match(q) {
				ps.buf = append(ps.buf, q...)
				ps.ends = append(ps.ends, uint32(len(ps.buf)))
			}
		}
		if len(ps.ends) > before {
			layersWith++
		}
	}
	ps.order = make([]uint32, len(ps.ends))
	for i := range ps.order {
		ps.order[i] = uint32(i)
	}
	if layersWith > 1 {
		sort.Slice(ps.order, func(a, b int) bool { return bytes.Compare(ps.path(ps.order[a]), ps.path(ps.order[b])) < 0 })
		out := ps.order[:0]
		for i, k := range ps.order {
			if i == 0 || !bytes.Equal(ps.path(k), ps.path(out[len(out)-1])) {
				out = append(out, k)
			}
		}
		ps.order = out
	}
	t.filter, t.filtered = p, ps
	return nil
}

// pathRows shows a filtered layer's rows by their whole path.
type pathRows struct{ l lister }

func (p *pathRows) Len() int { return p.l.Len() }
func (p *pathRows) At(i int) (row, error) {
	r, err := p.l.At(i)
	r.name = "/" + r.rel
	return r, err
}

// stagePaths are the matches of a filter over a stage, resolved when
// drawn: path k is buf[ends[k-1]:ends[k]], shown in the order of order.
type stagePaths struct {
	t     *tree
	buf   []byte
	ends  []uint32
	order []uint32
}

func (s *stagePaths) path(k uint32) []byte {
	start := uint32(0)
	if k > 0 {
		start = s.ends[k-1]
	}
	return s.buf[start:s.ends[k]]
}

func (s *stagePaths) Len() int { return len(s.order) }
func (s *stagePaths) At(i int) (row, error) {
	p := string(s.path(s.order[i]))
	n, ok, err := s.t.cur.Lookup(p)
	if err != nil {
		return row{}, err
	}
	if !ok {
		r := row{name: "/" + p, rel: p, layer: -1, mark: markRemoved, note: "not in this stage"}
		if b, ok, _ := s.t.below.Lookup(p); ok {
			r.rec, r.layer, r.note = b.Rec, b.Layer, "removed in this layer"
		} else {
			r.note = "removed below this layer, or added above it"
			r.layer = -2
		}
		return r, nil
	}
	r := row{name: "/" + p, rel: p, rec: n.Rec, layer: n.Layer, mark: markSame}
	if n.Layer == s.t.layer {
		r.mark, err = s.t.markBelow(&n.Rec)
	}
	return r, err
}
