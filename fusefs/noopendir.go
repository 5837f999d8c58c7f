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
	open map[uint64]uint64 // node ID -> handle opened for a listing
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
	fh, ok := n.open[in.NodeId]
	if !ok {
		var oo fuse.OpenOut
		st := n.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader}, &oo)
		if !st.Ok() {
			n.mu.Unlock()
			return st
		}
		fh = oo.Fh
		n.open[in.NodeId] = fh
	}
	n.mu.Unlock()
	in2 := *in
	in2.Fh = fh
	st := read(cancel, &in2, out)
	if !st.Ok() || len(out.Bytes()) == 0 {
		// The end of the listing (or an error): the kernel has it all
		// in its cache now. (Readers sharing the handle that are not
		// done yet open another one and seek.)
		n.mu.Lock()
		if cur, ok := n.open[in.NodeId]; ok && cur == fh {
			delete(n.open, in.NodeId)
			n.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: fh})
		}
		n.mu.Unlock()
	}
	return st
}

// Forget lets a listing's handle go with its directory.
func (n *noOpendir) Forget(nodeID, nlookup uint64) {
	n.mu.Lock()
	if fh, ok := n.open[nodeID]; ok {
		n.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: nodeID}, Fh: fh})
		delete(n.open, nodeID)
	}
	n.mu.Unlock()
	n.RawFileSystem.Forget(nodeID, nlookup)
}

// Lseek answers ENOSYS: the kernel then seeks by itself (SEEK_DATA and
// SEEK_HOLE see no holes) and stops asking; grep -r asks once per file.
func (n *noOpendir) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	return fuse.ENOSYS
}
