package fileindex

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unsafe"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/extsort"
	"github.com/amber-forensics/amber/manifest"
)

// IndexBuilder collects a layer's tar entries as they are read and encodes
// the file index, in memory bounded whatever the layer holds: entries go
// to an external sorter (spilled to temp files in TempDir past a few MiB),
// and the tree is resolved by sorting and merging streams of them — the
// last entry of a path, the directories names imply, the tree's order,
// each record's parent and children, hard links and link counts — never
// by holding all the entries at once. A layer of a million files needs
// ~400 MB of temp space at the peak and tens of MiB of memory.
type IndexBuilder struct {
	Anomalies []manifest.Anomaly
	// MaxStrings bounds the bytes of names, link targets and xattrs the
	// layer's index may hold (0: DefaultMaxIndexStrings; negative: no
	// limit). The index stores each entry's full path, so a hostile layer
	// (a directory chain 100,000 deep) would make an index in the square of
	// its depth; past the limit the layer is refused.
	MaxStrings int64
	// TempDir is where the build spills what does not fit in memory
	// (default os.TempDir()). The files are unlinked as they are made.
	TempDir string
	// Trailing is the data after the layer tar's end-of-archive marker,
	// when ScanLayerWith found some.
	Trailing *manifest.Trailing

	entries  *extsort.Sorter
	n        uint32
	strBytes int64
	err      error
	kbuf     []byte
	vbuf     []byte
	// anomalies listed, and not listed past maxAnomalies, by kind.
	kinds   map[string]int
	unlist  map[string]int
	kindSeq []string
}

// DefaultMaxIndexStrings allows a layer of two million files with paths of
// 128 bytes.
const DefaultMaxIndexStrings = 256 << 20

// ErrIndexTooBig reports a layer whose index would pass its builder's MaxStrings.
// sortBudgets are the external sort's memory budgets for every build
// (zero: extsort's defaults). Tests make them tiny so that every path
// spills to temp files.
var sortBudgets extsort.Config

// sortConfig is the external sort's configuration for this build.
func (b *IndexBuilder) sortConfig() extsort.Config {
	c := sortBudgets
	c.Dir = b.TempDir
	return c
}

// ErrTempSpace reports that an index build could not write its temp files
// (a full disk, no such directory): a fault of the machine, not of the
// evidence.
var ErrTempSpace = extsort.ErrTempSpace

var ErrIndexTooBig = errors.New("manifest: layer too large to index")

// maxAnomalies is how many anomalies of one kind a layer lists; past it
// they are counted, and one more anomaly says how many were not listed (a
// layer of a million unsafe names would otherwise make a manifest of
// hundreds of MB).
var maxAnomalies = 1000

// ownerIntern is how many distinct owner names an index stores once each;
// past it a new name is stored where it is used.
const ownerIntern = 1 << 16

// CleanName turns a tar entry name into the slash-separated path amber
// shows, rooted at the layer: never above it, whatever the name says.
// unsafe reports an absolute name or a ".." component; a name of only
// slashes and dots ("/", "./", ".") is the root, not unsafe: kaniko
// starts every layer with an entry named "/".
func CleanName(name string) (p string, unsafe bool) {
	p = strings.TrimPrefix(path.Clean("/"+name), "/")
	root := true
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return p, true
		}
		if c != "" && c != "." {
			root = false
		}
	}
	return p, strings.HasPrefix(name, "/") && !root
}

// rootOpaqueDetail explains a root-opaque anomaly: an opaque marker at
// the layer's root. overlayfs reads the opaque xattr of a lower layer's
// root directory as nothing (docker export of such an image shows the
// lower layers' files), so the merged views do not let it hide them.
const rootOpaqueDetail = "opaque-directory marker at the layer's root: the kernel's overlayfs ignores an opaque mark on a lower layer's root (docker export shows the lower layers' files), so amber's merged views show the lower layers' content; the marker is shown in layers/N"

// badWhiteoutDetail explains a bad-whiteout anomaly: a whiteout of ".",
// ".." or of an empty name. The engine refuses the layer (its whiteout
// device would be the directory itself or its parent); amber keeps the
// marker as evidence, and no name it could hide exists in a merged view.
func badWhiteoutDetail(name string) string {
	return fmt.Sprintf("whiteout of %q: the engine refuses a layer holding it (docker load fails); the marker is shown in layers/N and hides nothing in merged views", name)
}

// anomaly lists a, unless maxAnomalies of its kind are listed already.
func (b *IndexBuilder) anomaly(a manifest.Anomaly) {
	if b.kinds == nil {
		b.kinds, b.unlist = map[string]int{}, map[string]int{}
	}
	if b.kinds[a.Kind] >= maxAnomalies {
		if b.unlist[a.Kind] == 0 {
			b.kindSeq = append(b.kindSeq, a.Kind)
		}
		b.unlist[a.Kind]++
		return
	}
	b.kinds[a.Kind]++
	b.Anomalies = append(b.Anomalies, a)
}

// Add records one tar entry. hdrOff and dataOff are offsets in the layer
// blob; sum is the SHA-256 of its content.
func (b *IndexBuilder) Add(h *tar.Header, hdrOff, dataOff int64, sum hashing.Digest, sparse bool) {
	if b.err != nil {
		return
	}
	b.strBytes += int64(len(h.Name) + len(h.Linkname))
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			b.strBytes += int64(len(k) + len(v))
		}
	}
	limit := b.MaxStrings
	if limit == 0 {
		limit = DefaultMaxIndexStrings
	}
	if limit > 0 && b.strBytes > limit {
		b.fail(fmt.Errorf("%w: its names, link targets and xattrs pass %d MiB at entry %d (%.80q..., %d levels deep); --max-index-mib raises the limit",
			ErrIndexTooBig, limit>>20, b.n, h.Name, strings.Count(strings.Trim(h.Name, "/"), "/")+1))
		return
	}
	if uint64(b.n) >= uint64(NoEntry)/2 {
		b.fail(fmt.Errorf("layer has too many entries for an index: %d", b.n))
		return
	}
	p, unsafe := CleanName(h.Name)
	e := xEnt{path: p, entryNo: b.n, hdrOff: hdrOff, dataOff: dataOff, sha: sum, typ: h.Typeflag}
	b.n++
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		e.typ = TypeReg
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	default:
		e.typ = TypeReg
		b.anomaly(manifest.Anomaly{Path: p, Kind: "unknown-type", Detail: fmt.Sprintf("tar type %q shown as a regular file", h.Typeflag)})
	}
	if p == "" && e.typ != TypeDir {
		b.anomaly(manifest.Anomaly{Path: h.Name, Kind: "root-not-dir", Detail: "entry names the layer root but is not a directory; shown as the root's metadata"})
		e.typ = TypeDir
	}
	e.mode = uint32(h.Mode) & 07777
	e.uid, e.gid = uint32(h.Uid), uint32(h.Gid)
	e.devMajor, e.devMinor = uint32(h.Devmajor), uint32(h.Devminor)
	if e.typ == TypeReg {
		e.size = h.Size
	}
	for k, t := range [3]time.Time{h.ModTime, h.AccessTime, h.ChangeTime} {
		e.sec[k], e.nsec[k] = t.Unix(), uint32(t.Nanosecond())
		if t.IsZero() {
			e.zero |= 1 << k
		}
	}
	e.uname, e.gname, e.link = h.Uname, h.Gname, h.Linkname
	var xattrs map[string]string
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if xattrs == nil {
				xattrs = map[string]string{}
			}
			xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = v
		}
	}
	if len(xattrs) > 0 {
		e.xattr = string(encodeXattrs(xattrs))
	}
	if unsafe {
		e.flags |= FlagUnsafe
		b.anomaly(manifest.Anomaly{Path: p, Kind: "unsafe-name", Detail: fmt.Sprintf("tar name %q is absolute or has '..'; shown inside the layer as %q", h.Name, p)})
	}
	if sparse {
		e.flags |= FlagSparse
	}
	if e.typ == TypeLink {
		e.flags |= FlagHardlink
		e.target, _ = CleanName(h.Linkname)
		e.dataOff = -1
	}
	base := path.Base("/" + p)
	if p == "" {
		base = ""
	}
	if base == ".wh..wh..opq" {
		e.flags |= FlagOpaque
		if p == base {
			b.anomaly(manifest.Anomaly{Path: p, Kind: "root-opaque", Detail: rootOpaqueDetail})
		}
	} else if strings.HasPrefix(base, ".wh.") {
		e.flags |= FlagWhiteout
		if w := base[len(".wh."):]; w == "" || w == "." || w == ".." {
			b.anomaly(manifest.Anomaly{Path: p, Kind: "bad-whiteout", Detail: badWhiteoutDetail(w)})
		}
	}
	if e.flags&FlagHardlink == 0 {
		// Hashed here, off the end of the capture (a hard link's leaf
		// waits for its target).
		e.leaf = hashing.LeafHash(e.leafData())
	}
	if b.entries == nil {
		b.entries = extsort.New(b.sortConfig())
	}
	// Component order ('/' before any other byte), then entry order: a
	// directory's subtree follows it, and a path's entries are together,
	// its last one last.
	b.kbuf = binary.BigEndian.AppendUint32(appendPathKey(b.kbuf[:0], p, true), e.entryNo)
	b.vbuf = e.append(b.vbuf[:0])
	if err := b.entries.Add(b.kbuf, b.vbuf); err != nil {
		b.fail(err)
	}
}

func (b *IndexBuilder) fail(err error) {
	b.err = err
	b.Close()
}

// Close lets the builder's memory and temp files go; Resolve does it too.
func (b *IndexBuilder) Close() {
	if b.entries != nil {
		b.entries.Close()
		b.entries = nil
	}
}

// Build resolves the tree and encodes the index. It also returns the
// layer's Merkle root over its entries and their count, as
// (*Index).MerkleRoot computes them from the encoded index.
func (b *IndexBuilder) Build(layerSize int64) ([]byte, error) {
	ib, _, _, err := b.BuildWithRoot(layerSize)
	return ib, err
}

// BuildWithRoot is Build returning the Merkle root and file count too.
func (b *IndexBuilder) BuildWithRoot(layerSize int64) ([]byte, hashing.Digest, int, error) {
	x, err := b.Resolve(layerSize)
	if err != nil {
		return nil, hashing.Digest{}, 0, err
	}
	defer x.Close()
	ib, err := x.Bytes()
	if err != nil {
		return nil, hashing.Digest{}, 0, err
	}
	return ib, x.Root, x.Files, nil
}

// Built is a resolved index, ready to be written (any number of times,
// until it is closed): its records and string table are held in spools,
// in memory or in temp files.
type Built struct {
	// Size is the index's length in bytes.
	Size int64
	// Root and Files are the layer's Merkle root over its entries and
	// their count, as (*Index).MerkleRoot computes them.
	Root       hashing.Digest
	Files      int
	hdr        [indexHeaderSize]byte
	recs, strs *extsort.Spool
	cfg        extsort.Config
}

// WriteTo writes the index to w, streamed: the index of a layer of a
// million files is ~200 MB.
func (x *Built) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(x.hdr[:])
	total := int64(n)
	for _, s := range []*extsort.Spool{x.recs, x.strs} {
		if err != nil {
			break
		}
		var m int64
		m, err = io.Copy(w, s.Reader())
		total += m
	}
	if err == nil && total != x.Size {
		err = fmt.Errorf("%w: index of %d bytes read back as %d", extsort.ErrCorrupt, x.Size, total)
	}
	return total, err
}

// Bytes returns the index.
func (x *Built) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(x.Size))
	_, err := x.WriteTo(&buf)
	return buf.Bytes(), err
}

// Digest is the index's SHA-256, computed as it is streamed.
func (x *Built) Digest() (hashing.Digest, error) {
	h := sha256.New()
	if _, err := x.WriteTo(h); err != nil {
		return hashing.Digest{}, err
	}
	return hashing.FromHash(h), nil
}

// Paged writes the index to a temp file and returns it parsed, read in
// pages from the file: an index to keep and consult without holding it in
// memory (the file goes when the Index is garbage).
func (x *Built) Paged() (*Index, error) {
	f, err := extsort.TempFile(x.cfg.Dir)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	if _, err := x.WriteTo(bw); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", ErrTempSpace, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", ErrTempSpace, err)
	}
	ix, err := OpenPaged(f, 0, x.Size)
	if err != nil {
		f.Close()
		return nil, err
	}
	return ix, nil
}

// Close lets the index's spools go.
func (x *Built) Close() {
	x.recs.Close()
	x.strs.Close()
}

// Resolve resolves the tree; the result writes the index. The builder is
// not to be built again (its Anomalies stay).
func (b *IndexBuilder) Resolve(layerSize int64) (*Built, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.entries == nil {
		b.entries = extsort.New(b.sortConfig())
	}
	r := &resolver{b: b, cfg: b.sortConfig(), layer: layerSize}
	defer r.close()
	x, err := r.run()
	for _, k := range b.kindSeq {
		b.Anomalies = append(b.Anomalies, manifest.Anomaly{Kind: k, Detail: fmt.Sprintf("%d more anomalies of this kind in this layer are not listed", b.unlist[k])})
	}
	b.kindSeq = nil
	return x, err
}

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
	// Link counts: a file's links, then each link's count (two reads:
	// a file may have a million links).
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
		return nil, nil, err
	}
	if err := count(); err != nil {
		return nil, nil, err
	}
	err = join(targets, counts, func(tk []byte) []byte { return tk[:4] }, func(tk, tv, cv []byte, found bool) error {
		if !found {
			return fmt.Errorf("%w: a hard-linked file without its count", extsort.ErrCorrupt)
		}
		// 1, the file's record, its count, what the link takes of it.
		vb = append(append(append(vb[:0], 1), cv...), tv...)
		return resolved.Add(tk[4:8], vb)
	})
	targets.Close()
	return resolved, counts, err
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

// encode writes the records, each with its links resolved, and the string
// table, into spools, hashing the Merkle leaves as it goes.
func (r *resolver) encode(tree, shadowed, parents, children, resolved, counts *extsort.Sorter) (*Built, error) {
	x := &Built{recs: extsort.NewSpool(r.cfg), strs: extsort.NewSpool(r.cfg), cfg: r.cfg}
	ok := false
	defer func() {
		if !ok {
			x.Close()
		}
	}()
	var cs [4]*cursor
	for i, s := range []*extsort.Sorter{parents, children, resolved, counts} {
		c, err := newCursor(s)
		if err != nil {
			return nil, err
		}
		cs[i] = c
	}
	pc, cc, rc, nc := cs[0], cs[1], cs[2], cs[3]
	enc := &recEncoder{recs: bufio.NewWriterSize(x.recs, 64<<10), strs: bufio.NewWriterSize(x.strs, 64<<10), owners: map[string]uint64{}}
	var m hashing.Merkle
	var e xEnt
	leaf := func(e *xEnt) {
		if e.flags&FlagImplicit != 0 {
			return
		}
		if e.leaf.IsZero() {
			e.leaf = hashing.LeafHash(e.leafData())
		}
		m.Add(e.leaf)
	}
	var parent, k uint32
	err := tree.Each(func(_, v []byte) error {
		defer func() { k++ }()
		if err := e.decode(v); err != nil {
			return err
		}
		meta := recMeta{first: uint32(r.treeLen), ino: k}
		if p, ok := pc.at(k); ok {
			parent = be32(p)
		}
		if k > 0 {
			meta.parent = parent
		}
		if c, ok := cc.at(k); ok {
			meta.first, meta.nchild = be32(c), be32(c[4:])
			meta.nlink = be32(c[8:])
		}
		switch {
		case e.typ == TypeDir:
			meta.nlink += 2
		case e.flags&FlagHardlink != 0:
			res, ok := rc.at(k)
			if !ok || len(res) < 1 || res[0] == 1 && len(res) != 5+pkTarget {
				return fmt.Errorf("%w: a hard link's resolution", extsort.ErrCorrupt)
			}
			if res[0] != 1 {
				e.flags |= FlagDangling
				why := "which is not a regular file of this layer"
				if res[0] == 2 {
					why = laterTarget
				}
				r.b.anomaly(manifest.Anomaly{Path: strings.Clone(e.path), Kind: "dangling-hardlink", Detail: fmt.Sprintf("hard link to %q, %s", e.link, why)})
				meta.nlink++
				break
			}
			t := res[5:]
			meta.ino = be32(t[pkK:])
			meta.nlink += be32(res[1:])
			e.typ = TypeReg
			e.size = int64(binary.BigEndian.Uint64(t[pkSize:]))
			e.dataOff = int64(binary.BigEndian.Uint64(t[pkDataOff:]))
			e.sha = hashing.Digest(t[pkSHA:pkTarget])
			e.flags |= t[pkFlags] & FlagSparse
			e.leaf = hashing.Digest{}
		default:
			if c, ok := nc.at(k); ok {
				meta.nlink += be32(c)
			} else {
				meta.nlink++
			}
		}
		leaf(&e)
		return enc.add(&e, meta)
	})
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if err := c.it.Err(); err != nil {
			return nil, err
		}
	}
	k = uint32(r.treeLen) // the shadowed records follow the tree's
	if err := shadowed.Each(func(_, v []byte) error {
		defer func() { k++ }()
		if err := e.decode(v); err != nil {
			return err
		}
		if e.flags&FlagHardlink != 0 {
			e.flags |= FlagDangling
		}
		leaf(&e)
		return enc.add(&e, recMeta{0, uint32(r.treeLen), 0, 1, k})
	}); err != nil {
		return nil, err
	}
	if err := enc.flush(); err != nil {
		return nil, err
	}
	if err := x.recs.Finish(); err != nil {
		return nil, err
	}
	if err := x.strs.Finish(); err != nil {
		return nil, err
	}
	count := r.treeLen + r.nShadowed
	if enc.n != count {
		return nil, fmt.Errorf("%w: %d records written of %d", extsort.ErrCorrupt, enc.n, count)
	}
	le := binary.LittleEndian
	h := x.hdr[:]
	copy(h, indexMagic)
	le.PutUint32(h[8:], indexVersion)
	le.PutUint32(h[12:], RecordSize)
	le.PutUint32(h[16:], uint32(count))
	le.PutUint32(h[20:], uint32(r.treeLen))
	le.PutUint64(h[24:], uint64(indexHeaderSize+count*RecordSize))
	le.PutUint64(h[32:], enc.at)
	le.PutUint64(h[40:], uint64(r.layer))
	le.PutUint32(h[48:], r.b.n)
	x.Size = int64(indexHeaderSize) + x.recs.Len() + x.strs.Len()
	x.Root, x.Files = m.Root(), m.Len()
	ok = true
	return x, nil
}

// recMeta is what the tree gives a record.
type recMeta struct{ parent, first, nchild, nlink, ino uint32 }

// recEncoder writes records, and their strings into the string table:
// each record's path, link target, owner, group and xattrs, in record
// order, each appended, but for an owner name (up to 64 bytes) stored
// already, which is stored once (the first ownerIntern distinct names).
type recEncoder struct {
	recs, strs *bufio.Writer
	owners     map[string]uint64
	at         uint64 // bytes of the table
	n          int
	rec        [RecordSize]byte
}

var strSlots = [5][2]int{{rNameOff, rNameLen}, {rLinkOff, rLinkLen}, {rUnameOff, rUnameLen}, {rGnameOff, rGnameLen}, {rXattrOff, rXattrLen}}

func (x *recEncoder) add(e *xEnt, m recMeta) error {
	le := binary.LittleEndian
	r := x.rec[:]
	clear(r)
	for slot, s := range [5]string{e.path, e.link, e.uname, e.gname, e.xattr} {
		if s == "" {
			continue
		}
		off, store := x.at, true
		if (slot == 2 || slot == 3) && len(s) <= 64 {
			if o, ok := x.owners[s]; ok {
				off, store = o, false
			} else if len(x.owners) < ownerIntern {
				x.owners[strings.Clone(s)] = x.at // s is in a buffer read again
			}
		}
		if store {
			if _, err := x.strs.WriteString(s); err != nil {
				return err
			}
			x.at += uint64(len(s))
			if x.at > uint64(^uint32(0)) {
				return fmt.Errorf("index string table exceeds 4 GiB")
			}
		}
		le.PutUint32(r[strSlots[slot][0]:], uint32(off))
		le.PutUint32(r[strSlots[slot][1]:], uint32(len(s)))
	}
	le.PutUint32(r[rParent:], m.parent)
	le.PutUint32(r[rFirst:], m.first)
	le.PutUint32(r[rNChild:], m.nchild)
	r[rType] = e.typ
	r[rFlags] = e.flags
	le.PutUint32(r[rMode:], e.mode)
	le.PutUint32(r[rUID:], e.uid)
	le.PutUint32(r[rGID:], e.gid)
	le.PutUint32(r[rDevMajor:], e.devMajor)
	le.PutUint32(r[rDevMinor:], e.devMinor)
	le.PutUint32(r[rNlink:], m.nlink)
	le.PutUint64(r[rSize:], uint64(e.size))
	for t, at := range [3][2]int{{rMtime, rMtimeNs}, {rAtime, rAtimeNs}, {rCtime, rCtimeNs}} {
		if e.zero&(1<<t) != 0 {
			le.PutUint32(r[at[1]:], noTime)
			continue
		}
		le.PutUint64(r[at[0]:], uint64(e.sec[t]))
		le.PutUint32(r[at[1]:], e.nsec[t])
	}
	le.PutUint32(r[rIno:], m.ino)
	le.PutUint64(r[rHdrOff:], uint64(e.hdrOff))
	le.PutUint64(r[rDataOff:], uint64(e.dataOff))
	le.PutUint32(r[rEntryNo:], e.entryNo)
	copy(r[rSHA256:], e.sha[:])
	x.n++
	_, err := x.recs.Write(r)
	return err
}

func (x *recEncoder) flush() error {
	if err := x.recs.Flush(); err != nil {
		return err
	}
	return x.strs.Flush()
}

// xEnt is one entry as the build's streams carry it.
type xEnt struct {
	path, link, target, xattr, uname, gname string
	mode, uid, gid, devMajor, devMinor      uint32
	entryNo                                 uint32
	size, hdrOff, dataOff                   int64
	sec                                     [3]int64  // mtime, atime, ctime (Unix seconds)
	nsec                                    [3]uint32 // their nanoseconds
	zero                                    uint8     // bit k: time k was absent
	typ, flags                              byte
	sha, leaf                               hashing.Digest
}

const xEntFixed = 6*4 + 3*8 + 3*8 + 3*4 + 3 + 2*32

func (e *xEnt) append(b []byte) []byte {
	be := binary.BigEndian
	for _, v := range [6]uint32{e.mode, e.uid, e.gid, e.devMajor, e.devMinor, e.entryNo} {
		b = be.AppendUint32(b, v)
	}
	for _, v := range [6]int64{e.size, e.hdrOff, e.dataOff, e.sec[0], e.sec[1], e.sec[2]} {
		b = be.AppendUint64(b, uint64(v))
	}
	for _, v := range e.nsec {
		b = be.AppendUint32(b, v)
	}
	b = append(b, e.zero, e.typ, e.flags)
	b = append(b, e.sha[:]...)
	b = append(b, e.leaf[:]...)
	for _, s := range [6]string{e.path, e.link, e.target, e.xattr, e.uname, e.gname} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decode reads an entry appended to b; its strings point into b.
func (e *xEnt) decode(b []byte) error {
	if len(b) < xEntFixed {
		return fmt.Errorf("%w: an entry of %d bytes", extsort.ErrCorrupt, len(b))
	}
	be := binary.BigEndian
	var u [6]uint32
	for i := range u {
		u[i] = be.Uint32(b[4*i:])
	}
	e.mode, e.uid, e.gid, e.devMajor, e.devMinor, e.entryNo = u[0], u[1], u[2], u[3], u[4], u[5]
	var s [6]int64
	for i := range s {
		s[i] = int64(be.Uint64(b[24+8*i:]))
	}
	e.size, e.hdrOff, e.dataOff, e.sec = s[0], s[1], s[2], [3]int64{s[3], s[4], s[5]}
	for i := range e.nsec {
		e.nsec[i] = be.Uint32(b[72+4*i:])
	}
	e.zero, e.typ, e.flags = b[84], b[85], b[86]
	e.sha = hashing.Digest(b[87:119])
	e.leaf = hashing.Digest(b[119:151])
	b = b[xEntFixed:]
	for _, p := range [6]*string{&e.path, &e.link, &e.target, &e.xattr, &e.uname, &e.gname} {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return fmt.Errorf("%w: an entry's strings", extsort.ErrCorrupt)
		}
		*p = unsafe.String(unsafe.SliceData(b[w:]), int(n))
		b = b[w+int(n):]
	}
	return nil
}

// leafData is what the entry's Merkle leaf hashes (Record.LeafData).
func (e *xEnt) leafData() []byte {
	r := Record{Path: e.path, Type: e.typ, Mode: e.mode, UID: e.uid, GID: e.gid, Size: e.size, Linkname: e.link, SHA256: e.sha}
	r.ModTime = time.Unix(e.sec[0], int64(e.nsec[0]))
	return r.LeafData()
}

// appendPathKey appends p so that keys compare (bytes.Compare) as the
// strings do, '/' before every other byte if slashLow (component order: a
// directory's subtree follows it), and a key ends where its string does:
// 0x00 is escaped as 00 ff, '/' (slashLow) is 00 02, the end is 00 01.
func appendPathKey(dst []byte, p string, slashLow bool) []byte {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '/' && slashLow:
			dst = append(dst, 0, 2)
		case c == 0:
			dst = append(dst, 0, 0xff)
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, 0, 1)
}

// pathOfKey is the path appendPathKey(p, true) made a key of.
func pathOfKey(k []byte) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] != 0 || i+1 >= len(k) {
			b.WriteByte(k[i])
			continue
		}
		i++
		switch k[i] {
		case 2:
			b.WriteByte('/')
		case 0xff:
			b.WriteByte(0)
		case 1:
			return b.String()
		}
	}
	return b.String()
}

// underNonDirectory says what entries under a non-directory of the same
// layer are (one anomaly per such path, alike in both index builders).
func underNonDirectory(p string, n uint32, typ byte) string {
	what := map[byte]string{TypeSymlink: "symlink", TypeReg: "regular file", TypeLink: "hard link", TypeChar: "device", TypeBlock: "device", TypeFifo: "FIFO"}[typ]
	if what == "" {
		what = "non-directory"
	}
	return fmt.Sprintf("%d entries lie under %q, which this layer makes a %s: no listing of amber shows them, while a runtime extracting the layer writes them through it", n, p, what)
}

// appendTreeKey appends the key of the tree's order: the root, then by
// parent path and name.
func appendTreeKey(dst []byte, p string) []byte {
	if p == "" {
		return append(dst, 0)
	}
	pp := parentOf(p)
	return appendPathKey(appendPathKey(append(dst, 1), pp, false), baseOf(p, pp), false)
}

func baseOf(p, parent string) string {
	if parent == "" {
		return p
	}
	return p[len(parent)+1:]
}

func parentOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}
