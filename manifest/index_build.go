package manifest

import (
	"archive/tar"
	"encoding/binary"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/amber-forensics/amber/hashing"
)

// IndexBuilder collects a layer's tar entries as they are read and encodes
// the file index.
type IndexBuilder struct {
	recs      []bRec
	Anomalies []Anomaly
	entries   uint32
}

type bRec struct {
	Record
	parentPath string
	base       string
	target     string // cleaned hard-link target
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
	p, unsafe := CleanName(h.Name)
	r := bRec{}
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
	} else if strings.HasPrefix(base, ".wh.") {
		r.Flags |= FlagWhiteout
	}
	b.recs = append(b.recs, r)
}

// Build resolves the tree and encodes the index.
func (b *IndexBuilder) Build(layerSize int64) ([]byte, error) {
	// The last entry for a path wins, as when a tar is extracted; earlier
	// ones are kept after the tree as shadowed records.
	last := make(map[string]int, len(b.recs))
	for i := range b.recs {
		last[b.recs[i].Path] = i
	}
	tree := make([]bRec, 0, len(b.recs)+1)
	var shadowed []bRec
	for i := range b.recs {
		if last[b.recs[i].Path] != i {
			r := b.recs[i]
			r.Flags |= FlagShadowed
			shadowed = append(shadowed, r)
			b.Anomalies = append(b.Anomalies, Anomaly{Path: r.Path, Kind: "duplicate-entry", Detail: fmt.Sprintf("tar entry %d is overwritten by a later entry of the same path", r.EntryNo)})
			continue
		}
		tree = append(tree, b.recs[i])
	}
	// Implied parent directories.
	have := make(map[string]bool, len(tree))
	for i := range tree {
		have[tree[i].Path] = true
	}
	for i := 0; i < len(tree); i++ {
		p := tree[i].Path
		for p != "" {
			p = parentOf(p)
			if have[p] {
				break
			}
			have[p] = true
			r := bRec{}
			r.Path = p
			r.Type = TypeDir
			r.Mode = 0o755
			r.Flags = FlagImplicit
			r.EntryNo = NoEntry
			r.DataOffset = -1
			tree = append(tree, r)
		}
	}
	if !have[""] {
		r := bRec{}
		r.Type = TypeDir
		r.Mode = 0o755
		r.Flags = FlagImplicit
		r.EntryNo = NoEntry
		r.DataOffset = -1
		tree = append(tree, r)
	}
	for i := range tree {
		if tree[i].Path == "" {
			tree[i].parentPath, tree[i].base = "", ""
		} else {
			tree[i].parentPath, tree[i].base = parentOf(tree[i].Path), path.Base("/"+tree[i].Path)
		}
	}
	sort.Slice(tree, func(i, j int) bool {
		a, c := &tree[i], &tree[j]
		if (a.Path == "") != (c.Path == "") {
			return a.Path == ""
		}
		if a.parentPath != c.parentPath {
			return a.parentPath < c.parentPath
		}
		return a.base < c.base
	})
	pos := make(map[string]uint32, len(tree))
	for i := range tree {
		pos[tree[i].Path] = uint32(i)
	}
	for i := range tree {
		tree[i].Index = uint32(i)
		tree[i].Ino = uint32(i)
		tree[i].FirstChild = uint32(len(tree)) // empty range at the end
		if i > 0 {
			tree[i].Parent = pos[tree[i].parentPath]
		}
	}
	for i := 1; i < len(tree); i++ {
		p := &tree[tree[i].Parent]
		if p.NumChild == 0 {
			p.FirstChild = uint32(i)
		}
		p.NumChild++
	}
	// Hard links share their target's record: inode, size, content.
	nlink := make(map[uint32]uint32)
	for i := range tree {
		r := &tree[i]
		if r.Flags&FlagHardlink != 0 {
			t, ok := pos[r.target]
			for hops := 0; ok && tree[t].Flags&FlagHardlink != 0 && hops < 64; hops++ {
				t, ok = pos[tree[t].target]
			}
			if !ok || tree[t].Type != TypeReg {
				r.Flags |= FlagDangling
				b.Anomalies = append(b.Anomalies, Anomaly{Path: r.Path, Kind: "dangling-hardlink", Detail: fmt.Sprintf("hard link to %q, which is not a regular file of this layer", r.Linkname)})
				continue
			}
			r.Ino = t
			r.Type = TypeReg
			r.Size = tree[t].Size
			r.SHA256 = tree[t].SHA256
			r.DataOffset = tree[t].DataOffset
			if tree[t].Flags&FlagSparse != 0 {
				r.Flags |= FlagSparse
			}
		}
	}
	for i := range tree {
		if tree[i].Type != TypeDir {
			nlink[tree[i].Ino]++
		}
	}
	for i := range tree {
		r := &tree[i]
		if r.Type == TypeDir {
			r.Nlink = 2
		} else {
			r.Nlink = nlink[r.Ino]
		}
	}
	for i := range tree {
		if tree[i].Type == TypeDir && i > 0 {
			tree[tree[i].Parent].Nlink++
		}
	}
	treeLen := len(tree)
	for i := range shadowed {
		shadowed[i].Index = uint32(treeLen + i)
		shadowed[i].Ino = shadowed[i].Index
		shadowed[i].Parent = 0
		shadowed[i].FirstChild = uint32(treeLen)
		shadowed[i].Nlink = 1
		if shadowed[i].Flags&FlagHardlink != 0 {
			shadowed[i].Flags |= FlagDangling
		}
	}
	all := append(tree, shadowed...)
	return encodeIndex(all, treeLen, layerSize, b.entries)
}

func parentOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

func encodeIndex(recs []bRec, treeLen int, layerSize int64, entries uint32) ([]byte, error) {
	if uint64(len(recs)) >= uint64(NoEntry) {
		return nil, fmt.Errorf("layer has too many entries for an index: %d", len(recs))
	}
	var str []byte
	strs := map[string]uint32{}
	intern := func(s string) (uint32, uint32, error) {
		if s == "" {
			return 0, 0, nil
		}
		if o, ok := strs[s]; ok {
			return o, uint32(len(s)), nil
		}
		if uint64(len(str))+uint64(len(s)) > uint64(^uint32(0)) {
			return 0, 0, fmt.Errorf("index string table exceeds 4 GiB")
		}
		o := uint32(len(str))
		str = append(str, s...)
		if len(s) <= 256 {
			strs[s] = o
		}
		return o, uint32(len(s)), nil
	}
	out := make([]byte, indexHeaderSize+len(recs)*RecordSize)
	le := binary.LittleEndian
	for i := range recs {
		r := &recs[i]
		w := out[indexHeaderSize+i*RecordSize:][:RecordSize]
		put := func(offAt, lenAt int, s string) error {
			o, n, err := intern(s)
			le.PutUint32(w[offAt:], o)
			le.PutUint32(w[lenAt:], n)
			return err
		}
		if err := put(rNameOff, rNameLen, r.Path); err != nil {
			return nil, err
		}
		if err := put(rLinkOff, rLinkLen, r.Linkname); err != nil {
			return nil, err
		}
		if err := put(rUnameOff, rUnameLen, r.Uname); err != nil {
			return nil, err
		}
		if err := put(rGnameOff, rGnameLen, r.Gname); err != nil {
			return nil, err
		}
		if err := put(rXattrOff, rXattrLen, string(encodeXattrs(r.Xattrs))); err != nil {
			return nil, err
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
		putTime := func(secAt, nsAt int, t timeLike) {
			if t.IsZero() {
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
	le.PutUint64(h[24:], uint64(len(out)))
	le.PutUint64(h[32:], uint64(len(str)))
	le.PutUint64(h[40:], uint64(layerSize))
	le.PutUint32(h[48:], entries)
	return append(out, str...), nil
}

type timeLike interface {
	IsZero() bool
	Unix() int64
	Nanosecond() int
}
