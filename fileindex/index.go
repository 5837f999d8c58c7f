package fileindex

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/amber-forensics/amber/hashing"
)

// The file index of a layer is a table of fixed-width records, one per path,
// sorted by (parent directory, name) so that the children of a directory
// are one contiguous, name-sorted range: a lookup is a binary search per
// path component, and nothing is parsed into per-file objects. Strings
// (paths, link targets, owner names, xattrs) live in a table after the
// records. A record's index is stable: inode number = index + 2.
//
//	header (64 bytes) | records (RecordSize each) | string table
const (
	indexMagic      = "AMBERIX1"
	indexVersion    = 1
	indexHeaderSize = 64
	// RecordSize is the width of one index record.
	RecordSize = 192
	// NoEntry marks a record that has no tar entry (an implied directory).
	NoEntry = ^uint32(0)
	// MaxIndexSize bounds an index read from an archive.
	MaxIndexSize = 4 << 30
)

// Record flags.
const (
	FlagImplicit = 1 << iota // no tar entry: a parent directory the layer implies
	FlagHardlink             // a hard link; content is its target's
	FlagSparse               // stored sparse: content is not one contiguous range
	FlagUnsafe               // the tar name was absolute or had ".." components
	FlagWhiteout             // an OCI whiteout marker .wh.NAME
	FlagOpaque               // an OCI opaque-directory marker .wh..wh..opq
	FlagShadowed             // a later entry of the layer has the same path
	FlagDangling             // a hard link whose target is not in the layer
)

// Record field offsets.
const (
	rNameOff  = 0
	rNameLen  = 4
	rParent   = 8
	rFirst    = 12
	rNChild   = 16
	rLinkOff  = 20
	rLinkLen  = 24
	rType     = 28
	rFlags    = 29
	rMode     = 32
	rUID      = 36
	rGID      = 40
	rDevMajor = 44
	rDevMinor = 48
	rNlink    = 52
	rSize     = 56
	rMtime    = 64
	rMtimeNs  = 72
	rAtimeNs  = 76
	rAtime    = 80
	rCtime    = 88
	rCtimeNs  = 96
	rIno      = 100
	rHdrOff   = 104
	rDataOff  = 112
	rUnameOff = 120
	rUnameLen = 124
	rGnameOff = 128
	rGnameLen = 132
	rXattrOff = 136
	rXattrLen = 140
	rEntryNo  = 144
	rSHA256   = 152
)

// Entry types, as tar typeflags; the index normalises regular files to '0'.
const (
	TypeReg     = tar.TypeReg
	TypeLink    = tar.TypeLink
	TypeSymlink = tar.TypeSymlink
	TypeChar    = tar.TypeChar
	TypeBlock   = tar.TypeBlock
	TypeDir     = tar.TypeDir
	TypeFifo    = tar.TypeFifo
)

// Record is one decoded index record. Index.Record fills it from the table
// on demand; nothing keeps one per file.
type Record struct {
	Index      uint32
	Path       string
	Parent     uint32
	FirstChild uint32
	NumChild   uint32
	Linkname   string
	Type       byte
	Flags      uint8
	Mode       uint32 // permission and setuid/setgid/sticky bits
	UID, GID   uint32
	DevMajor   uint32
	DevMinor   uint32
	Nlink      uint32
	Size       int64
	ModTime    time.Time
	AccessTime time.Time
	ChangeTime time.Time
	// Ino is the record whose content and inode this name shares (itself
	// unless it is a hard link).
	Ino        uint32
	HdrOffset  int64
	DataOffset int64
	Uname      string
	Gname      string
	EntryNo    uint32
	SHA256     hashing.Digest
	Xattrs     map[string]string
}

// Name is the last path component.
func (r *Record) Name() string {
	if r.Path == "" {
		return "/"
	}
	return r.Path[strings.LastIndexByte(r.Path, '/')+1:]
}

// IsDir reports whether the record is a directory.
func (r *Record) IsDir() bool { return r.Type == TypeDir }

// Has reports whether flag f is set.
func (r *Record) Has(f uint8) bool { return r.Flags&f != 0 }

// ErrBadIndex reports a malformed file index.
var ErrBadIndex = errors.New("manifest: malformed file index")

// Index is a decoded view over an index blob. It reads records in place:
// in the blob's bytes, or (a large index of an archive) in pages read as
// they are needed.
type Index struct {
	b         []byte // the whole index, or nil when pg reads it in pages
	pg        *pager
	count     uint32
	tree      uint32
	str       []byte
	strOff    uint64
	strLen    uint64
	LayerSize int64
	Entries   uint32
}

// ParseIndex checks the header and bounds of an index blob and returns a
// view over it. Per-record bounds are checked when records are read, and
// Check walks them all. b must not change afterwards: decoded records'
// strings share its bytes.
func ParseIndex(b []byte) (*Index, error) {
	ix, err := parseIndexHeader(b, int64(len(b)))
	if err != nil {
		return nil, err
	}
	ix.b = b
	ix.str = b[ix.strOff:]
	return ix, nil
}

// parseIndexHeader checks the header of an index of size bytes.
func parseIndexHeader(b []byte, size int64) (*Index, error) {
	if len(b) < indexHeaderSize || string(b[:8]) != indexMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrBadIndex)
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[8:]); v != indexVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadIndex, v)
	}
	if rs := le.Uint32(b[12:]); rs != RecordSize {
		return nil, fmt.Errorf("%w: record size %d", ErrBadIndex, rs)
	}
	count := le.Uint32(b[16:])
	tree := le.Uint32(b[20:])
	strOff := le.Uint64(b[24:])
	strLen := le.Uint64(b[32:])
	ix := &Index{count: count, tree: tree, strOff: strOff, strLen: strLen, LayerSize: int64(le.Uint64(b[40:])), Entries: le.Uint32(b[48:])}
	recEnd := uint64(indexHeaderSize) + uint64(count)*RecordSize
	if count == 0 || tree == 0 || tree > count || strOff != recEnd || strOff+strLen != uint64(size) || ix.LayerSize < 0 {
		return nil, fmt.Errorf("%w: inconsistent header (count %d, tree %d, strings %d+%d, size %d)", ErrBadIndex, count, tree, strOff, strLen, size)
	}
	return ix, nil
}

// Len is the number of records, shadowed ones included.
func (ix *Index) Len() uint32 { return ix.count }

// TreeLen is the number of records in the tree; records from TreeLen to Len
// are shadowed duplicates, kept as evidence.
func (ix *Index) TreeLen() uint32 { return ix.tree }

// Bytes returns the encoded index (nil for an index read in pages).
func (ix *Index) Bytes() []byte { return ix.b }

// rec returns record i's bytes (i < count: callers check).
// RecordBytes is record i as stored (RecordSize bytes).
func (ix *Index) RecordBytes(i uint32) ([]byte, error) { return ix.rec(i) }

func (ix *Index) rec(i uint32) ([]byte, error) {
	o := indexHeaderSize + int64(i)*RecordSize
	if ix.b != nil {
		return ix.b[o : o+RecordSize], nil
	}
	return ix.pg.read(o, RecordSize)
}

// strBytes returns n bytes at o of the string table. They are never
// written: strings may share them.
func (ix *Index) strBytes(o, n uint64) ([]byte, bool) {
	if o+n > ix.strLen {
		return nil, false
	}
	if ix.b != nil {
		return ix.str[o : o+n], true
	}
	b, err := ix.pg.read(int64(ix.strOff+o), int64(n))
	return b, err == nil
}

func (ix *Index) str32(r []byte, offAt, lenAt int) (string, error) {
	le := binary.LittleEndian
	o, n := uint64(le.Uint32(r[offAt:])), uint64(le.Uint32(r[lenAt:]))
	b, ok := ix.strBytes(o, n)
	if !ok {
		return "", fmt.Errorf("%w: string out of range or unreadable", ErrBadIndex)
	}
	if n == 0 {
		return "", nil
	}
	// The index bytes are never written after ParseIndex (and a page read
	// is a fresh copy): strings share them instead of copying (a record
	// decoded per lookup would otherwise copy its full path each time).
	return unsafe.String(&b[0], n), nil
}

// Path returns the path of record i without decoding the rest.
func (ix *Index) Path(i uint32) (string, error) {
	if i >= ix.count {
		return "", fmt.Errorf("%w: record %d of %d", ErrBadIndex, i, ix.count)
	}
	r, err := ix.rec(i)
	if err != nil {
		return "", err
	}
	return ix.str32(r, rNameOff, rNameLen)
}

// name returns the last component of record i's path, in place (no copy:
// a lookup compares many names, and paths may be long).
func (ix *Index) name(i uint32) ([]byte, bool) {
	if i >= ix.count {
		return nil, false
	}
	r, err := ix.rec(i)
	if err != nil {
		return nil, false
	}
	le := binary.LittleEndian
	p, ok := ix.strBytes(uint64(le.Uint32(r[rNameOff:])), uint64(le.Uint32(r[rNameLen:])))
	if !ok {
		return nil, false
	}
	return p[bytes.LastIndexByte(p, '/')+1:], true
}

// Type returns record i's type (Type*) without decoding the rest.
func (ix *Index) Type(i uint32) (byte, error) {
	if i >= ix.count {
		return 0, fmt.Errorf("%w: record %d of %d", ErrBadIndex, i, ix.count)
	}
	r, err := ix.rec(i)
	if err != nil {
		return 0, err
	}
	return r[rType], nil
}

// Record decodes record i.
func (ix *Index) Record(i uint32) (Record, error) {
	if i >= ix.count {
		return Record{}, fmt.Errorf("%w: record %d of %d", ErrBadIndex, i, ix.count)
	}
	r, err := ix.rec(i)
	if err != nil {
		return Record{}, err
	}
	le := binary.LittleEndian
	var rec Record
	rec.Index = i
	if rec.Path, err = ix.str32(r, rNameOff, rNameLen); err != nil {
		return rec, err
	}
	if rec.Linkname, err = ix.str32(r, rLinkOff, rLinkLen); err != nil {
		return rec, err
	}
	if rec.Uname, err = ix.str32(r, rUnameOff, rUnameLen); err != nil {
		return rec, err
	}
	if rec.Gname, err = ix.str32(r, rGnameOff, rGnameLen); err != nil {
		return rec, err
	}
	x, err := ix.str32(r, rXattrOff, rXattrLen)
	if err != nil {
		return rec, err
	}
	if x != "" {
		if rec.Xattrs, err = decodeXattrs([]byte(x)); err != nil {
			return rec, err
		}
	}
	rec.Parent = le.Uint32(r[rParent:])
	rec.FirstChild = le.Uint32(r[rFirst:])
	rec.NumChild = le.Uint32(r[rNChild:])
	rec.Type = r[rType]
	rec.Flags = r[rFlags]
	rec.Mode = le.Uint32(r[rMode:])
	rec.UID = le.Uint32(r[rUID:])
	rec.GID = le.Uint32(r[rGID:])
	rec.DevMajor = le.Uint32(r[rDevMajor:])
	rec.DevMinor = le.Uint32(r[rDevMinor:])
	rec.Nlink = le.Uint32(r[rNlink:])
	rec.Size = int64(le.Uint64(r[rSize:]))
	rec.ModTime = unixTime(int64(le.Uint64(r[rMtime:])), le.Uint32(r[rMtimeNs:]))
	rec.AccessTime = unixTime(int64(le.Uint64(r[rAtime:])), le.Uint32(r[rAtimeNs:]))
	rec.ChangeTime = unixTime(int64(le.Uint64(r[rCtime:])), le.Uint32(r[rCtimeNs:]))
	rec.Ino = le.Uint32(r[rIno:])
	rec.HdrOffset = int64(le.Uint64(r[rHdrOff:]))
	rec.DataOffset = int64(le.Uint64(r[rDataOff:]))
	rec.EntryNo = le.Uint32(r[rEntryNo:])
	copy(rec.SHA256[:], r[rSHA256:rSHA256+32])
	if rec.Parent >= ix.count || rec.Ino >= ix.count || rec.Size < 0 ||
		uint64(rec.FirstChild)+uint64(rec.NumChild) > uint64(ix.tree) ||
		(rec.DataOffset >= 0 && rec.DataOffset+rec.Size > ix.LayerSize && !rec.Has(FlagSparse)) {
		return rec, fmt.Errorf("%w: record %d (%q) has out-of-range fields", ErrBadIndex, i, rec.Path)
	}
	return rec, nil
}

// noTime in a nanoseconds field marks a time the tar header did not have
// (atime, ctime); the Unix epoch itself is a real, common mtime.
const noTime = ^uint32(0)

func unixTime(sec int64, nsec uint32) time.Time {
	if nsec == noTime {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec%1e9)).UTC()
}

// Lookup finds the record of a cleaned, slash-separated path relative to
// the layer root ("" is the root).
func (ix *Index) Lookup(p string) (uint32, bool) {
	i := uint32(0)
	if p == "" || p == "." || p == "/" {
		return 0, true
	}
	for _, comp := range strings.Split(strings.Trim(p, "/"), "/") {
		j, ok := ix.Child(i, comp)
		if !ok {
			return 0, false
		}
		i = j
	}
	return i, true
}

// Child finds the child called name of directory record dir.
func (ix *Index) Child(dir uint32, name string) (uint32, bool) {
	if dir >= ix.tree {
		return 0, false
	}
	r, err := ix.rec(dir)
	if err != nil {
		return 0, false
	}
	le := binary.LittleEndian
	first, n := le.Uint32(r[rFirst:]), le.Uint32(r[rNChild:])
	if uint64(first)+uint64(n) > uint64(ix.tree) {
		return 0, false
	}
	var bad bool
	k := sort.Search(int(n), func(k int) bool {
		s, ok := ix.name(first + uint32(k))
		if !ok {
			bad = true
			return true
		}
		return string(s) >= name
	})
	if bad || k >= int(n) {
		return 0, false
	}
	if s, _ := ix.name(first + uint32(k)); string(s) != name {
		return 0, false
	}
	return first + uint32(k), true
}

// Children returns the range [first, first+n) of dir's children.
func (ix *Index) Children(dir uint32) (first, n uint32) {
	if dir >= ix.tree {
		return 0, 0
	}
	r, err := ix.rec(dir)
	if err != nil {
		return 0, 0
	}
	le := binary.LittleEndian
	first, n = le.Uint32(r[rFirst:]), le.Uint32(r[rNChild:])
	if uint64(first)+uint64(n) > uint64(ix.tree) {
		return 0, 0
	}
	return first, n
}

// LeafData is what a record contributes to its layer's Merkle tree: every
// fact an examiner relies on, in a fixed text form.
func (r *Record) LeafData() []byte {
	b := make([]byte, 0, len(r.Path)+len(r.Linkname)+160)
	b = append(b, r.Path...)
	b = append(b, 0, r.Type, 0)
	b = strconv.AppendUint(b, uint64(r.Mode), 8)
	b = append(b, 0)
	b = strconv.AppendUint(b, uint64(r.UID), 10)
	b = append(b, 0)
	b = strconv.AppendUint(b, uint64(r.GID), 10)
	b = append(b, 0)
	b = strconv.AppendInt(b, r.Size, 10)
	b = append(b, 0)
	b = strconv.AppendInt(b, r.ModTime.Unix(), 10)
	b = append(b, '.')
	ns := strconv.AppendInt(nil, int64(r.ModTime.Nanosecond()), 10)
	for i := len(ns); i < 9; i++ {
		b = append(b, '0')
	}
	b = append(b, ns...)
	b = append(b, 0)
	b = append(b, r.Linkname...)
	b = append(b, 0)
	var hx [64]byte
	hex.Encode(hx[:], r.SHA256[:])
	return append(b, hx[:]...)
}

// MerkleRoot computes the layer's Merkle root over all records with a tar
// entry (shadowed ones included), in record order.
// The leaves are folded as they are hashed: no slice of them.
func (ix *Index) MerkleRoot() (hashing.Digest, int, error) {
	var m hashing.Merkle
	for i := uint32(0); i < ix.count; i++ {
		rec, err := ix.Record(i)
		if err != nil {
			return hashing.Digest{}, 0, err
		}
		if rec.Has(FlagImplicit) {
			continue
		}
		m.Add(hashing.LeafHash(rec.LeafData()))
	}
	return m.Root(), m.Len(), nil
}

// Check decodes every record, so that a damaged index is found before it is
// used, and confirms the tree links are consistent.
func (ix *Index) Check() error {
	for i := uint32(0); i < ix.count; i++ {
		rec, err := ix.Record(i)
		if err != nil {
			return err
		}
		if i < ix.tree && i != 0 {
			if rec.Parent >= ix.tree {
				return fmt.Errorf("%w: record %d has parent %d outside the tree", ErrBadIndex, i, rec.Parent)
			}
			f, n := ix.Children(rec.Parent)
			if i < f || i >= f+n {
				return fmt.Errorf("%w: record %d is not among its parent's children", ErrBadIndex, i)
			}
		}
	}
	return nil
}

func encodeXattrs(m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(m[k])))
		b = append(b, m[k]...)
	}
	return b
}

func decodeXattrs(b []byte) (map[string]string, error) {
	m := map[string]string{}
	for len(b) > 0 {
		var kv [2]string
		for j := range kv {
			if len(b) < 4 {
				return nil, fmt.Errorf("%w: xattrs truncated", ErrBadIndex)
			}
			n := binary.LittleEndian.Uint32(b)
			b = b[4:]
			if uint64(n) > uint64(len(b)) {
				return nil, fmt.Errorf("%w: xattrs truncated", ErrBadIndex)
			}
			kv[j] = string(b[:n])
			b = b[n:]
		}
		m[kv[0]] = kv[1]
	}
	return m, nil
}

// SameMtime compares modification times; a side stored at whole seconds
// (the engine's export stream, docker build layers) is compared at whole
// seconds.
func SameMtime(a, b time.Time) bool {
	if a.Nanosecond() == 0 || b.Nanosecond() == 0 {
		return a.Unix() == b.Unix()
	}
	return a.Equal(b)
}

// SameXattrs reports whether two xattr sets are equal.
func SameXattrs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
