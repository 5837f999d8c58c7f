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
		// A container's (or pod's) own files and their directories,
		// numbered in path order: stable for the archive.
		if members := art.Members(); members != nil {
			paths := map[string]bool{}
			for _, m := range members {
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

// Timeout is how long the kernel may cache entries and attributes: the
// content of an archive never changes.
const Timeout = 24 * time.Hour
