package fileindex

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/extsort"
	"github.com/amber-forensics/amber/manifest"
)

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
