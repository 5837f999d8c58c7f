package extract

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// ErrExists reports a destination path that exists (Options.Force
// overwrites).
var ErrExists = errors.New("extract: exists")

// ErrIncomplete reports an extraction that finished without some entries
// (Result.NotWritten); it is for the caller to return, not returned by To.
var ErrIncomplete = errors.New("extract: incomplete")

// privBits are the mode bits a copy of hostile evidence drops unless
// Options.KeepModes: a setuid or setgid file extracted by root runs with
// root's (or a group's) rights for any local user, and a directory others
// may write lets them plant files in the examiner's copy. Sticky goes too:
// without write for others it serves nothing, and the rule stays simple
// (only rwx bits, others never writing).
const privBits = 0o7002

// Options tune an extraction.
type Options struct {
	// Force replaces what exists at the destination's paths.
	Force bool
	// Owners sets uid/gid as recorded (needs root).
	Owners bool
	// KeepModes keeps the setuid, setgid and sticky bits and write for
	// others as recorded; otherwise they are dropped (privBits).
	KeepModes bool
	// Progress receives each path written.
	Progress func(string)
}

// Result counts what was written and what was not.
type Result struct {
	Files, Dirs, Symlinks, Hardlinks int
	Bytes                            int64
	// Skipped lists entries not written (devices, fifos) and why.
	Skipped []string
	// Altered lists the entries written with a mode or owner other than
	// recorded (bits dropped, owners not set), in the order written.
	Altered []Altered
	// NotWritten lists the entries the destination refused for
	// themselves (a name longer than its file system allows); a
	// directory's contents went with it. The rest was written.
	NotWritten []NotWritten
}

// Altered is an entry written with another mode or owner than recorded.
// Modes are the permission, setuid, setgid and sticky bits (07777).
type Altered struct {
	Path                     string // as written, relative to the destination directory
	RecordedMode, Mode       uint32
	RecordedUID, RecordedGID uint32
	UID, GID                 uint32
}

// NotWritten is an entry skipped, and why.
type NotWritten struct {
	Path string // relative to the destination directory
	Err  error
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

// entry writes e at p; an error that is about this entry alone (its name
// on this file system) skips it, noted, and the extraction goes on.
func (x *extractor) entry(e *view.Entry, p string) error {
	err := x.write(e, p)
	if err != nil && entryOnly(err) {
		x.res.NotWritten = append(x.res.NotWritten, NotWritten{Path: p, Err: err})
		return nil
	}
	return err
}

// entryOnly tells the errors that concern one entry's name from those
// (no space, I/O, bad content) that end the extraction: a component
// longer than the file system's NAME_MAX (ext4: 255 bytes, PAX has no
// limit), a link target longer than PATH_MAX, a name the file system
// cannot encode.
func entryOnly(err error) bool {
	return errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.EILSEQ)
}

func (x *extractor) write(e *view.Entry, p string) error {
	if x.opts.Progress != nil {
		x.opts.Progress(p)
	}
	switch e.Type {
	case fileindex.TypeDir:
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
	case fileindex.TypeSymlink:
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
			setLinkTimes(filepath.Join(x.root.Name(), p), e.ModTime)
		}
		return x.compare(e, p)
	case fileindex.TypeReg:
		if _, err := x.prepare(p, false); err != nil {
			return err
		}
		key := ""
		if e.Node != nil && e.Node.Rec.Nlink > 1 {
			key = fmt.Sprintf("%s/%d", e.LayerDigest(), e.Node.Rec.Ino)
			if first, ok := x.links[key]; ok {
				if err := x.root.Link(first, p); err == nil {
					x.res.Hardlinks++
					return nil
				}
			}
		}
		if err := x.file(e, p); err != nil {
			return err
		}
		// Only a name written is one the next links can point at (not
		// one skipped for its length).
		if key != "" {
			x.links[key] = p
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

// meta sets mode (less privBits unless asked), owner (when asked) and
// times, then notes what differs from the record; directories after
// their contents.
func (x *extractor) meta(e *view.Entry, p string) error {
	if x.opts.Owners && e.Node != nil {
		if err := x.root.Lchown(p, int(e.Node.Rec.UID), int(e.Node.Rec.GID)); err != nil {
			return err
		}
	}
	bits := e.Mode & 0o7777
	if !x.opts.KeepModes {
		bits &^= privBits
	}
	mode := fs.FileMode(bits & 0o777)
	if bits&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if bits&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if bits&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	if err := x.root.Chmod(p, mode); err != nil {
		return err
	}
	if mt := e.ModTime; !mt.IsZero() {
		at := mt
		if e.Node != nil && !e.Node.Rec.AccessTime.IsZero() {
			at = e.Node.Rec.AccessTime
		}
		if err := x.root.Chtimes(p, at, mt); err != nil {
			return err
		}
	}
	return x.compare(e, p)
}

// compare notes p in Result.Altered when its mode or owner on disk is not
// the recorded one. It asks the file system rather than trusting what was
// asked of it: the kernel drops the setgid bit of a file whose group the
// (non-root) extracting user is not in, and a setgid DEST gives its group
// to what is made in it.
func (x *extractor) compare(e *view.Entry, p string) error {
	st, err := x.root.Lstat(p)
	if err != nil {
		return err
	}
	mode, uid, gid, ok := modeOwner(st)
	if !ok {
		return nil
	}
	a := Altered{Path: p, RecordedMode: e.Mode & 0o7777, Mode: mode & 0o7777, UID: uid, GID: gid}
	a.RecordedUID, a.RecordedGID = a.UID, a.GID // amber's own files (manifest, memory) record no owner
	if e.Node != nil {
		a.RecordedUID, a.RecordedGID = e.Node.Rec.UID, e.Node.Rec.GID
	}
	if e.Type == fileindex.TypeSymlink {
		a.Mode = a.RecordedMode // a link's mode means nothing on Linux and cannot be set
	}
	if a.Mode != a.RecordedMode || a.UID != a.RecordedUID || a.GID != a.RecordedGID {
		x.res.Altered = append(x.res.Altered, a)
	}
	return nil
}

func typeName(t byte) string {
	switch t {
	case fileindex.TypeChar:
		return "character device"
	case fileindex.TypeBlock:
		return "block device"
	case fileindex.TypeFifo:
		return "fifo"
	}
	return "special file"
}
