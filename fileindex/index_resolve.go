package fileindex

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"unsafe"

	"github.com/amber-forensics/amber/internal/extsort"
	"github.com/amber-forensics/amber/manifest"
)

// resolver holds the sorted streams a build goes through:
//
//	entries   by path (component order), entry number: the tar's entries
//	tree      by parent path, name (the root first): the tree's records,
//	          last entry of each path and the directories paths imply
//	shadowed  by entry number: the entries a later one overwrote
//	paths     by path: each tree record's number and what a hard link
//	          to it takes
//	groups    by path: each record's children (first, count, directories)
//	parents   by first child: the record a run of children belongs to
//	children  by record: its first child, number of children, of dirs
//	links     by target path, linking entry: hard links still to resolve
//	early     the same: links whose target's tree entry is not before the
//	          linking entry (an earlier entry of the path is shadowed)
//	shpaths   by path, entry number: the shadowed entries, as paths has
//	          the tree's (made only when a link needs it)
//	targets   by target record, link: resolved hard links
//	counts    by record: the link count of a hard-linked file
//	resolved  by link record: each hard link's outcome
type resolver struct {
	b     *IndexBuilder
	cfg   extsort.Config
	layer int64
	all   []*extsort.Sorter

	treeLen, nShadowed int
	kbuf, vbuf         []byte
}

func (r *resolver) sorter() *extsort.Sorter {
	s := extsort.New(r.cfg)
	r.all = append(r.all, s)
	return s
}

func (r *resolver) close() {
	for _, s := range r.all {
		s.Close()
	}
	r.b.Close()
}

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

func key32(dst []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(dst[:0], v) }

func (r *resolver) run() (*Built, error) {
	tree, shadowed, err := r.dedup()
	if err != nil {
		return nil, err
	}
	paths, groups, links, err := r.number(tree)
	if err != nil {
		return nil, err
	}
	parents, children, err := r.joinGroups(groups, paths)
	if err != nil {
		return nil, err
	}
	resolved, counts, err := r.resolveLinks(links, paths, shadowed)
	if err != nil {
		return nil, err
	}
	paths.Close()
	return r.encode(tree, shadowed, parents, children, resolved, counts)
}

// dedup reads the entries by path: of a path's entries the last is the
// tree's, the others are shadowed; the directories a path implies (its
// ancestors that are neither the path before it nor above that one:
// those were seen already) are added.
func (r *resolver) dedup() (tree, shadowed *extsort.Sorter, err error) {
	tree, shadowed = r.sorter(), r.sorter()
	var (
		curK, curV []byte
		have       bool
		prev       []byte
		hasRoot    bool
		e          xEnt
	)
	addTree := func(e *xEnt) error {
		r.treeLen++
		r.kbuf = appendTreeKey(r.kbuf[:0], e.path)
		r.vbuf = e.append(r.vbuf[:0])
		return tree.Add(r.kbuf, r.vbuf)
	}
	place := func() error {
		if err := e.decode(curV); err != nil {
			return err
		}
		p := e.path
		if p == "" {
			hasRoot = true
		}
		for k := 0; k < len(p); k++ {
			if p[k] != '/' {
				continue
			}
			anc := p[:k]
			if anc == string(prev) || (len(prev) > k && prev[k] == '/' && string(prev[:k]) == anc) {
				continue
			}
			if err := addTree(implied(anc)); err != nil {
				return err
			}
		}
		prev = append(prev[:0], p...)
		return addTree(&e)
	}
	// Each entry is placed once the next shows whether it is shadowed.
	if err := r.b.entries.Each(func(k, v []byte) error {
		if have && bytes.Equal(curK[:len(curK)-4], k[:len(k)-4]) {
			if err := e.decode(curV); err != nil {
				return err
			}
			e.flags |= FlagShadowed
			r.nShadowed++
			r.vbuf = e.append(r.vbuf[:0])
			if err := shadowed.Add(curK[len(curK)-4:], r.vbuf); err != nil {
				return err
			}
		} else if have {
			if err := place(); err != nil {
				return err
			}
		}
		curK, curV, have = append(curK[:0], k...), append(curV[:0], v...), true
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if have {
		if err := place(); err != nil {
			return nil, nil, err
		}
	}
	if !hasRoot {
		if err := addTree(implied("")); err != nil {
			return nil, nil, err
		}
	}
	r.b.entries.Close()
	if uint64(r.treeLen+r.nShadowed) >= uint64(NoEntry) {
		return nil, nil, fmt.Errorf("layer has too many entries for an index: %d", r.treeLen+r.nShadowed)
	}
	// The shadowed entries' anomalies, in entry order.
	return tree, shadowed, shadowed.Each(func(_, v []byte) error {
		if err := e.decode(v); err != nil {
			return err
		}
		r.b.anomaly(manifest.Anomaly{Path: strings.Clone(e.path), Kind: "duplicate-entry", Detail: fmt.Sprintf("tar entry %d is overwritten by a later entry of the same path", e.entryNo)})
		return nil
	})
}

func implied(p string) *xEnt {
	return &xEnt{path: p, typ: TypeDir, mode: 0o755, flags: FlagImplicit, entryNo: NoEntry, dataOff: -1, zero: 7}
}

// A paths item's payload: what a hard link to the record takes, and what
// resolving a link through it needs.
const (
	pkK       = 0
	pkTyp     = 4
	pkFlags   = 5
	pkSize    = 6
	pkDataOff = 14
	pkSHA     = 22
	pkEntry   = 54 // the record's entry number
	pkTarget  = 58 // the record's own hard-link target, to the end
)

// appendLinkPayload appends the paths payload of entry e, record k.
func appendLinkPayload(dst []byte, k uint32, e *xEnt) []byte {
	dst = binary.BigEndian.AppendUint32(dst, k)
	dst = append(dst, e.typ, e.flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.size))
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.dataOff))
	dst = append(dst, e.sha[:]...)
	dst = binary.BigEndian.AppendUint32(dst, e.entryNo)
	return append(dst, e.target...)
}

// laterTarget is why a hard link whose target path the layer has only
// after the link dangles: extracted in order, there is nothing to link to
// yet (GNU tar: "Cannot hard link"; the engine refuses the layer).
const laterTarget = "which the layer has only after the link: tar cannot make it and the engine refuses the layer"

// number gives the tree's records their numbers (their order in the
// index) and makes the streams the links between them are resolved from.
func (r *resolver) number(tree *extsort.Sorter) (paths, groups, links *extsort.Sorter, err error) {
	paths, groups, links = r.sorter(), r.sorter(), r.sorter()
	var (
		e                    xEnt
		k                    uint32
		curPP                []byte
		first, nchild, ndirs uint32
		pkv, gk, gv, lk, lv  []byte
	)
	endGroup := func() error {
		gk = appendPathKey(gk[:0], unsafe.String(unsafe.SliceData(curPP), len(curPP)), true)
		gv = binary.BigEndian.AppendUint32(key32(gv, first), nchild)
		gv = binary.BigEndian.AppendUint32(gv, ndirs)
		return groups.Add(gk, gv)
	}
	err = tree.Each(func(kk, v []byte) error {
		defer func() { k++ }()
		if err := e.decode(v); err != nil {
			return err
		}
		if (k == 0) != (e.path == "") {
			return fmt.Errorf("%w: the tree does not start at its root (%q)", extsort.ErrCorrupt, kk)
		}
		pkv = appendLinkPayload(pkv[:0], k, &e)
		r.kbuf = appendPathKey(r.kbuf[:0], e.path, true)
		if err := paths.Add(r.kbuf, pkv); err != nil {
			return err
		}
		if k > 0 {
			pp := parentOf(e.path)
			if k == 1 || pp != string(curPP) {
				if k > 1 {
					if err := endGroup(); err != nil {
						return err
					}
				}
				curPP, first, nchild, ndirs = append(curPP[:0], pp...), k, 0, 0
			}
			nchild++
			if e.typ == TypeDir {
				ndirs++
			}
		}
		if e.flags&FlagHardlink != 0 {
			lk = binary.BigEndian.AppendUint32(appendPathKey(lk[:0], e.target, true), e.entryNo)
			lk = binary.BigEndian.AppendUint32(lk, k)
			lv = key32(lv, k)
			return links.Add(lk, lv)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if int(k) != r.treeLen {
		return nil, nil, nil, fmt.Errorf("%w: %d tree records read back, %d written", extsort.ErrCorrupt, k, r.treeLen)
	}
	if k > 1 {
		if err := endGroup(); err != nil {
			return nil, nil, nil, err
		}
	}
	return paths, groups, links, nil
}

// join reads left in key order beside right: for each left item, the
// right item whose key is on(left key), if there is one (on(key) must
// not fall as the left keys rise).
func join(left, right *extsort.Sorter, on func(lk []byte) []byte, fn func(lk, lv, rv []byte, found bool) error) error {
	c, err := newCursor(right)
	if err != nil {
		return err
	}
	if err := left.Each(func(lk, lv []byte) error {
		rv, found := c.seek(on(lk))
		return fn(lk, lv, rv, found)
	}); err != nil {
		return err
	}
	return c.it.Err()
}

// joinGroups finds each run of children's parent by its path.
func (r *resolver) joinGroups(groups, paths *extsort.Sorter) (parents, children *extsort.Sorter, err error) {
	parents, children = r.sorter(), r.sorter()
	var kb, vb []byte
	err = join(groups, paths, func(k []byte) []byte { return k }, func(k, gv, pv []byte, found bool) error {
		if !found || len(gv) != 12 {
			return fmt.Errorf("%w: a parent directory is missing from the tree", extsort.ErrCorrupt)
		}
		dir := be32(pv[pkK:])
		if pv[pkTyp] != TypeDir && len(k) > 2 {
			// Entries under a symlink or a file of the same layer: the
			// runtime writes them through it; no listing shows them.
			p := pathOfKey(k)
			r.b.anomaly(manifest.Anomaly{Path: p, Kind: "under-non-directory", Detail: underNonDirectory(p, be32(gv[4:]), pv[pkTyp])})
		}
		if err := parents.Add(key32(kb, be32(gv)), key32(vb, dir)); err != nil {
			return err
		}
		return children.Add(key32(kb, dir), gv)
	})
	groups.Close()
	return parents, children, err
}

// maxLinkHops is how many hard links to hard links are followed.
const maxLinkHops = 64

// resolveLinks finds each hard link's regular file, following links to
// links up to maxLinkHops, one merge with the paths per hop. A link takes
// the entry of its target path that precedes the linking entry, as a tar
// extracted in order makes it: the tree's entry of the path when it comes
// before, else the last shadowed entry before (a path written again after
// the link: the link keeps the earlier file), else nothing.
func (r *resolver) resolveLinks(links, paths, shadowed *extsort.Sorter) (resolved, counts *extsort.Sorter, err error) {
	resolved, counts = r.sorter(), r.sorter()
	targets := r.sorter()
	var shpaths *extsort.Sorter
	var kb, vb []byte
	for hop := 0; links.Len() > 0; hop++ {
		next, early := r.sorter(), r.sorter()
		// step takes link to the entry pv of its target path.
		step := func(link uint32, lv, pv []byte) error {
			switch {
			case len(pv) < pkTarget:
				return fmt.Errorf("%w: a path record of %d bytes", extsort.ErrCorrupt, len(pv))
			case pv[pkFlags]&FlagHardlink != 0 && hop < maxLinkHops:
				kb = appendPathKey(kb[:0], unsafe.String(unsafe.SliceData(pv[pkTarget:]), len(pv)-pkTarget), true)
				kb = binary.BigEndian.AppendUint32(append(kb, pv[pkEntry:pkTarget]...), link)
				return next.Add(kb, lv)
			case pv[pkFlags]&FlagHardlink != 0 || pv[pkTyp] != TypeReg:
				return resolved.Add(key32(kb, link), []byte{0})
			default:
				kb = binary.BigEndian.AppendUint32(key32(kb, be32(pv[pkK:])), link)
				return targets.Add(kb, pv[:pkTarget])
			}
		}
		err := join(links, paths, func(lk []byte) []byte { return lk[:len(lk)-8] }, func(lk, lv, pv []byte, found bool) error {
			link := be32(lv)
			switch {
			case !found:
				return resolved.Add(key32(kb, link), []byte{0}) // dangling
			case len(pv) < pkTarget:
				return fmt.Errorf("%w: a path record of %d bytes", extsort.ErrCorrupt, len(pv))
			case be32(pv[pkEntry:]) >= be32(lk[len(lk)-8:]):
				// The path's tree entry is the linking entry itself or
				// comes after it (an implied directory's is NoEntry): the
				// target is an earlier entry, shadowed, or there is none.
				// A path that is only written after the link is told
				// apart for its anomaly.
				later := byte(0)
				if hop == 0 && pv[pkFlags]&FlagImplicit == 0 && be32(pv[pkEntry:]) > be32(lk[len(lk)-8:]) {
					later = 2
				}
				vb = append(append(vb[:0], lv...), later)
				return early.Add(lk, vb)
			default:
				return step(link, lv, pv)
			}
		})
		if err != nil {
			return nil, nil, err
		}
		links.Close()
		if early.Len() > 0 {
			if shpaths == nil {
				if shpaths, err = r.shadowedPaths(shadowed); err != nil {
					return nil, nil, err
				}
			}
			c, err := newCursor(shpaths)
			if err != nil {
				return nil, nil, err
			}
			if err := early.Each(func(lk, lv []byte) error {
				if len(lv) != 5 || len(lk) < 8 {
					return fmt.Errorf("%w: a hard link of %d bytes", extsort.ErrCorrupt, len(lv))
				}
				link := be32(lv)
				pk, pv, ok := c.below(lk[:len(lk)-4])
				if !ok || !bytes.Equal(pk[:len(pk)-4], lk[:len(lk)-8]) {
					return resolved.Add(key32(kb, link), lv[4:5]) // dangling
				}
				return step(link, lv[:4], pv)
			}); err != nil {
				return nil, nil, err
			}
			if err := c.it.Err(); err != nil {
				return nil, nil, err
			}
		}
		early.Close()
		links = next
	}
	if shpaths != nil {
		shpaths.Close()
	}
	err = r.countLinks(targets, resolved, counts)
	targets.Close()
	return resolved, counts, err
}

// countLinks writes each hard-linked file's link count (counts) and each
// link's outcome (resolved) from targets, the resolved links by target
// record. Two reads: a file may have a million links.
func (r *resolver) countLinks(targets, resolved, counts *extsort.Sorter) error {
	var kb, vb []byte
	var cur, n uint32
	count := func() error {
		if n == 0 {
			return nil
		}
		if cur >= uint32(r.treeLen) {
			// A shadowed entry: its links are its only names in the tree.
			return counts.Add(key32(kb, cur), key32(vb, n))
		}
		return counts.Add(key32(kb, cur), key32(vb, n+1))
	}
	if err := targets.Each(func(tk, _ []byte) error {
		if be32(tk) != cur {
			if err := count(); err != nil {
				return err
			}
			cur, n = be32(tk), 0
		}
		n++
		return nil
	}); err != nil {
		return err
	}
	if err := count(); err != nil {
		return err
	}
	return join(targets, counts, func(tk []byte) []byte { return tk[:4] }, func(tk, tv, cv []byte, found bool) error {
		if !found {
			return fmt.Errorf("%w: a hard-linked file without its count", extsort.ErrCorrupt)
		}
		// 1, the file's record, its count, what the link takes of it.
		vb = append(append(append(vb[:0], 1), cv...), tv...)
		return resolved.Add(tk[4:8], vb)
	})
}

// shadowedPaths sorts the shadowed entries (numbered, as their records
// are, from the tree's length in entry order) by path and entry number,
// each with the payload paths gives a tree record.
func (r *resolver) shadowedPaths(shadowed *extsort.Sorter) (*extsort.Sorter, error) {
	s := r.sorter()
	var e xEnt
	var kb, vb []byte
	k := uint32(r.treeLen)
	err := shadowed.Each(func(_, v []byte) error {
		defer func() { k++ }()
		if err := e.decode(v); err != nil {
			return err
		}
		kb = binary.BigEndian.AppendUint32(appendPathKey(kb[:0], e.path, true), e.entryNo)
		vb = appendLinkPayload(vb[:0], k, &e)
		return s.Add(kb, vb)
	})
	return s, err
}

// cursor reads a sorter's items in step with keys rising elsewhere.
type cursor struct {
	it       *extsort.Iterator
	k, v, kb []byte
	ok       bool
	// the last item passed, for below
	pk, pv []byte
	passed bool
}

func newCursor(s *extsort.Sorter) (*cursor, error) {
	it, err := s.Iter()
	if err != nil {
		return nil, err
	}
	c := &cursor{it: it}
	c.k, c.v, c.ok = it.Next()
	return c, nil
}

// seek returns the item whose key is key, if there is one (keys rising
// from call to call).
func (c *cursor) seek(key []byte) ([]byte, bool) {
	for c.ok && bytes.Compare(c.k, key) < 0 {
		c.k, c.v, c.ok = c.it.Next()
	}
	if c.ok && bytes.Equal(c.k, key) {
		return c.v, true
	}
	return nil, false
}

// below returns the last item whose key is less than key, if there is
// one (keys rising from call to call).
func (c *cursor) below(key []byte) (k, v []byte, ok bool) {
	for c.ok && bytes.Compare(c.k, key) < 0 {
		c.pk, c.pv, c.passed = append(c.pk[:0], c.k...), append(c.pv[:0], c.v...), true
		c.k, c.v, c.ok = c.it.Next()
	}
	return c.pk, c.pv, c.passed
}

// at is seek in a stream keyed by record number.
func (c *cursor) at(k uint32) ([]byte, bool) {
	c.kb = key32(c.kb, k)
	return c.seek(c.kb)
}
