//go:build linux

package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// XattrSHA256 is the extended attribute holding a file's indexed SHA-256.
const XattrSHA256 = "user.amber.sha256"

// FS is the file system over one archive.
type FS struct {
	v      *view.View
	a      *archive.Archive
	layers map[hashing.Digest]uint64 // global layer number, for inode numbers
	virt   map[string]uint64         // inode numbers of amber's own entries
	// Log receives one line per notable event (a file failing its hash).
	Log func(string)

	mu       sync.Mutex
	verified map[fileKey]*verification
	// inodes bounds the nodes kept for the kernel.
	inodes *budget
	// owner is the mounting user's uid and gid, the owner of amber's own
	// entries: its 0400 members (memory, environ, logs) are readable by
	// whoever mounted, not by root alone, nor by anyone else under
	// --allow-other.
	uid, gid uint32
	// sealed says whether the archive's frames are sealed (asked once).
	sealed func() bool
	// push queues directories whose files to push into the kernel's
	// cache (push.go); nil: none.
	push chan pushJob
	// rebase shows symlinks as resolved inside their view's root
	// (Options.RebaseLinks).
	rebase bool
	// reads counts the READs of archived content served, pushes the
	// files stored into the kernel's cache (for tests).
	reads, pushes atomic.Int64
}

type fileKey struct {
	layer  hashing.Digest
	ino    uint32
	member string // a container's own file: its tar member
}

type verification struct {
	once sync.Once
	err  error
}

// New prepares a file system over a. The archive must stay open while it
// is mounted.
func New(a *archive.Archive) *FS {
	f := &FS{v: &view.View{A: a}, a: a, layers: map[hashing.Digest]uint64{}, virt: map[string]uint64{}, verified: map[fileKey]*verification{}, Log: func(string) {}, inodes: newBudget(0),
		uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
	f.sealed = sync.OnceValue(a.FramesSealed)
	for ai, art := range a.Manifest.Artifacts {
		for _, l := range art.Layers {
			if _, ok := f.layers[l.Digest]; !ok {
				f.layers[l.Digest] = uint64(len(f.layers))
			}
		}
		// A container's own files and their directories, numbered in
		// path order: stable for the archive.
		if art.Container != nil {
			paths := map[string]bool{}
			for _, m := range art.Container.Members {
				for p := m.Path; p != "." && p != ""; p = path.Dir(p) {
					paths[p] = true
				}
			}
			sorted := make([]string, 0, len(paths))
			for p := range paths {
				sorted = append(sorted, p)
			}
			sort.Strings(sorted)
			for i, p := range sorted {
				f.virt["containers/"+art.Name+"/"+p] = artifactIno(ai) + 16 + uint64(i)
			}
		}
	}
	return f
}

// artifactIno is the inode number of artifact ai's directory; its own
// entries follow it.
func artifactIno(ai int) uint64 { return 16 + uint64(ai)<<20 }

// Root returns the root node, for fs.Mount.
func (f *FS) Root() (fs.InodeEmbedder, error) {
	e, err := f.v.Stat("")
	if err != nil {
		return nil, err
	}
	return &node{fsys: f, e: e}, nil
}

// ino numbers an entry: amber's own entries get small numbers in the order
// they are first seen (deterministic: the layout is fixed by the manifest);
// a tree entry gets (view+1)<<44 | layer<<32 | (record+2), so hard links
// share a number and every view has its own.
func (f *FS) ino(e *view.Entry) uint64 {
	if e.Node == nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		if n, ok := f.virt[e.Path]; ok {
			return n
		}
		n := virtualIno(e.Path, f.a.Manifest)
		f.virt[e.Path] = n
		return n
	}
	return uint64(e.ViewID+1)<<44 | (f.layers[e.LayerDigest()]&0xfff)<<32 | uint64(e.Node.Rec.Ino) + 2
}

// virtualIno numbers amber's own entries by their place in the layout.
func virtualIno(p string, m *manifest.Manifest) uint64 {
	switch p {
	case "":
		return 1
	case "manifest.json":
		return 2
	case "images":
		return 3
	case "containers":
		return 4
	case "volumes":
		return 5
	case "artifacts":
		return 6
	}
	c := strings.Split(p, "/")
	kind := map[string]string{"images": manifest.KindImage, "containers": manifest.KindContainer, "volumes": manifest.KindVolume, "artifacts": manifest.KindArtifact}[c[0]]
	ai := 0
	for i, a := range m.Artifacts {
		if a.Kind == kind && a.Name == c[1] {
			ai = i
		}
	}
	base := artifactIno(ai)
	if len(c) == 2 {
		return base
	}
	switch c[2] {
	case "config.json":
		return base + 1
	case "layers":
		if len(c) == 4 {
			// layers/N.trailing (an image's: a container's own files
			// are numbered from base+16), clear of the rest.
			n, _ := strconv.Atoi(strings.TrimSuffix(c[3], ".trailing"))
			return base + 1<<19 + uint64(n)
		}
		return base + 2
	case "stages":
		return base + 3
	case "history":
		return base + 4
	case "Dockerfile":
		return base + 5
	case "manifest.json": // an OCI artifact's
		return base + 7
	case "config":
		return base + 8
	case "blobs":
		if len(c) == 4 {
			n, _ := strconv.Atoi(c[3])
			return base + 16 + uint64(n)
		}
		return base + 9
	}
	return base + 6 // not reached: deeper entries are tree entries or members
}

func (f *FS) attr(e *view.Entry, out *fuse.Attr) {
	out.Ino = f.ino(e)
	out.Size = uint64(max(e.Size, 0))
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	mode := e.Mode&0o7777 | modeType(e.Type)
	out.Mode = mode
	out.Nlink = 1
	mt := e.ModTime
	if mt.IsZero() {
		// An implied directory has no time of its own: show the epoch,
		// not year 1.
		mt = time.Unix(0, 0)
	}
	at, ct := mt, mt
	if e.Virtual {
		out.Uid, out.Gid = f.uid, f.gid
	}
	if n := e.Node; n != nil {
		r := &n.Rec
		out.Uid, out.Gid = r.UID, r.GID
		if r.Nlink > 0 {
			out.Nlink = r.Nlink
		}
		if e.Type == fileindex.TypeDir && e.Merged {
			// A merged directory's subdirectories come from several
			// layers; 1 tells find not to count on the link count.
			out.Nlink = 1
		}
		if !r.AccessTime.IsZero() {
			at = r.AccessTime
		}
		if !r.ChangeTime.IsZero() {
			ct = r.ChangeTime
		}
		if e.Type == fileindex.TypeSymlink {
			out.Size = uint64(len(f.linkTarget(e)))
		}
		if e.Type == fileindex.TypeChar || e.Type == fileindex.TypeBlock {
			out.Rdev = uint32(unixMkdev(r.DevMajor, r.DevMinor))
		}
	} else if e.Type == fileindex.TypeDir {
		out.Nlink = 2
	}
	out.SetTimes(&at, &mt, &ct)
}

func unixMkdev(major, minor uint32) uint64 {
	return uint64(minor&0xff) | uint64(major&0xfff)<<8 | uint64(minor&^0xff)<<12 | uint64(major&^0xfff)<<32
}

// verify checks a file's content against its index SHA-256 once; the
// result stands for every later read.
func (f *FS) verify(e *view.Entry) error {
	if f.sealed() && (e.Member != nil || !e.Node.Rec.Has(fileindex.FlagSparse)) {
		// Each frame is checked against its sealed SHA-256 as it is
		// decoded: the bytes served are the sealed ones, read or not
		// the whole file first. A file of several frames has them
		// decoded ahead on both cores (and its compressed bytes read
		// ahead from disk) while the first are served.
		if e.Member == nil && e.Size > archive.FrameTarget && e.Node.Rec.DataOffset >= 0 {
			if b, ok := f.a.Blob(manifest.BlobName(e.LayerDigest())); ok {
				f.a.Warm(b.Offset+e.Node.Rec.DataOffset, e.Size, 4)
			}
		}
		return nil
	}
	if e.Member != nil {
		return f.once(fileKey{member: e.Member.Entry}, e, e.Member.SHA256, "the manifest")
	}
	if e.Virtual {
		return nil
	}
	return f.once(fileKey{layer: e.LayerDigest(), ino: e.Node.Rec.Ino}, e, e.Node.Rec.SHA256, "its index")
}

// once checks e's content against want the first time it is asked for
// key; the result stands for every later read.
func (f *FS) once(key fileKey, e *view.Entry, want hashing.Digest, says string) error {
	f.mu.Lock()
	vf, ok := f.verified[key]
	if !ok {
		vf = &verification{}
		f.verified[key] = vf
	}
	f.mu.Unlock()
	vf.once.Do(func() {
		// A file spanning several frames: have them decoded on both
		// cores while the first ones are hashed.
		if n := e.Node; n != nil && e.Size > archive.FrameTarget && n.Rec.DataOffset >= 0 && !n.Rec.Has(fileindex.FlagSparse) {
			if b, ok := f.a.Blob(manifest.BlobName(e.LayerDigest())); ok {
				f.a.Warm(b.Offset+n.Rec.DataOffset, e.Size, 4)
			}
		}
		r, err := f.v.Open(e)
		if err != nil {
			vf.err = err
			return
		}
		h := hashing.NewMulti(false, false)
		n, err := io.Copy(h, r)
		switch {
		case err != nil:
			vf.err = err
		case n != e.Size || h.SHA256() != want:
			vf.err = fmt.Errorf("%w: %s has SHA-256 %s, %s says %s", manifest.ErrCorrupt, e.Path, h.SHA256().Hex(), says, want.Hex())
		}
		if vf.err != nil {
			f.Log(fmt.Sprintf("refusing to serve %s: %v", e.Path, vf.err))
		}
	})
	return vf.err
}

// smallFile is the content of one of amber's own files.
type smallFile struct {
	once sync.Once
	data []byte
	err  error
}

// node is any entry of the mount.
type node struct {
	fs.Inode
	fsys *FS
	e    *view.Entry
	// small holds amber's own small files (manifest.json, config.json),
	// read on first use; nil for every other node.
	small *smallFile
	// verified spares each READ the lookup in FS.verified once the
	// content has passed its hash check.
	verified atomic.Bool
	// epoch is the budget's round when the node was made.
	epoch int64
	// pushed: its content was stored into the kernel's cache; for a
	// directory: its files' content was.
	pushed atomic.Bool
}

var (
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeReader         = (*node)(nil)
	_ fs.NodeFlusher        = (*node)(nil)
	_ fs.NodeGetxattrer     = (*node)(nil)
	_ fs.NodeListxattrer    = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeSetxattrer     = (*node)(nil)
	_ fs.NodeRemovexattrer  = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeWriter         = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.NodeAllocater      = (*node)(nil)
)

func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, view.ErrNotFound), errors.Is(err, manifest.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, view.ErrNotDir):
		return syscall.ENOTDIR
	}
	return syscall.EIO
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.attr(n.e, &out.Attr)
	return 0
}

func (n *node) child(ctx context.Context, e *view.Entry, out *fuse.EntryOut) *fs.Inode {
	n.fsys.attr(e, &out.Attr)
	ch := &node{fsys: n.fsys, e: e}
	if e.Virtual && e.Member == nil && e.Type == fileindex.TypeReg {
		ch.small = &smallFile{}
	}
	in := n.NewInode(ctx, ch, fs.StableAttr{Mode: out.Attr.Mode & syscall.S_IFMT, Ino: out.Attr.Ino})
	if e.Node != nil || e.Member != nil {
		n.fsys.inodes.add(ch)
	}
	return in
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, err := n.fsys.v.Child(n.e, name)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.child(ctx, e, out), 0
}

// dirHandle is an open directory: its entries, read on the first READDIR
// (with FOPEN_CACHE_DIR the kernel keeps them, so an OPENDIR of a cached
// directory costs nothing here), and a Lookup that serves READDIRPLUS from
// them instead of resolving each name again.
type dirHandle struct {
	n    *node
	once sync.Once
	err  syscall.Errno
	ds   fs.DirStream
	kids map[string]*view.Entry
}

func (d *dirHandle) load() syscall.Errno {
	d.once.Do(func() {
		kids, err := d.n.fsys.v.ReadDirOf(d.n.e)
		if err != nil {
			d.err = toErrno(err)
			return
		}
		list := make([]fuse.DirEntry, 0, len(kids))
		d.kids = make(map[string]*view.Entry, len(kids))
		for _, k := range kids {
			list = append(list, fuse.DirEntry{Name: k.Name, Mode: modeType(k.Type), Ino: d.n.fsys.ino(k)})
			d.kids[k.Name] = k
		}
		d.ds = fs.NewListDirStream(list)
	})
	return d.err
}

func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if d.load() == 0 {
		if e, ok := d.kids[name]; ok {
			return d.n.child(ctx, e, out), 0
		}
	}
	return d.n.Lookup(ctx, name, out)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := d.load(); errno != 0 {
		return nil, errno
	}
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := d.load(); errno != 0 {
		return errno
	}
	return d.ds.(fs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

func modeType(t byte) uint32 {
	switch t {
	case fileindex.TypeDir:
		return syscall.S_IFDIR
	case fileindex.TypeSymlink:
		return syscall.S_IFLNK
	case fileindex.TypeChar:
		return syscall.S_IFCHR
	case fileindex.TypeBlock:
		return syscall.S_IFBLK
	case fileindex.TypeFifo:
		return syscall.S_IFIFO
	}
	return syscall.S_IFREG
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.e.Type != fileindex.TypeSymlink {
		return nil, syscall.EINVAL
	}
	return []byte(n.fsys.linkTarget(n.e)), 0
}

// linkTarget is what a symlink shows: its target as captured, or, with
// RebaseLinks, as resolved inside its view's root (relative: it cannot
// leave the view). The kernel allows no user.* xattr on a symlink, so the
// captured target is amber ls's to show.
func (f *FS) linkTarget(e *view.Entry) string {
	t := e.Node.Rec.Linkname
	if f.rebase {
		return view.RebaseLink(e.Node.Rec.Path, t)
	}
	return t
}

// Open answers ENOSYS for files: the kernel then stops sending OPEN (and
// FLUSH) and keeps its page cache, which is all an immutable file needs.
// Opening for writing never gets here: the mount is read-only.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, 0, syscall.ENOSYS
}

func (n *node) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return syscall.ENOSYS }

func (n *node) content() ([]byte, error) {
	c := n.small
	if c == nil {
		return nil, fmt.Errorf("%s: not one of amber's own files", n.e.Path)
	}
	c.once.Do(func() {
		r, err := n.fsys.v.Open(n.e)
		if err != nil {
			c.err = err
			return
		}
		c.data, c.err = io.ReadAll(r)
	})
	return c.data, c.err
}

func (n *node) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	e := n.e
	if e.Type != fileindex.TypeReg {
		return nil, syscall.EISDIR
	}
	if off >= e.Size {
		return fuse.ReadResultData(nil), 0
	}
	if e.Virtual && e.Member == nil {
		b, err := n.content()
		if err != nil {
			return nil, syscall.EIO
		}
		return fuse.ReadResultData(b[off:min(off+int64(len(dest)), int64(len(b)))]), 0
	}
	if !n.verified.Load() {
		if err := n.fsys.verify(e); err != nil {
			return nil, syscall.EIO
		}
		n.verified.Store(true)
	}
	n.fsys.reads.Add(1)
	if f := n.fsys; f.push != nil && e.Node != nil && f.sealed() {
		// Have the directory's next files in the kernel's cache before
		// the reader gets to them (push.go).
		if name, parent := n.Parent(); parent != nil {
			if pn, ok := parent.Operations().(*node); ok && !pn.pushed.Swap(true) {
				f.pushAfter(parent, name)
			}
		}
	}
	var r io.Reader
	var err error
	if e.Member != nil {
		r, err = n.fsys.v.Open(e)
	} else {
		r, err = n.fsys.a.Content(e.LayerDigest(), &e.Node.Rec)
	}
	if err != nil {
		return nil, syscall.EIO
	}
	// Straight from the decoded frames to the kernel: no copy.
	if h, ok, err := n.fsys.hold(r, off, int64(len(dest))); ok {
		if err != nil {
			n.fsys.Log(fmt.Sprintf("refusing to serve %s (bytes %d-%d): %v", e.Path, off, off+int64(len(dest))-1, err))
			return nil, syscall.EIO
		}
		return heldResult{h}, 0
	}
	ra, ok := r.(io.ReaderAt)
	if !ok {
		// Sparse entries are re-read through their tar header.
		if _, err := io.CopyN(io.Discard, r, off); err != nil {
			return nil, syscall.EIO
		}
		k, err := io.ReadFull(r, dest[:min(int64(len(dest)), e.Size-off)])
		if err != nil {
			return nil, syscall.EIO
		}
		return fuse.ReadResultData(dest[:k]), 0
	}
	k, err := ra.ReadAt(dest[:min(int64(len(dest)), e.Size-off)], off)
	if err != nil && err != io.EOF {
		n.fsys.Log(fmt.Sprintf("refusing to serve %s (bytes %d-%d): %v", e.Path, off, off+int64(len(dest))-1, err))
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// hold holds up to n bytes at off of the content r reads, when r reads
// the archive's tar stream in place (ok); not for sparse files, which are
// re-read through their tar header.
func (f *FS) hold(r io.Reader, off, n int64) (h *archive.Held, ok bool, err error) {
	sr, ok := r.(*io.SectionReader)
	if !ok {
		return nil, false, nil
	}
	outer, base, size := sr.Outer()
	if outer != io.ReaderAt(f.a) {
		return nil, false, nil
	}
	h, err = f.a.Hold(base+off, min(n, size-off))
	return h, true, err
}

// heldResult replies to a READ from the decoded frames themselves: go-fuse
// writes its slices with one writev (it knows the Slices method) and calls
// Done after, which lets the frames be reused. A reply never sent (the
// request interrupted) leaves its frames to the garbage collector.
type heldResult struct{ h *archive.Held }

func (r heldResult) Size() int { return r.h.Len() }

func (r heldResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, b := range r.h.Bufs {
		buf = append(buf, b...)
	}
	return buf, fuse.OK
}

func (r heldResult) Slices() ([][]byte, fuse.Status) { return r.h.Bufs, fuse.OK }

func (r heldResult) Done() { r.h.Release() }

func (n *node) xattrs() map[string]string {
	m := map[string]string{}
	if n.e.Node != nil {
		for k, v := range n.e.Node.Rec.Xattrs {
			m[k] = v
		}
	}
	if d := n.e.SHA256(); !d.IsZero() {
		m[XattrSHA256] = d.Hex()
	}
	return m
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	// ls -l asks every file for security.selinux: answer without building
	// anything.
	var v string
	var ok bool
	if attr == XattrSHA256 {
		if d := n.e.SHA256(); !d.IsZero() {
			v, ok = d.Hex(), true
		}
	} else if n.e.Node != nil && n.e.Node.Rec.Xattrs != nil {
		v, ok = n.e.Node.Rec.Xattrs[attr]
	}
	if !ok {
		if strings.HasPrefix(attr, "security.") || strings.HasPrefix(attr, "system.") {
			// ls -l asks every file for security.selinux and
			// system.posix_acl_access; ENOTSUP (unlike ENODATA) lets it
			// remember that for the whole file system instead of asking
			// again for every file. Captured attributes of these names
			// (capabilities, ACLs) are still returned above.
			return 0, syscall.EOPNOTSUPP
		}
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	for k := range n.xattrs() {
		b = append(append(b, k...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.Blocks = uint64(n.fsys.a.TarSize+4095) / 4096
	out.NameLen = 255
	return 0
}

// Every mutation is refused: evidence does not change.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno { return syscall.EROFS }
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EROFS }
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}
func (n *node) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}
func (n *node) Allocate(ctx context.Context, fh fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	return syscall.EROFS
}

// Timeout is how long the kernel may cache entries and attributes: the
// content of an archive never changes.
const Timeout = 24 * time.Hour
