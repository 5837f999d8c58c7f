//go:build linux

package containerdroot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// A container runs on the overlayfs snapshotter's unpacked layers (the fs
// directories of the committed snapshots of its image's chain), not on
// the content store's blobs, which are checked against their digests. An
// attacker with root who edits a lower snapshot changes every container
// on it, and neither the image rebuilt from the blobs nor the container's
// upper directory shows it. So before SaveImage streams an image, each
// layer's committed snapshot (keyed by the layer's chain ID, as
// containerd's unpacker commits it) is compared with the layer's tar as
// containerd's overlay unpacker writes it (pkg/archive.Apply with
// OverlayConvertWhiteout: a .wh.X whiteout is a 0/0 character device X
// owned as the entry; .wh..wh..opq is trusted.overlay.opaque=y on its
// directory; a parent the tar does not list is made by the unpacker, its
// attributes not the tar's; the top directory is never written). Times
// are not compared: the unpacker sets them, but a directory's changes
// whenever a child is made. A layer that differs is streamed as found: a
// deterministic tar of its directory, named by its own digest, listed by
// LayerFindings. A layer never unpacked has no snapshot: nothing is said.

// Bounds of the check: the entries of one layer (its tar's or its
// directory's), the length of one path, the depth of the directory, one
// file's extended attributes (the kernel's own limits on a list and a
// value).
const (
	maxLayerFiles = 1 << 20
	maxPathLen    = 4096
	maxWalkDepth  = 1000
	maxXattrList  = 64 << 10
	maxXattrValue = 64 << 10
)

const (
	whPrefix = ".wh."
	whOpaque = ".wh..wh..opq"
	// opaqueXattr marks an opaque directory of an overlay layer.
	opaqueXattr = "trusted.overlay.opaque"
	// typeWhiteout is a tar entry .wh.X: X a 0/0 character device.
	typeWhiteout = 'W'
)

// ignoredXattr are attributes a layer's files carry on disk that no tar
// gives them: the host's SELinux label; opaqueXattr is compared as the
// tar's .wh..wh..opq.
func ignoredXattr(k string) bool { return k == "security.selinux" || k == opaqueXattr }

// chainIDs are the chain IDs of an image's layers (the OCI image spec's
// ChainID: chain(n) = sha256(chain(n-1) + " " + diffID(n))), the keys
// containerd commits unpacked layers under.
func chainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// savedLayer is one position of an image's layers as SaveImage streams
// it: the blob decompressed, or (found) its snapshot's directory as found.
type savedLayer struct {
	desc   ocispec.Descriptor
	diffID digest.Digest
	// fs is the committed snapshot's fs directory (relative to the data
	// root) when the layer is streamed as found.
	fs     string
	found  bool
	digest string // hex of the layer tar streamed
	// size is the bytes of the layer tar streamed (-1: counted when the
	// blob is streamed).
	size  int64
	paths []engine.ChangedPath
}

// committedFS is the fs directory, relative to the data root, of the
// committed overlayfs snapshot chain of namespace ns; "" when there is
// none (the layer was never unpacked there).
func (s *Store) committedFS(ns string, chain digest.Digest) (string, error) {
	var u *engine.Unavailable
	name, err := s.snapshotName(ns, overlayfs, chain.String())
	if errors.As(err, &u) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	snap, err := s.overlaySnap(name)
	if errors.As(err, &u) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if snap.Kind != kindCommitted {
		return "", nil
	}
	rel := overlayRoot + "/snapshots/" + strconv.FormatUint(snap.ID, 10) + "/fs"
	if _, err := s.dirBeneath(rel); err != nil {
		return "", fmt.Errorf("the committed snapshot %q of layer chain %s: %w", name, chain, err)
	}
	return rel, nil
}

// checkLayers checks each layer of the image against its committed
// snapshot in the image's namespace, and says how each is streamed.
func (s *Store) checkLayers(ctx context.Context, res *resolved) ([]*savedLayer, []engine.LayerFinding, error) {
	var out []*savedLayer
	var findings []engine.LayerFinding
	for i, chain := range chainIDs(res.diffIDs) {
		sl := &savedLayer{desc: res.layers[i], diffID: res.diffIDs[i], digest: res.diffIDs[i].Encoded(), size: -1}
		out = append(out, sl)
		rel, err := s.committedFS(res.Namespace, chain)
		if err != nil {
			return nil, nil, fmt.Errorf("layer %d of %d (diff_id %s): %w", i+1, len(res.layers), sl.diffID, err)
		}
		if rel == "" {
			continue
		}
		if err := s.checkLayer(ctx, sl, rel); err != nil {
			return nil, nil, fmt.Errorf("layer %d of %d (diff_id %s), snapshot %s/%s: %w", i+1, len(res.layers), sl.diffID, s.realData, rel, err)
		}
		if sl.found {
			f := engine.LayerFinding{DiffID: sl.diffID.String(), Found: "sha256:" + sl.digest, Paths: sl.paths}
			if !slices.ContainsFunc(findings, func(g engine.LayerFinding) bool { return g.DiffID == f.DiffID && g.Found == f.Found }) {
				findings = append(findings, f)
			}
		}
	}
	return out, findings, nil
}

// wantEntry is one path of a layer's tar as the unpacker writes it.
type wantEntry struct {
	typ          byte
	mode         int64
	uid, gid     int
	size         int64
	sum          [32]byte
	link         string
	major, minor int64
	xattrs       map[string]string
}

// layerIndex is a layer's tar: its paths, the parents it implies, its
// opaque directories.
type layerIndex struct {
	want    map[string]*wantEntry
	parents map[string]bool
	opaque  map[string]bool
}

// cleanName is a tar name as a path of the layer ("" for its top).
func cleanName(n string) string { return strings.TrimPrefix(path.Clean("/"+n), "/") }

// indexLayer reads the layer's blob (decompressed, bounded, its digest
// checked) into an index; its decompressed size is sl.size.
func (s *Store) indexLayer(ctx context.Context, sl *savedLayer) (*layerIndex, error) {
	h := sha256.New()
	rc, src, err := s.openLayer(ctx, sl.desc, h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	cnt := &counter{w: io.Discard}
	idx := &layerIndex{want: map[string]*wantEntry{}, parents: map[string]bool{}, opaque: map[string]bool{}}
	tr := tar.NewReader(io.TeeReader(rc, cnt))
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("the layer's blob %s: %w", sl.desc.Digest, err)
		}
		if n >= maxLayerFiles {
			return nil, engine.Claimf("the layer's blob %s has more than %d entries; amber checks at most that", sl.desc.Digest, maxLayerFiles)
		}
		name := cleanName(hdr.Name)
		if len(name) > maxPathLen {
			return nil, engine.Claimf("the layer's blob %s names a path of %d bytes; amber checks at most %d", sl.desc.Digest, len(name), maxPathLen)
		}
		if name == "" || hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // the unpacker never writes the top
		}
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			if idx.parents[p] {
				break
			}
			idx.parents[p] = true
		}
		dir, base := path.Dir(name), path.Base(name)
		if dir == "." {
			dir = ""
		}
		w := &wantEntry{typ: hdr.Typeflag, mode: hdr.Mode & 07777, uid: hdr.Uid, gid: hdr.Gid}
		switch {
		case base == whOpaque:
			idx.opaque[dir] = true
			continue
		case strings.HasPrefix(base, whPrefix):
			w.typ = typeWhiteout
			idx.want[path.Join(dir, strings.TrimPrefix(base, whPrefix))] = w
			continue
		}
		for k, v := range hdr.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && !ignoredXattr(x) {
				if w.xattrs == nil {
					w.xattrs = map[string]string{}
				}
				w.xattrs[x] = v
			}
		}
		switch hdr.Typeflag {
		case tar.TypeReg, 0 /* TypeRegA, old tars */, tar.TypeGNUSparse:
			w.typ = tar.TypeReg
			fh := sha256.New()
			if w.size, err = io.Copy(fh, tr); err != nil {
				return nil, fmt.Errorf("the layer's blob %s, %s: %w", sl.desc.Digest, name, err)
			}
			fh.Sum(w.sum[:0])
		case tar.TypeLink:
			w.link = cleanName(hdr.Linkname)
			// The link's header is applied to the inode it shares.
			if t := idx.want[w.link]; t != nil && t.typ == tar.TypeReg {
				t.mode, t.uid, t.gid = w.mode, w.uid, w.gid
			}
		case tar.TypeSymlink:
			w.link = hdr.Linkname
		case tar.TypeChar, tar.TypeBlock:
			w.major, w.minor = hdr.Devmajor, hdr.Devminor
		}
		idx.want[name] = w
	}
	// What the decompressor leaves unread is hashed too.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return nil, fmt.Errorf("decompressing the layer's blob %s: %w", sl.desc.Digest, err)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return nil, fmt.Errorf("reading the layer's blob %s: %w", sl.desc.Digest, err)
	}
	if err := s.checkBlob(sl.desc, h); err != nil {
		return nil, err
	}
	sl.size = cnt.n
	return idx, nil
}

// checkLayer compares the layer's blob with its snapshot's directory rel;
// a layer that differs is to be streamed as found, sl says so.
func (s *Store) checkLayer(ctx context.Context, sl *savedLayer, rel string) error {
	idx, err := s.indexLayer(ctx, sl)
	if err != nil {
		return err
	}
	dir, err := s.openDir(rel)
	if err != nil {
		return err
	}
	defer dir.Close()
	c := &comparer{idx: idx, seen: map[string]bool{}, changed: map[string]engine.ChangedPath{}, inodes: map[string][2]uint64{}}
	// The tar as found is hashed only for a layer that differs (the
	// rare case): a second walk, not a second hash of every layer.
	if err := (&fsWalker{ctx: ctx, visit: c.visit}).tar(dir, io.Discard); err != nil {
		return err
	}
	c.finish()
	if len(c.changed) == 0 {
		return nil
	}
	for _, p := range c.changed {
		sl.paths = append(sl.paths, p)
	}
	slices.SortFunc(sl.paths, func(a, b engine.ChangedPath) int { return strings.Compare(a.Path, b.Path) })
	h := sha256.New()
	cnt := &counter{w: h}
	if _, err := dir.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%s: %w", dir.Name(), err)
	}
	if err := (&fsWalker{ctx: ctx}).tar(dir, cnt); err != nil {
		return fmt.Errorf("%s: %w", dir.Name(), err)
	}
	sl.fs, sl.found, sl.digest, sl.size = rel, true, hex.EncodeToString(h.Sum(nil)), cnt.n
	return nil
}

// openDir opens rel, a directory beneath the data root reached through
// no symbolic link, for reading.
func (s *Store) openDir(rel string) (*os.File, error) {
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOATIME,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(s.dataFD, rel, &how)
	if err == unix.EPERM {
		how.Flags &^= unix.O_NOATIME
		fd, err = unix.Openat2(s.dataFD, rel, &how)
	}
	p := s.realData + "/" + rel
	switch err {
	case nil:
	case unix.ELOOP, unix.EXDEV, unix.ENOTDIR:
		return nil, engine.Claimf("%s is not a directory beneath %s reached through no symbolic link: refused", rel, s.realData)
	default:
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// streamFound writes a layer found changed as it was checked, failing
// when its bytes are not those the check found.
func (s *Store) streamFound(ctx context.Context, sl *savedLayer, w io.Writer) error {
	dir, err := s.openDir(sl.fs)
	if err != nil {
		return err
	}
	defer dir.Close()
	h := sha256.New()
	cnt := &counter{w: h}
	if err := (&fsWalker{ctx: ctx}).tar(dir, io.MultiWriter(w, cnt)); err != nil {
		return fmt.Errorf("%s: %w", dir.Name(), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sl.digest || cnt.n != sl.size {
		return engine.Claimf("the snapshot %s changed while it was read: sha256:%s, %d bytes, checked sha256:%s, %d bytes", dir.Name(), got, cnt.n, sl.digest, sl.size)
	}
	return nil
}

// counter hashes and counts what is written through it.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}

// diskEntry is what the walk read of one path besides its lstat.
type diskEntry struct {
	sum    [32]byte // a regular file's content
	link   string   // a symbolic link's target
	xattrs map[string]string
	opaque bool
}

// fsWalker writes a directory as a layer tar, deterministically: names
// in byte order, depth first; headers from lstat (mode, owner, mtime in
// seconds, link targets, extended attributes); hard links within the
// layer as links to their first name; overlay whiteouts back to the
// tar's form (a 0/0 character device as .wh.<name>, an opaque
// directory's .wh..wh..opq). Sockets are no part of a layer: visited,
// not written. visit (nil: none) sees each path.
type fsWalker struct {
	ctx   context.Context
	visit func(rel string, st *unix.Stat_t, e *diskEntry)
	tw    *tar.Writer
	links map[[2]uint64]string
	sums  map[[2]uint64][32]byte
	files int
}

func (w *fsWalker) tar(dir *os.File, out io.Writer) error {
	w.tw, w.links, w.sums = tar.NewWriter(out), map[[2]uint64]string{}, map[[2]uint64][32]byte{}
	if err := w.dir(dir, "", 0); err != nil {
		return err
	}
	return w.tw.Close()
}

// openAt opens name, one component, in the directory d: never through a
// symbolic link, without touching its access time where the kernel lets
// us.
func openAt(d *os.File, name string, flags int) (*os.File, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	fd, err := unix.Openat(int(d.Fd()), name, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = unix.Openat(int(d.Fd()), name, flags, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.Name() + "/" + name, Err: err}
	}
	return os.NewFile(uintptr(fd), d.Name()+"/"+name), nil
}

// xattrs reads the extended attributes of name in d (not followed),
// bounded, through the directory's descriptor.
func xattrs(d *os.File, name string) (map[string]string, error) {
	p := "/proc/self/fd/" + strconv.Itoa(int(d.Fd())) + "/" + name
	buf := make([]byte, 1024)
	n, err := unix.Llistxattr(p, buf)
	if err == unix.ERANGE {
		buf = make([]byte, maxXattrList)
		n, err = unix.Llistxattr(p, buf)
	}
	switch err {
	case nil:
	case unix.ENOTSUP, unix.ENODATA:
		return nil, nil
	default:
		return nil, fmt.Errorf("listing the extended attributes of %s/%s: %w", d.Name(), name, err)
	}
	var out map[string]string
	for _, k := range strings.Split(string(buf[:n]), "\x00") {
		if k == "" {
			continue
		}
		v := make([]byte, 256)
		m, err := unix.Lgetxattr(p, k, v)
		if err == unix.ERANGE {
			v = make([]byte, maxXattrValue)
			m, err = unix.Lgetxattr(p, k, v)
		}
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("the extended attribute %.64q of %s/%s: %w", k, d.Name(), name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = string(v[:m])
	}
	return out, nil
}

// dir writes the directory d, the layer's path rel, and what it holds.
func (w *fsWalker) dir(d *os.File, rel string, depth int) error {
	if depth > maxWalkDepth {
		return engine.Claimf("%s is more than %d directories deep; amber checks at most that", d.Name(), maxWalkDepth)
	}
	var names []string
	for {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		chunk, err := d.Readdirnames(4096)
		names = append(names, chunk...)
		if w.files += len(chunk); w.files > maxLayerFiles {
			return engine.Claimf("the snapshot holds more than %d entries; amber checks at most that", maxLayerFiles)
		}
		if err == io.EOF || (err == nil && len(chunk) == 0) {
			break
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", d.Name(), err)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if err := w.entry(d, rel, n, depth); err != nil {
			return err
		}
	}
	return nil
}

// entry writes name, in the directory d (the layer's path dirRel).
func (w *fsWalker) entry(d *os.File, dirRel, name string, depth int) error {
	rel := path.Join(dirRel, name)
	if len(rel) > maxPathLen {
		return engine.Claimf("%s/%s: a path of more than %d bytes; amber checks at most that", d.Name(), name, maxPathLen)
	}
	var st unix.Stat_t
	// One name beneath an open real directory, not followed.
	if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: d.Name() + "/" + name, Err: err}
	}
	e := &diskEntry{}
	var err error
	if e.xattrs, err = xattrs(d, name); err != nil {
		return err
	}
	h := &tar.Header{Name: rel, Mode: int64(st.Mode & 07777), Uid: int(st.Uid), Gid: int(st.Gid), ModTime: time.Unix(st.Mtim.Sec, 0).UTC()}
	for _, k := range sortedKeys(e.xattrs) {
		if k == opaqueXattr || strings.ContainsAny(k, "=\x00") {
			continue
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = e.xattrs[k]
	}
	var body *os.File
	var sub *os.File
	key := [2]uint64{st.Dev, st.Ino}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if sub, err = openAt(d, name, unix.O_RDONLY|unix.O_DIRECTORY); err != nil {
			return err
		}
		defer sub.Close()
		if err := sameFile(sub, &st); err != nil {
			return err
		}
		e.opaque = e.xattrs[opaqueXattr] == "y"
		h.Typeflag, h.Name = tar.TypeDir, rel+"/"
	case unix.S_IFREG:
		if first, ok := w.links[key]; ok {
			h.Typeflag, h.Linkname, e.sum = tar.TypeLink, first, w.sums[key]
			break
		}
		if body, err = openAt(d, name, unix.O_RDONLY); err != nil {
			return err
		}
		defer body.Close()
		if err := sameFile(body, &st); err != nil {
			return err
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size
	case unix.S_IFLNK:
		buf := make([]byte, maxPathLen+1)
		n, err := unix.Readlinkat(int(d.Fd()), name, buf)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: d.Name() + "/" + name, Err: err}
		}
		if n > maxPathLen {
			return engine.Claimf("%s/%s links to more than %d bytes; amber checks at most that", d.Name(), name, maxPathLen)
		}
		h.Typeflag, h.Linkname, e.link = tar.TypeSymlink, string(buf[:n]), string(buf[:n])
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			h.Name = path.Join(dirRel, whPrefix+name)
			h.Typeflag, h.Mode = tar.TypeReg, 0
			break
		}
		h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		h.Typeflag, h.Devmajor, h.Devminor = tar.TypeBlock, int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		h = nil // a socket
	}
	if h != nil {
		if err := w.tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s/%s: %w", d.Name(), name, err)
		}
	}
	if body != nil {
		fh := sha256.New()
		n, err := io.Copy(io.MultiWriter(w.tw, fh), io.LimitReader(engine.ContextReader(w.ctx, body), h.Size))
		if err != nil {
			return fmt.Errorf("%s: %w", body.Name(), err)
		}
		if n != h.Size {
			return engine.Claimf("%s changed while it was read: %d bytes, %d before", body.Name(), n, h.Size)
		}
		fh.Sum(e.sum[:0])
		if st.Nlink > 1 {
			w.links[key], w.sums[key] = rel, e.sum
		}
	}
	if e.opaque {
		if err := w.tw.WriteHeader(&tar.Header{Name: path.Join(rel, whOpaque), Typeflag: tar.TypeReg, ModTime: h.ModTime, Uid: h.Uid, Gid: h.Gid}); err != nil {
			return err
		}
	}
	if w.visit != nil {
		w.visit(rel, &st, e)
	}
	if sub != nil {
		return w.dir(sub, rel, depth+1)
	}
	return nil
}

// sameFile checks that f, opened by name, is the file lstat saw there.
func sameFile(f *os.File, st *unix.Stat_t) error {
	var fst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		return &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	if fst.Dev != st.Dev || fst.Ino != st.Ino {
		return engine.Claimf("%s was replaced while it was read", f.Name())
	}
	return nil
}

// comparer compares a snapshot's paths, as the walk visits them, with
// the layer's index.
type comparer struct {
	idx     *layerIndex
	seen    map[string]bool
	changed map[string]engine.ChangedPath
	// inodes are the inodes of the paths a hard link of the tar names.
	inodes map[string][2]uint64
	links  []string
}

func (c *comparer) note(p, what, detail string) {
	if _, ok := c.changed[p]; !ok {
		c.changed[p] = engine.ChangedPath{Path: "/" + p, What: what, Detail: detail}
	}
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "a file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "unknown"
}

// tarTypes are the file types the unpacker makes of each tar type.
var tarTypes = map[byte]uint32{tar.TypeReg: unix.S_IFREG, tar.TypeLink: unix.S_IFREG, tar.TypeDir: unix.S_IFDIR,
	tar.TypeSymlink: unix.S_IFLNK, tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO, typeWhiteout: unix.S_IFCHR}

func (c *comparer) visit(rel string, st *unix.Stat_t, e *diskEntry) {
	c.seen[rel] = true
	ft := st.Mode & unix.S_IFMT
	if ft == unix.S_IFDIR && e.opaque != c.idx.opaque[rel] {
		if e.opaque {
			c.note(path.Join(rel, whOpaque), "added", "the directory is opaque; the layer does not make it so")
		} else {
			c.note(path.Join(rel, whOpaque), "removed", "the layer makes the directory opaque; it is not")
		}
	}
	w := c.idx.want[rel]
	if w == nil {
		if ft == unix.S_IFDIR && c.idx.parents[rel] {
			return // a parent the unpacker made
		}
		if ft == unix.S_IFCHR && st.Rdev == 0 {
			c.note(rel, "added", "a whiteout the layer does not hold")
		} else {
			c.note(rel, "added", typeName(ft))
		}
		return
	}
	want, ok := tarTypes[w.typ]
	if !ok {
		return // a type the unpacker does not write
	}
	if ft != want {
		c.note(rel, "type", fmt.Sprintf("%s on disk, the layer's is %s", typeName(ft), typeName(want)))
		return
	}
	if ft == unix.S_IFREG {
		c.inodes[rel] = [2]uint64{st.Dev, st.Ino}
	}
	switch w.typ {
	case typeWhiteout:
		if st.Rdev != 0 {
			c.note(rel, "type", fmt.Sprintf("device %d:%d, the layer's is a whiteout", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
		} else if int(st.Uid) != w.uid || int(st.Gid) != w.gid {
			c.note(rel, "owner", fmt.Sprintf("%d:%d, the layer's %d:%d", st.Uid, st.Gid, w.uid, w.gid))
		}
		return
	case tar.TypeLink:
		c.links = append(c.links, rel)
		return
	case tar.TypeReg:
		if st.Size != w.size {
			c.note(rel, "size", fmt.Sprintf("%d bytes, the layer's %d", st.Size, w.size))
			return
		}
		if e.sum != w.sum {
			c.note(rel, "content", fmt.Sprintf("sha256 %x, the layer's %x", e.sum, w.sum))
			return
		}
	case tar.TypeSymlink:
		if e.link != w.link {
			c.note(rel, "link", fmt.Sprintf("links to %q, the layer's to %q", e.link, w.link))
			return
		}
	case tar.TypeChar, tar.TypeBlock:
		if int64(unix.Major(st.Rdev)) != w.major || int64(unix.Minor(st.Rdev)) != w.minor {
			c.note(rel, "type", fmt.Sprintf("device %d:%d, the layer's %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev), w.major, w.minor))
			return
		}
	}
	// A symbolic link's mode is not set (Linux has none to set).
	if ft != unix.S_IFLNK && int64(st.Mode&07777) != w.mode {
		c.note(rel, "mode", fmt.Sprintf("%04o, the layer's %04o", st.Mode&07777, w.mode))
		return
	}
	if int(st.Uid) != w.uid || int(st.Gid) != w.gid {
		c.note(rel, "owner", fmt.Sprintf("%d:%d, the layer's %d:%d", st.Uid, st.Gid, w.uid, w.gid))
		return
	}
	if d := xattrDiff(e.xattrs, w.xattrs); d != "" {
		c.note(rel, "xattr", d)
	}
}

// xattrDiff says how the extended attributes on disk differ from the
// layer's ("" when they do not).
func xattrDiff(disk, want map[string]string) string {
	var diffs []string
	for _, k := range sortedKeys(disk) {
		if ignoredXattr(k) {
			continue
		}
		if v, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%.64q added", k))
		} else if v != disk[k] {
			diffs = append(diffs, fmt.Sprintf("%.64q changed", k))
		}
	}
	for _, k := range sortedKeys(want) {
		if _, ok := disk[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%.64q removed", k))
		}
	}
	if len(diffs) > 8 {
		diffs = append(diffs[:8], fmt.Sprintf("%d more", len(diffs)-8))
	}
	return strings.Join(diffs, ", ")
}

// finish notes what the layer holds and the snapshot does not, and the
// hard links that no longer share their target's inode.
func (c *comparer) finish() {
	for _, p := range sortedKeys(c.idx.want) {
		if !c.seen[p] {
			detail := ""
			if c.idx.want[p].typ == typeWhiteout {
				detail = "a whiteout of the layer"
			}
			c.note(p, "removed", detail)
		}
	}
	for _, p := range c.links {
		t := c.idx.want[p].link
		if ino, ok := c.inodes[t]; !ok || ino != c.inodes[p] {
			c.note(p, "link", "no longer a hard link to /"+t)
		}
	}
}
