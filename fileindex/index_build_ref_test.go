package fileindex

// The index builder as it was before it sorted externally (records in
// memory, maps of paths), kept to check that the builder writes the same
// bytes; see TestBuilderMatchesReference.

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

type refBuilder struct {
	recs      []*refRec
	Anomalies []manifest.Anomaly
	entries   uint32
	strBytes  int64
	err       error
	// MaxStrings as IndexBuilder's (0: DefaultMaxIndexStrings;
	// negative: no limit).
	MaxStrings int64
}

type refRec struct {
	Record
	parentPath string
	base       string
	target     string // cleaned hard-link target
	// leaf is the record's Merkle leaf hash, computed as it is added (off
	// the end of the capture) unless hard-link resolution changes it.
	leaf hashing.Digest
}

// Add records one tar entry. hdrOff and dataOff are offsets in the layer
// blob; sum is the SHA-256 of its content.
func (b *refBuilder) Add(h *tar.Header, hdrOff, dataOff int64, sum hashing.Digest, sparse bool) {
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
		b.err = fmt.Errorf("%w: its names, link targets and xattrs pass %d MiB at entry %d (%.80q..., %d levels deep); --max-index-mib raises the limit",
			ErrIndexTooBig, limit>>20, b.entries, h.Name, strings.Count(strings.Trim(h.Name, "/"), "/")+1)
		b.recs = nil
		return
	}
	p, unsafe := CleanName(h.Name)
	r := refRec{}
	r.Path = p
	r.EntryNo = b.entries
	b.entries++
	r.HdrOffset = hdrOff
	r.DataOffset = dataOff
	r.SHA256 = sum
	r.Type = h.Typeflag
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		r.Type = TypeReg
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
	default:
		r.Type = TypeReg
		b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: p, Kind: "unknown-type", Detail: fmt.Sprintf("tar type %q shown as a regular file", h.Typeflag)})
	}
	if p == "" && r.Type != TypeDir {
		b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: h.Name, Kind: "root-not-dir", Detail: "entry names the layer root but is not a directory; shown as the root's metadata"})
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
		b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: p, Kind: "unsafe-name", Detail: fmt.Sprintf("tar name %q is absolute or has '..'; shown inside the layer as %q", h.Name, p)})
	}
	if sparse {
		r.Flags |= FlagSparse
	}
	if r.Type == TypeLink {
		r.Flags |= FlagHardlink
		r.target, _ = CleanName(h.Linkname)
		r.DataOffset = -1
	}
	base := path.Base("/" + p)
	if p == "" {
		base = ""
	}
	if base == ".wh..wh..opq" {
		r.Flags |= FlagOpaque
		if parentOf(p) == "" {
			b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: p, Kind: "root-opaque", Detail: rootOpaqueDetail})
		}
	} else if strings.HasPrefix(base, ".wh.") {
		r.Flags |= FlagWhiteout
		switch base {
		case ".wh.", ".wh..", ".wh...":
			b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: p, Kind: "bad-whiteout", Detail: badWhiteoutDetail(strings.TrimPrefix(base, ".wh."))})
		}
	}
	if r.Flags&FlagHardlink == 0 {
		r.leaf = hashing.LeafHash(r.LeafData())
	}
	b.recs = append(b.recs, &r)
}

// buildWithRoot resolves the tree and encodes the index. It also returns
// the layer's Merkle root over its entries and their count, as
// (*Index).MerkleRoot computes them from the encoded index.
func (b *refBuilder) buildWithRoot(layerSize int64) ([]byte, hashing.Digest, int, error) {
	if b.err != nil {
		return nil, hashing.Digest{}, 0, b.err
	}
	// The last entry for a path wins, as when a tar is extracted; earlier
	// ones are kept after the tree as shadowed records.
	// One map from path to record serves three rounds: the last entry of
	// each path, then the paths present (implied parents added), then each
	// path's place in the sorted tree. (A million-file layer: one map, not
	// three.)
	last := make(map[string]int, len(b.recs))
	for i, r := range b.recs {
		last[r.Path] = i
	}
	tree := make([]*refRec, 0, len(b.recs)+16)
	var shadowed []*refRec
	for i, r := range b.recs {
		if last[r.Path] != i {
			r.Flags |= FlagShadowed
			shadowed = append(shadowed, r)
			b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: r.Path, Kind: "duplicate-entry", Detail: fmt.Sprintf("tar entry %d is overwritten by a later entry of the same path", r.EntryNo)})
			continue
		}
		tree = append(tree, r)
	}
	// Implied parent directories.
	implied := func(p string) *refRec {
		r := &refRec{}
		r.Path = p
		r.Type = TypeDir
		r.Mode = 0o755
		r.Flags = FlagImplicit
		r.EntryNo = NoEntry
		r.DataOffset = -1
		return r
	}
	for i := 0; i < len(tree); i++ {
		p := tree[i].Path
		for p != "" {
			p = parentOf(p)
			if _, ok := last[p]; ok {
				break
			}
			last[p] = -1
			tree = append(tree, implied(p))
		}
	}
	if _, ok := last[""]; !ok {
		tree = append(tree, implied(""))
	}
	for _, r := range tree {
		if r.Path == "" {
			r.parentPath, r.base = "", ""
		} else {
			r.parentPath = parentOf(r.Path)
			r.base = r.Path[len(r.parentPath):]
			if r.parentPath != "" {
				r.base = r.base[1:]
			}
		}
	}
	slices.SortFunc(tree, func(a, c *refRec) int {
		if (a.Path == "") != (c.Path == "") {
			if a.Path == "" {
				return -1
			}
			return 1
		}
		if x := strings.Compare(a.parentPath, c.parentPath); x != 0 {
			return x
		}
		return strings.Compare(a.base, c.base)
	})
	pos := last
	for i, r := range tree {
		pos[r.Path] = i
	}
	for i, r := range tree {
		r.Index = uint32(i)
		r.Ino = uint32(i)
		r.FirstChild = uint32(len(tree)) // empty range at the end
		if i > 0 {
			r.Parent = uint32(pos[r.parentPath])
		}
	}
	for i := 1; i < len(tree); i++ {
		p := tree[tree[i].Parent]
		if p.NumChild == 0 {
			p.FirstChild = uint32(i)
		}
		p.NumChild++
	}
	var under []*refRec
	for _, r := range tree {
		if r.NumChild > 0 && r.Type != TypeDir && r.Path != "" {
			under = append(under, r)
		}
	}
	sort.Slice(under, func(i, j int) bool {
		return bytes.Compare(appendPathKey(nil, under[i].Path, true), appendPathKey(nil, under[j].Path, true)) < 0
	})
	for _, r := range under {
		b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: r.Path, Kind: "under-non-directory", Detail: underNonDirectory(r.Path, r.NumChild, r.Type)})
	}
	treeLen := len(tree)
	for i, r := range shadowed {
		r.Index = uint32(treeLen + i)
		r.Ino = r.Index
		r.Parent = 0
		r.FirstChild = uint32(treeLen)
		r.NumChild = 0
		r.Nlink = 1
		if r.Flags&FlagHardlink != 0 {
			r.Flags |= FlagDangling
		}
	}
	// Hard links share their target's record: inode, size, content. The
	// target is the entry of the path that precedes the linking entry, as
	// when the tar is extracted in order (links to links hop by hop), a
	// shadowed entry if the path is written again later.
	entries := map[string][]*refRec{} // each path's entries, in entry order
	for _, r := range b.recs {
		entries[r.Path] = append(entries[r.Path], r)
	}
	before := func(p string, n uint32) *refRec {
		var got *refRec
		for _, e := range entries[p] {
			if e.EntryNo < n {
				got = e
			}
		}
		return got
	}
	for _, r := range tree {
		if r.Flags&FlagHardlink == 0 {
			continue
		}
		cur, t := r, (*refRec)(nil)
		for hops := 0; ; hops++ {
			t = before(cur.target, cur.EntryNo)
			if t == nil || t.Flags&FlagHardlink == 0 || hops >= 64 {
				break
			}
			cur = t
		}
		if t == nil || t.Type != TypeReg || t.Flags&FlagHardlink != 0 {
			r.Flags |= FlagDangling
			why := "which is not a regular file of this layer"
			if es := entries[r.target]; t == nil && cur == r && len(es) > 0 && es[len(es)-1].EntryNo > r.EntryNo {
				why = laterTarget
			}
			b.Anomalies = append(b.Anomalies, manifest.Anomaly{Path: r.Path, Kind: "dangling-hardlink", Detail: fmt.Sprintf("hard link to %q, %s", r.Linkname, why)})
			continue
		}
		r.Ino = t.Index
		r.Type = TypeReg
		r.Size = t.Size
		r.leaf = hashing.Digest{}
		r.SHA256 = t.SHA256
		r.DataOffset = t.DataOffset
		if t.Flags&FlagSparse != 0 {
			r.Flags |= FlagSparse
		}
	}
	// A file's link count is its names in the tree: a shadowed entry's
	// links do not count it.
	nlink := make([]uint32, len(tree)+len(shadowed))
	for _, r := range tree {
		if r.Type != TypeDir {
			nlink[r.Ino]++
		}
	}
	for _, r := range tree {
		if r.Type == TypeDir {
			r.Nlink = 2
		} else {
			r.Nlink = nlink[r.Ino]
		}
	}
	for i, r := range tree {
		if r.Type == TypeDir && i > 0 {
			tree[r.Parent].Nlink++
		}
	}
	all := append(tree, shadowed...)
	leaves := make([]hashing.Digest, 0, len(all))
	for _, r := range all {
		if r.Flags&FlagImplicit != 0 {
			continue
		}
		if r.leaf.IsZero() {
			r.leaf = hashing.LeafHash(r.LeafData())
		}
		leaves = append(leaves, r.leaf)
	}
	ib, err := refEncodeIndex(all, treeLen, layerSize, b.entries)
	return ib, hashing.MerkleRoot(leaves), len(leaves), err
}

func refEncodeIndex(recs []*refRec, treeLen int, layerSize int64, entries uint32) ([]byte, error) {
	if uint64(len(recs)) >= uint64(NoEntry) {
		return nil, fmt.Errorf("layer has too many entries for an index: %d", len(recs))
	}
	// Pass 1: the string table. Owner names repeat on every record and are
	// stored once; paths and link targets are unique enough to append.
	type ref struct{ off, n uint32 }
	refs := make([]ref, 5*len(recs))
	total := 0
	for _, r := range recs {
		total += len(r.Path) + len(r.Linkname)
	}
	str := make([]byte, 0, total+4096)
	owners := map[string]uint32{}
	var tooBig bool
	add := func(s string, intern bool) ref {
		if s == "" {
			return ref{}
		}
		if intern {
			if o, ok := owners[s]; ok {
				return ref{o, uint32(len(s))}
			}
		}
		if uint64(len(str))+uint64(len(s)) > uint64(^uint32(0)) {
			tooBig = true
			return ref{}
		}
		o := uint32(len(str))
		str = append(str, s...)
		if intern {
			owners[s] = o
		}
		return ref{o, uint32(len(s))}
	}
	for i, r := range recs {
		refs[5*i] = add(r.Path, false)
		refs[5*i+1] = add(r.Linkname, false)
		refs[5*i+2] = add(r.Uname, len(r.Uname) <= 64)
		refs[5*i+3] = add(r.Gname, len(r.Gname) <= 64)
		if len(r.Xattrs) > 0 {
			refs[5*i+4] = add(string(encodeXattrs(r.Xattrs)), false)
		}
	}
	if tooBig {
		return nil, fmt.Errorf("index string table exceeds 4 GiB")
	}
	// Pass 2: the records, in one buffer with the strings after them.
	recEnd := indexHeaderSize + len(recs)*RecordSize
	out := make([]byte, recEnd+len(str))
	copy(out[recEnd:], str)
	le := binary.LittleEndian
	for i, r := range recs {
		w := out[indexHeaderSize+i*RecordSize:][:RecordSize]
		for k, at := range [5][2]int{{rNameOff, rNameLen}, {rLinkOff, rLinkLen}, {rUnameOff, rUnameLen}, {rGnameOff, rGnameLen}, {rXattrOff, rXattrLen}} {
			le.PutUint32(w[at[0]:], refs[5*i+k].off)
			le.PutUint32(w[at[1]:], refs[5*i+k].n)
		}
		le.PutUint32(w[rParent:], r.Parent)
		le.PutUint32(w[rFirst:], r.FirstChild)
		le.PutUint32(w[rNChild:], r.NumChild)
		w[rType] = r.Type
		w[rFlags] = r.Flags
		le.PutUint32(w[rMode:], r.Mode)
		le.PutUint32(w[rUID:], r.UID)
		le.PutUint32(w[rGID:], r.GID)
		le.PutUint32(w[rDevMajor:], r.DevMajor)
		le.PutUint32(w[rDevMinor:], r.DevMinor)
		le.PutUint32(w[rNlink:], r.Nlink)
		le.PutUint64(w[rSize:], uint64(r.Size))
		putTime := func(secAt, nsAt int, t time.Time) {
			if t.IsZero() {
				le.PutUint32(w[nsAt:], noTime)
				return
			}
			le.PutUint64(w[secAt:], uint64(t.Unix()))
			le.PutUint32(w[nsAt:], uint32(t.Nanosecond()))
		}
		putTime(rMtime, rMtimeNs, r.ModTime)
		putTime(rAtime, rAtimeNs, r.AccessTime)
		putTime(rCtime, rCtimeNs, r.ChangeTime)
		le.PutUint32(w[rIno:], r.Ino)
		le.PutUint64(w[rHdrOff:], uint64(r.HdrOffset))
		le.PutUint64(w[rDataOff:], uint64(r.DataOffset))
		le.PutUint32(w[rEntryNo:], r.EntryNo)
		copy(w[rSHA256:], r.SHA256[:])
	}
	h := out[:indexHeaderSize]
	copy(h, indexMagic)
	le.PutUint32(h[8:], indexVersion)
	le.PutUint32(h[12:], RecordSize)
	le.PutUint32(h[16:], uint32(len(recs)))
	le.PutUint32(h[20:], uint32(treeLen))
	le.PutUint64(h[24:], uint64(recEnd))
	le.PutUint64(h[32:], uint64(len(str)))
	le.PutUint64(h[40:], uint64(layerSize))
	le.PutUint32(h[48:], entries)
	return out, nil
}
