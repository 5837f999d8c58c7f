//go:build linux

// Lookups and listings: a directory's entries come from view, once per
// open directory, and serve READDIRPLUS's lookups too.

package fusefs

import (
	"context"
	"sync"
	"syscall"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/view"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

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
