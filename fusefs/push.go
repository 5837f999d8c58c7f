//go:build linux

package fusefs

import (
	"github.com/hanwen/go-fuse/v2/fs"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
)

// Pushing files into the kernel's page cache ahead of the reader.
//
// A cold grep -r over a tree of small files is a FUSE round trip per
// file: a READ, the reply, the reader woken again (on these machines
// ~150 µs each, more than the decoding). When a file of a directory is
// read, the directory's next small files are stored into the kernel's
// page cache from the decoded frames on another core
// (FUSE_NOTIFY_STORE), so that the reader finds them there without
// asking. Only for archives whose frames are sealed (the bytes pushed are
// the sealed ones, checked as their frames decode), only regular files
// of at most pushFileMax, at most pushBudget bytes per trigger: a
// directory only listed (find, ls -lR) gets nothing pushed.
const (
	pushFileMax = 1 << 20
	pushBudget  = 16 << 20
)

type pushJob struct {
	dir  *fs.Inode
	from string // push the files listed after this one
}

// pushAfter queues pushing the files of dir listed after self (dropped
// when the queue is full: the reader then reads them itself).
func (f *FS) pushAfter(dir *fs.Inode, self string) {
	select {
	case f.push <- pushJob{dir, self}:
	default:
	}
}

// pusher serves the queue until done is closed.
func (f *FS) pusher(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case j := <-f.push:
			f.pushDir(j)
		}
	}
}

func (f *FS) pushDir(j pushJob) {
	dn, ok := j.dir.Operations().(*node)
	if !ok {
		return
	}
	kids, err := f.v.ReadDirOf(dn.e)
	if err != nil {
		return
	}
	budget := int64(pushBudget)
	after := false
	for _, k := range kids {
		if !after {
			after = k.Name == j.from
			continue
		}
		if k.Type != fileindex.TypeReg || k.Node == nil || k.Size == 0 || k.Size > pushFileMax || k.Node.Rec.Has(fileindex.FlagSparse) {
			continue
		}
		ch := j.dir.GetChild(k.Name)
		if ch == nil {
			continue // not known to the kernel
		}
		cn, ok := ch.Operations().(*node)
		if !ok || cn.pushed.Load() || cn.verified.Load() {
			continue // pushed already, or being read
		}
		if budget -= k.Size; budget < 0 {
			// The next read of a file not pushed starts another round.
			dn.pushed.Store(false)
			return
		}
		cn.pushed.Store(true)
		f.pushFile(ch, k.LayerDigest(), &k.Node.Rec)
	}
}

// pushFile stores one file's content into the kernel's page cache.
func (f *FS) pushFile(ch *fs.Inode, layer hashing.Digest, rec *fileindex.Record) {
	r, err := f.a.Content(layer, rec)
	if err != nil {
		return
	}
	h, ok, err := f.hold(r, 0, rec.Size)
	if !ok || err != nil {
		return // a READ will report it
	}
	defer h.Release()
	off := int64(0)
	for _, b := range h.Bufs {
		if ch.WriteCache(off, b) != 0 {
			return
		}
		off += int64(len(b))
	}
	f.pushes.Add(1)
}
