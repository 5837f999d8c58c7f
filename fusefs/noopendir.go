//go:build linux

package fusefs

import (
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// noOpendir spares the kernel an OPENDIR and a RELEASEDIR for every
// directory it lists (two of the three requests a warm grep -r makes per
// directory): with FUSE_NO_OPENDIR_SUPPORT negotiated, OPENDIR answers
// ENOSYS once and the kernel stops sending them, keeping each directory's
// listing in its page cache (it then treats directories as opened with
// FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE). go-fuse's node bridge only lists
// directories through a handle, so READDIR(PLUS) without one (Fh 0) opens
// one here, keeps it while the kernel reads the listing, and releases it
// at the end.
type noOpendir struct {
	fuse.RawFileSystem
	// on is set once the kernel has accepted FUSE_NO_OPENDIR_SUPPORT.
	on atomic.Bool

	mu   sync.Mutex
	open map[uint64]*listing // node ID -> handle opened for a listing
}

// listing is a handle opened for READDIR without OPENDIR.
type listing struct {
	fh   uint64
	busy int  // READDIRs using it now
	drop bool // the listing ended, or FORGET came: release when no READDIR uses it
}

func (n *noOpendir) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if n.on.Load() {
		return fuse.ENOSYS
	}
	return n.RawFileSystem.OpenDir(cancel, in, out)
}

func (n *noOpendir) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return n.list(cancel, in, out, n.RawFileSystem.ReadDir)
}

func (n *noOpendir) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return n.list(cancel, in, out, n.RawFileSystem.ReadDirPlus)
}

func (n *noOpendir) list(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, read func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(cancel, in, out)
	}
	n.mu.Lock()
	l, ok := n.open[in.NodeId]
	if !ok {
		var oo fuse.OpenOut
		st := n.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader}, &oo)
		if !st.Ok() {
			n.mu.Unlock()
			return st
		}
		l = &listing{fh: oo.Fh}
		n.open[in.NodeId] = l
	}
	l.busy++
	n.mu.Unlock()
	in2 := *in
	in2.Fh = l.fh
	st := read(cancel, &in2, out)
	n.mu.Lock()
	l.busy--
	// At the end of the listing (or an error) the kernel has it all in
	// its cache. (Readers sharing the handle that are not done yet open
	// another one and seek.)
	if !st.Ok() || len(out.Bytes()) == 0 {
		l.drop = true
	}
	if l.drop && l.busy == 0 {
		n.release(in.NodeId, l)
	}
	n.mu.Unlock()
	return st
}

// release lets l go; n.mu is held.
func (n *noOpendir) release(id uint64, l *listing) {
	if n.open[id] == l {
		delete(n.open, id)
	}
	n.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: id}, Fh: l.fh})
}

// Forget lets a listing's handle go with its directory. A FORGET does not
// always mean the node is gone (the kernel may have looked it up again
// since, and be listing it): a handle in use is released when its last
// READDIR ends.
func (n *noOpendir) Forget(nodeID, nlookup uint64) {
	n.mu.Lock()
	if l, ok := n.open[nodeID]; ok {
		l.drop = true
		if l.busy == 0 {
			n.release(nodeID, l)
		}
	}
	n.mu.Unlock()
	n.RawFileSystem.Forget(nodeID, nlookup)
}

// Lseek answers ENOSYS: the kernel then seeks by itself (SEEK_DATA and
// SEEK_HOLE see no holes) and stops asking; grep -r asks once per file.
func (n *noOpendir) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	return fuse.ENOSYS
}
