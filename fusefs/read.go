//go:build linux

// Content: symlink targets, amber's own small files, and archived files
// read from the decoded frames after their hash check.

package fusefs

import (
	"context"
	"fmt"
	"io"
	"syscall"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/view"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

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
