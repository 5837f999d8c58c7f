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
	if !b.withinLimits(h) {
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
	e.xattr = paxXattrs(h)
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
	b.markers(&e, p)
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

// withinLimits counts the entry's strings against MaxStrings and the
// entries against what an index can number; past either the build fails.
func (b *IndexBuilder) withinLimits(h *tar.Header) bool {
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
		return false
	}
	if uint64(b.n) >= uint64(NoEntry)/2 {
		b.fail(fmt.Errorf("layer has too many entries for an index: %d", b.n))
		return false
	}
	return true
}

// paxXattrs is the entry's extended attributes (PAX SCHILY.xattr.*),
// encoded as the index stores them ("" for none).
func paxXattrs(h *tar.Header) string {
	var xattrs map[string]string
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if xattrs == nil {
				xattrs = map[string]string{}
			}
			xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = v
		}
	}
	if len(xattrs) == 0 {
		return ""
	}
	return string(encodeXattrs(xattrs))
}

// The markers of the OCI image spec's layer format ("Whiteouts",
// https://github.com/opencontainers/image-spec/blob/main/layer.md): an entry
// ".wh.NAME" deletes NAME of the layers below; ".wh..wh..opq" in a directory
// hides everything the layers below have in it. Package layers applies
// them; the index flags them (FlagWhiteout, FlagOpaque).
const (
	WhiteoutPrefix = ".wh."
	OpaqueMarker   = ".wh..wh..opq"
)

// markers flags an opaque-directory marker or a whiteout by its name (OCI
// image spec, layer.md "Whiteouts"), and records the ones no runtime can
// apply as they stand.
func (b *IndexBuilder) markers(e *xEnt, p string) {
	base := path.Base("/" + p)
	if p == "" {
		base = ""
	}
	if base == OpaqueMarker {
		e.flags |= FlagOpaque
		if p == base {
			b.anomaly(manifest.Anomaly{Path: p, Kind: "root-opaque", Detail: rootOpaqueDetail})
		}
	} else if strings.HasPrefix(base, WhiteoutPrefix) {
		e.flags |= FlagWhiteout
		if w := base[len(WhiteoutPrefix):]; w == "" || w == "." || w == ".." {
			b.anomaly(manifest.Anomaly{Path: p, Kind: "bad-whiteout", Detail: badWhiteoutDetail(w)})
		}
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
