package extract

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// ErrExists reports a destination path that exists (Options.Force
// overwrites).
var ErrExists = errors.New("extract: exists")

// Options tune an extraction.
type Options struct {
	// Force replaces what exists at the destination's paths.
	Force bool
	// Owners sets uid/gid as recorded (needs root).
	Owners bool
	// Progress receives each path written.
	Progress func(string)
}

// Result counts what was written and what was not.
type Result struct {
	Files, Dirs, Symlinks, Hardlinks int
	Bytes                            int64
	// Skipped lists entries not written (devices, fifos) and why.
	Skipped []string
}

type extractor struct {
	v     *view.View
	root  *os.Root
	opts  Options
	res   Result
	links map[string]string // "layer/ino" -> first path written
	buf   []byte
}

// To copies e (a file, symlink or directory of v) to name inside dest
// (name is the last path component, as docker cp would use).
func To(v *view.View, e *view.Entry, dest, name string, opts Options) (*Result, error) {
	if name == "" || name == "." || name == ".." || path.Base(name) != name {
		return nil, fmt.Errorf("extract: bad destination name %q", name)
	}
	r, err := os.OpenRoot(dest)
	if err != nil {
		return nil, fmt.Errorf("extract: %w", err)
	}
	defer r.Close()
	x := &extractor{v: v, root: r, opts: opts, links: map[string]string{}, buf: make([]byte, 1<<20)}
	if err := x.entry(e, name); err != nil {
		return &x.res, err
	}
	return &x.res, nil
}

// prepare makes room for p: nothing there, or (with Force) whatever is
// there removed; a directory that exists stays when a directory is wanted.
func (x *extractor) prepare(p string, wantDir bool) (exists bool, err error) {
	st, err := x.root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !x.opts.Force {
		return true, fmt.Errorf("%w: %s (--force replaces it)", ErrExists, p)
	}
	if wantDir && st.IsDir() {
		return true, nil
	}
	return false, x.root.RemoveAll(p)
}

func (x *extractor) entry(e *view.Entry, p string) error {
	if x.opts.Progress != nil {
		x.opts.Progress(p)
	}
	switch e.Type {
	case manifest.TypeDir:
		exists, err := x.prepare(p, true)
		if err != nil {
			return err
		}
		if !exists {
			if err := x.root.Mkdir(p, 0o700); err != nil {
				return err
			}
		}
		x.res.Dirs++
		kids, err := x.v.ReadDir(e.Path)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if err := x.entry(k, p+"/"+k.Name); err != nil {
				return err
			}
		}
		return x.meta(e, p)
	case manifest.TypeSymlink:
		if _, err := x.prepare(p, false); err != nil {
			return err
		}
		if err := x.root.Symlink(e.Node.Rec.Linkname, p); err != nil {
			return err
		}
		x.res.Symlinks++
		if x.opts.Owners {
			x.root.Lchown(p, int(e.Node.Rec.UID), int(e.Node.Rec.GID))
		}
		// The link's own times (os.Root has no lutimes): the path's
		// parents are directories this extraction made or checked.
		if !e.ModTime.IsZero() {
			ts := []unix.Timespec{unix.NsecToTimespec(e.ModTime.UnixNano()), unix.NsecToTimespec(e.ModTime.UnixNano())}
			unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(x.root.Name(), p), ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		return nil
	case manifest.TypeReg:
		if _, err := x.prepare(p, false); err != nil {
			return err
		}
		if e.Node != nil && e.Node.Rec.Nlink > 1 {
			key := fmt.Sprintf("%s/%d", e.LayerDigest(), e.Node.Rec.Ino)
			if first, ok := x.links[key]; ok {
				if err := x.root.Link(first, p); err == nil {
					x.res.Hardlinks++
					return nil
				}
			}
			x.links[key] = p
		}
		if err := x.file(e, p); err != nil {
			return err
		}
		return x.meta(e, p)
	default:
		x.res.Skipped = append(x.res.Skipped, fmt.Sprintf("%s: a %s, not created", p, typeName(e.Type)))
		return nil
	}
}

func (x *extractor) file(e *view.Entry, p string) error {
	f, err := x.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	r, err := x.v.Open(e)
	if err != nil {
		f.Close()
		x.root.Remove(p)
		return err
	}
	h := hashing.NewMulti(false, false)
	n, err := io.CopyBuffer(io.MultiWriter(f, h), r, x.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && (n != e.Size || h.SHA256() != e.SHA256()) {
		err = fmt.Errorf("%w: %s has SHA-256 %s, the archive records %s; not kept", manifest.ErrCorrupt, e.Path, h.SHA256().Hex(), e.SHA256().Hex())
	}
	if err != nil {
		x.root.Remove(p)
		return err
	}
	x.res.Files++
	x.res.Bytes += n
	return nil
}

// meta sets mode, owner (when asked) and times; directories after their
// contents.
func (x *extractor) meta(e *view.Entry, p string) error {
	if x.opts.Owners && e.Node != nil {
		if err := x.root.Lchown(p, int(e.Node.Rec.UID), int(e.Node.Rec.GID)); err != nil {
			return err
		}
	}
	mode := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	if err := x.root.Chmod(p, mode); err != nil {
		return err
	}
	mt := e.ModTime
	if mt.IsZero() {
		return nil
	}
	at := mt
	if e.Node != nil && !e.Node.Rec.AccessTime.IsZero() {
		at = e.Node.Rec.AccessTime
	}
	return x.root.Chtimes(p, at, mt)
}

func typeName(t byte) string {
	switch t {
	case manifest.TypeChar:
		return "character device"
	case manifest.TypeBlock:
		return "block device"
	case manifest.TypeFifo:
		return "fifo"
	}
	return "special file"
}
