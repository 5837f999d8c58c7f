package manifest

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
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/amber-forensics/amber/hashing"
)

// IndexBuilder collects a layer's tar entries as they are read and encodes
// the file index. Each entry is packed into a fixed-size record without
// pointers, its strings into one shared arena, and the tree is resolved
// with sorted arrays and binary search rather than maps of paths: about a
// quarter of the memory of a Record per entry (a layer of a million files
// was ~1 KB per entry), and nothing for the garbage collector to scan.
type IndexBuilder struct {
	ents      pEnts
	arena     [][]byte // blocks of arenaBlock bytes
	Anomalies []Anomaly
	entries   uint32
	strBytes  int64
	err       error
	// MaxStrings overrides MaxIndexStrings for this layer (0: use it;
	// negative: no limit).
	MaxStrings int64
}

// arenaBlock is the size of the arena's blocks: strings are appended to the
// last block and never straddle two (a tar name, link or PAX record is at
// most 1 MiB), so the arena grows without copying what it holds (a
// directory chain 16,000 deep fills 256 MiB of names: copied as one slice
// grew, that took 11 s of memmove).
const arenaBlock = 4 << 20

// sref is a string in the builder's arena: its block in off's high bits.
type sref struct{ off, n uint32 }

// pEnt is one entry, packed.
type pEnt struct {
	path, link, target, xattr, uname, gname sref
	mode, uid, gid, devMajor, devMinor      uint32
	entryNo                                 uint32
	size, hdrOff, dataOff                   int64
	sec                                     [3]int64  // mtime, atime, ctime (Unix seconds)
	nsec                                    [3]uint32 // their nanoseconds
	zero                                    uint8     // bit k: time k was absent
	typ, flags                              byte
	sha, leaf                               hashing.Digest
}

// MaxIndexStrings bounds the bytes of names, link targets and xattrs one
// layer's index may hold (0: no limit). The index stores each entry's full
// path, so a hostile layer (a directory chain 100,000 deep) would need
// memory in the square of its depth; past the limit the layer is refused.
var MaxIndexStrings int64 = DefaultMaxIndexStrings

// DefaultMaxIndexStrings allows a layer of two million files with paths of
// 128 bytes.
const DefaultMaxIndexStrings = 256 << 20

// ErrIndexTooBig reports a layer whose index would exceed MaxIndexStrings.
var ErrIndexTooBig = errors.New("manifest: layer too large to index")

type bRec struct {
	Record
	parentPath string
	base       string
	target     string // cleaned hard-link target
	// leaf is the record's Merkle leaf hash, computed as it is added (off
	// the end of the capture) unless hard-link resolution changes it.
	leaf hashing.Digest
}

// CleanName turns a tar entry name into the slash-separated path amber
// shows, rooted at the layer: never above it, whatever the name says.
// unsafe reports an absolute name or a ".." component.
func CleanName(name string) (p string, unsafe bool) {
	if strings.HasPrefix(name, "/") {
		unsafe = true
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			unsafe = true
			break
		}
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), unsafe
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
	limit := MaxIndexStrings
	if b.MaxStrings != 0 {
		limit = b.MaxStrings
	}
	if limit > 0 && b.strBytes > limit {
		b.err = fmt.Errorf("%w: its names, link targets and xattrs pass %d MiB at entry %d (%.80q..., %d levels deep); --max-index-mib raises the limit",
			ErrIndexTooBig, limit>>20, b.entries, h.Name, strings.Count(strings.Trim(h.Name, "/"), "/")+1)
		b.ents, b.arena = pEnts{}, nil
		return
	}
	p, unsafe := CleanName(h.Name)
	r := Record{}
	r.Path = p
	r.EntryNo = b.entries
	b.entries++
	r.HdrOffset = hdrOff
	r.DataOffset = dataOff
	r.SHA256 = sum
	r.Type = h.Typeflag
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		r.Type = TypeReg
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	default:
		r.Type = TypeReg
		b.Anomalies = append(b.Anomalies, Anomaly{Path: p, Kind: "unknown-type", Detail: fmt.Sprintf("tar type %q shown as a regular file", h.Typeflag)})
	}
	if p == "" && r.Type != TypeDir {
		b.Anomalies = append(b.Anomalies, Anomaly{Path: h.Name, Kind: "root-not-dir", Detail: "entry names the layer root but is not a directory; shown as the root's metadata"})
		r.Type = TypeDir
	}
	r.Mode = uint32(h.Mode) & 07777
	r.UID, r.GID = uint32(h.Uid), uint32(h.Gid)
	r.DevMajor, r.DevMinor = uint32(h.Devmajor), uint32(h.Devminor)
	if r.Type == TypeReg {
		r.Size = h.Size
	}
	r.ModTime, r.AccessTime, r.ChangeTime = h.ModTime, h.AccessTime, h.ChangeTime
	r.Uname, r.Gname = h.Uname, h.Gname
	r.Linkname = h.Linkname
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if r.Xattrs == nil {
				r.Xattrs = map[string]string{}
			}
			r.Xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = v
		}
	}
	if unsafe {
		r.Flags |= FlagUnsafe
		b.Anomalies = append(b.Anomalies, Anomaly{Path: p, Kind: "unsafe-name", Detail: fmt.Sprintf("tar name %q is absolute or has '..'; shown inside the layer as %q", h.Name, p)})
	}
	if sparse {
		r.Flags |= FlagSparse
	}
	var target string
	if r.Type == TypeLink {
		r.Flags |= FlagHardlink
		target, _ = CleanName(h.Linkname)
		r.DataOffset = -1
	}
	base := path.Base("/" + p)
	if p == "" {
		base = ""
	}
	if base == ".wh..wh..opq" {
		r.Flags |= FlagOpaque
	} else if strings.HasPrefix(base, ".wh.") {
		r.Flags |= FlagWhiteout
	}
	e := pEnt{
		mode: r.Mode, uid: r.UID, gid: r.GID, devMajor: r.DevMajor, devMinor: r.DevMinor,
		entryNo: r.EntryNo, size: r.Size, hdrOff: r.HdrOffset, dataOff: r.DataOffset,
		typ: r.Type, flags: r.Flags, sha: r.SHA256,
	}
	for k, t := range [3]time.Time{r.ModTime, r.AccessTime, r.ChangeTime} {
		e.sec[k], e.nsec[k] = t.Unix(), uint32(t.Nanosecond())
		if t.IsZero() {
			e.zero |= 1 << k
		}
	}
	if r.Flags&FlagHardlink == 0 {
		e.leaf = hashing.LeafHash(r.LeafData())
	}
	e.path = b.str(p)
	e.link = b.str(r.Linkname)
	e.target = b.str(target)
	e.uname = b.str(r.Uname)
	e.gname = b.str(r.Gname)
	if len(r.Xattrs) > 0 {
		e.xattr = b.str(string(encodeXattrs(r.Xattrs)))
	}
	if b.err == nil {
		b.ents.add(e)
	}
}

// str puts s in the arena.
func (b *IndexBuilder) str(s string) sref {
	if s == "" {
		return sref{}
	}
	last := len(b.arena) - 1
	if last < 0 || len(b.arena[last])+len(s) > arenaBlock {
		if len(s) > arenaBlock || len(b.arena) >= 1<<32/arenaBlock {
			if b.err == nil {
				b.err = fmt.Errorf("%w: its strings pass 4 GiB, or one passes %d MiB", ErrIndexTooBig, arenaBlock>>20)
				b.ents, b.arena = pEnts{}, nil
			}
			return sref{}
		}
		b.arena = append(b.arena, make([]byte, 0, arenaBlock))
		last++
	}
	r := sref{uint32(last)*arenaBlock + uint32(len(b.arena[last])), uint32(len(s))}
	b.arena[last] = append(b.arena[last], s...)
	return r
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
	ib, err := x.Bytes()
	if err != nil {
		return nil, hashing.Digest{}, 0, err
	}
	// The entries are in the index now: let them go (the arena stays as
	// long as an anomaly's path points into it).
	b.ents = pEnts{}
	return ib, x.Root, x.Files, nil
}

// Built is a resolved index, ready to be written.
type Built struct {
	// Size is the index's length in bytes.
	Size int64
	// Root and Files are the layer's Merkle root over its entries and
	// their count, as (*Index).MerkleRoot computes them.
	Root  hashing.Digest
	Files int
	enc   *indexEncoder
}

// WriteTo writes the index to w, streamed: the index of a layer of a
// million files is ~200 MB.
func (x *Built) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	if err := x.enc.writeTo(bw); err != nil {
		return 0, err
	}
	return x.Size, bw.Flush()
}

// Bytes returns the index.
func (x *Built) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(x.Size))
	err := x.enc.writeTo(&buf)
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

// Resolve resolves the tree; the result writes the index. The builder
// is not to be built again (its Anomalies stay).
func (b *IndexBuilder) Resolve(layerSize int64) (*Built, error) {
	if b.err != nil {
		return nil, b.err
	}
	// Strings point into the arena, which no longer grows.
	arena := b.arena
	str := func(r sref) string {
		if r.n == 0 {
			return ""
		}
		return unsafe.String(&arena[r.off/arenaBlock][r.off%arenaBlock], int(r.n))
	}
	ents := &b.ents
	pathOf := func(i uint32) string { return str(ents.at(i).path) }

	// The last entry for a path wins, as when a tar is extracted; earlier
	// ones are kept after the tree as shadowed records.
	n := ents.len()
	if uint64(n) >= uint64(NoEntry)/2 {
		return nil, fmt.Errorf("layer has too many entries for an index: %d", n)
	}
	byPath := make([]uint32, n)
	for i := range byPath {
		byPath[i] = uint32(i)
	}
	// Component order ('/' before any other byte): a directory's subtree
	// follows it directly. Stable: equal paths keep their entry order.
	slices.SortStableFunc(byPath, func(x, y uint32) int { return compareComponents(pathOf(x), pathOf(y)) })
	for k := 0; k+1 < len(byPath); k++ {
		if pathOf(byPath[k]) == pathOf(byPath[k+1]) {
			ents.at(byPath[k]).flags |= FlagShadowed
		}
	}
	var shadowed []uint32
	for i := uint32(0); i < uint32(n); i++ {
		if ents.at(i).flags&FlagShadowed != 0 {
			shadowed = append(shadowed, i)
			b.Anomalies = append(b.Anomalies, Anomaly{Path: pathOf(i), Kind: "duplicate-entry", Detail: fmt.Sprintf("tar entry %d is overwritten by a later entry of the same path", ents.at(i).entryNo)})
		}
	}
	// The paths present, in component order, with the directories they
	// imply added: each path's ancestors that are neither the path
	// before it nor above it (those were seen already) are missing.
	implied := func(path sref) uint32 {
		return ents.add(pEnt{path: path, typ: TypeDir, mode: 0o755, flags: FlagImplicit, entryNo: NoEntry, dataOff: -1, zero: 7})
	}
	tree := make([]uint32, 0, n-len(shadowed)+16)
	prev := ""
	hasRoot := false
	for _, i := range byPath {
		if ents.at(i).flags&FlagShadowed != 0 {
			continue
		}
		p := pathOf(i)
		if p == "" {
			hasRoot = true
		}
		for k := 0; k < len(p); k++ {
			if p[k] != '/' {
				continue
			}
			anc := p[:k]
			if anc == prev || (len(prev) > k && prev[k] == '/' && prev[:k] == anc) {
				continue
			}
			tree = append(tree, implied(sref{ents.at(i).path.off, uint32(k)}))
		}
		tree = append(tree, i)
		prev = p
	}
	if !hasRoot {
		tree = append(tree, implied(sref{}))
	}
	if uint64(ents.len()) >= uint64(NoEntry) {
		return nil, fmt.Errorf("layer has too many entries for an index: %d", ents.len())
	}
	// byPath now: the tree in component order, for lookups by path.
	byPath = append(byPath[:0], tree...)
	slices.SortFunc(byPath, func(x, y uint32) int { return compareComponents(pathOf(x), pathOf(y)) })
	lookup := func(p string) (uint32, bool) {
		k, ok := slices.BinarySearchFunc(byPath, p, func(x uint32, p string) int { return compareComponents(pathOf(x), p) })
		if !ok {
			return 0, false
		}
		return byPath[k], true
	}
	// The tree's order: the root, then by parent path and name.
	slices.SortFunc(tree, func(x, y uint32) int {
		a, c := pathOf(x), pathOf(y)
		if (a == "") != (c == "") {
			if a == "" {
				return -1
			}
			return 1
		}
		ap, cp := parentOf(a), parentOf(c)
		if v := strings.Compare(ap, cp); v != 0 {
			return v
		}
		return strings.Compare(baseOf(a, ap), baseOf(c, cp))
	})
	treeLen := len(tree)
	pos := make([]uint32, ents.len()) // entry -> its record number
	for k, i := range tree {
		pos[i] = uint32(k)
	}
	parent := make([]uint32, treeLen)
	first := make([]uint32, treeLen)
	nchild := make([]uint32, treeLen)
	ino := make([]uint32, treeLen)
	for k, i := range tree {
		ino[k] = uint32(k)
		first[k] = uint32(treeLen) // empty range at the end
		if k > 0 {
			pi, _ := lookup(parentOf(pathOf(i)))
			parent[k] = pos[pi]
		}
	}
	for k := 1; k < treeLen; k++ {
		p := parent[k]
		if nchild[p] == 0 {
			first[p] = uint32(k)
		}
		nchild[p]++
	}
	// Hard links share their target's record: inode, size, content.
	for k, i := range tree {
		r := ents.at(i)
		if r.flags&FlagHardlink == 0 {
			continue
		}
		ti, ok := lookup(str(r.target))
		for hops := 0; ok && ents.at(ti).flags&FlagHardlink != 0 && hops < 64; hops++ {
			ti, ok = lookup(str(ents.at(ti).target))
		}
		if !ok || ents.at(ti).typ != TypeReg || ents.at(ti).flags&FlagHardlink != 0 {
			r.flags |= FlagDangling
			b.Anomalies = append(b.Anomalies, Anomaly{Path: pathOf(i), Kind: "dangling-hardlink", Detail: fmt.Sprintf("hard link to %q, which is not a regular file of this layer", str(r.link))})
			continue
		}
		t := ents.at(ti)
		ino[k] = pos[ti]
		r.typ = TypeReg
		r.size = t.size
		r.leaf = hashing.Digest{}
		r.sha = t.sha
		r.dataOff = t.dataOff
		if t.flags&FlagSparse != 0 {
			r.flags |= FlagSparse
		}
	}
	nlink := make([]uint32, treeLen)
	for k, i := range tree {
		if ents.at(i).typ != TypeDir {
			nlink[ino[k]]++
		}
	}
	links := make([]uint32, treeLen)
	for k, i := range tree {
		if ents.at(i).typ == TypeDir {
			links[k] = 2
		} else {
			links[k] = nlink[ino[k]]
		}
	}
	for k, i := range tree {
		if ents.at(i).typ == TypeDir && k > 0 {
			links[parent[k]]++
		}
	}
	nlink = nil
	all := append(tree, shadowed...)
	meta := func(k int) recMeta {
		if k < treeLen {
			return recMeta{parent[k], first[k], nchild[k], links[k], ino[k]}
		}
		return recMeta{0, uint32(treeLen), 0, 1, uint32(k)}
	}
	for _, i := range shadowed {
		if ents.at(i).flags&FlagHardlink != 0 {
			ents.at(i).flags |= FlagDangling
		}
	}
	var leaves []hashing.Digest
	for _, i := range all {
		e := ents.at(i)
		if e.flags&FlagImplicit != 0 {
			continue
		}
		if e.leaf.IsZero() {
			r := e.record(str)
			e.leaf = hashing.LeafHash(r.LeafData())
		}
		leaves = append(leaves, e.leaf)
	}
	x, err := newIndexEncoder(ents, all, meta, str, treeLen, layerSize, b.entries)
	if err != nil {
		return nil, err
	}
	return &Built{Size: x.size(), Root: hashing.MerkleRoot(leaves), Files: len(leaves), enc: x}, nil
}

// pEnts holds the entries in blocks: no copy of them all as they grow, and
// no doubled peak while one is made.
type pEnts struct {
	blocks [][]pEnt
	n      int
}

const pEntBlock = 1 << 14

func (p *pEnts) len() int { return p.n }

func (p *pEnts) at(i uint32) *pEnt { return &p.blocks[i/pEntBlock][i%pEntBlock] }

func (p *pEnts) add(e pEnt) uint32 {
	if p.n%pEntBlock == 0 {
		p.blocks = append(p.blocks, make([]pEnt, 0, pEntBlock))
	}
	b := &p.blocks[len(p.blocks)-1]
	*b = append(*b, e)
	p.n++
	return uint32(p.n - 1)
}

// recMeta is what the tree gives a record.
type recMeta struct{ parent, first, nchild, nlink, ino uint32 }

// record unpacks what LeafData reads.
func (e *pEnt) record(str func(sref) string) Record {
	r := Record{Path: str(e.path), Type: e.typ, Mode: e.mode, UID: e.uid, GID: e.gid, Size: e.size, Linkname: str(e.link), SHA256: e.sha}
	r.ModTime = time.Unix(e.sec[0], int64(e.nsec[0]))
	return r
}

// compareComponents orders paths component by component: '/' sorts
// before every other byte.
func compareComponents(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x == '/' {
			return -1
		}
		if y == '/' {
			return 1
		}
		if x < y {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
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

// indexEncoder writes an index from resolved entries: the header, the
// records, then the string table, streamed (a layer of a million files has
// an index of ~200 MB: verify only hashes it).
type indexEncoder struct {
	ents    *pEnts
	order   []uint32
	meta    func(int) recMeta
	str     func(sref) string
	treeLen int
	layer   int64
	entries uint32
	// owners maps an interned owner name to its offset in the table.
	owners map[string]uint64
	total  uint64 // bytes of the string table
}

func newIndexEncoder(ents *pEnts, order []uint32, meta func(int) recMeta, str func(sref) string, treeLen int, layerSize int64, entries uint32) (*indexEncoder, error) {
	if uint64(len(order)) >= uint64(NoEntry) {
		return nil, fmt.Errorf("layer has too many entries for an index: %d", len(order))
	}
	x := &indexEncoder{ents: ents, order: order, meta: meta, str: str, treeLen: treeLen, layer: layerSize, entries: entries, owners: map[string]uint64{}}
	x.total, _ = x.place(nil)
	if x.total > uint64(^uint32(0)) {
		return nil, fmt.Errorf("index string table exceeds 4 GiB")
	}
	return x, nil
}

// size is the index's length in bytes.
func (x *indexEncoder) size() int64 {
	return int64(indexHeaderSize) + int64(len(x.order))*RecordSize + int64(x.total)
}

// place walks the string table as it is laid out: each record's five
// strings (path, link target, owner, group, xattrs) in record order, each
// appended unless it is an owner name (up to 64 bytes) stored already,
// which is stored once (the first walk decides where). fn, if set, gets
// each non-empty string: its record, slot, offset in the table and
// whether it is stored there. place returns the table's length.
func (x *indexEncoder) place(fn func(k, slot int, r sref, off uint64, first bool) error) (uint64, error) {
	var at uint64
	for k, i := range x.order {
		e := x.ents.at(i)
		for slot, r := range [5]sref{e.path, e.link, e.uname, e.gname, e.xattr} {
			if r.n == 0 {
				continue
			}
			off, first := at, true
			if (slot == 2 || slot == 3) && r.n <= 64 {
				s := x.str(r)
				if o, ok := x.owners[s]; ok && o < at {
					off, first = o, false
				} else if !ok {
					x.owners[s] = at
				}
			}
			if first {
				at += uint64(r.n)
			}
			if fn != nil {
				if err := fn(k, slot, r, off, first); err != nil {
					return at, err
				}
			}
		}
	}
	return at, nil
}

// writeTo writes the index to w.
func (x *indexEncoder) writeTo(w io.Writer) error {
	le := binary.LittleEndian
	var h [indexHeaderSize]byte
	copy(h[:], indexMagic)
	le.PutUint32(h[8:], indexVersion)
	le.PutUint32(h[12:], RecordSize)
	le.PutUint32(h[16:], uint32(len(x.order)))
	le.PutUint32(h[20:], uint32(x.treeLen))
	le.PutUint64(h[24:], uint64(indexHeaderSize+len(x.order)*RecordSize))
	le.PutUint64(h[32:], x.total)
	le.PutUint64(h[40:], uint64(x.layer))
	le.PutUint32(h[48:], x.entries)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	// The records, each with its strings' places in the table.
	var w0 [RecordSize]byte
	k := 0
	flush := func() error {
		e := x.ents.at(x.order[k])
		m := x.meta(k)
		r := w0[:]
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
				le.PutUint64(r[at[0]:], 0)
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
		_, err := w.Write(r)
		clear(w0[:])
		k++
		return err
	}
	at := [5][2]int{{rNameOff, rNameLen}, {rLinkOff, rLinkLen}, {rUnameOff, rUnameLen}, {rGnameOff, rGnameLen}, {rXattrOff, rXattrLen}}
	if _, err := x.place(func(rec, slot int, r sref, off uint64, _ bool) error {
		for k < rec { // the records before it (some have no strings)
			if err := flush(); err != nil {
				return err
			}
		}
		le.PutUint32(w0[at[slot][0]:], uint32(off))
		le.PutUint32(w0[at[slot][1]:], r.n)
		return nil
	}); err != nil {
		return err
	}
	for k < len(x.order) {
		if err := flush(); err != nil {
			return err
		}
	}
	// The table itself.
	_, err := x.place(func(_, _ int, r sref, _ uint64, first bool) error {
		if !first {
			return nil
		}
		_, err := io.WriteString(w, x.str(r))
		return err
	})
	return err
}
