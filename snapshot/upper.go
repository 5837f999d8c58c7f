//go:build linux

package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/manifest"
)

// errRouteUnsupported says the upper directory uses overlay features whose
// meaning depends on the lower layers (redirect_dir, metacopy): the export
// route is used instead.
var errRouteUnsupported = errors.New("overlay upper directory uses redirects or metacopy")

// upperRoute writes a container's overlay2 upper directory (and the
// engine's init layer below it: /etc/hosts, /dev, ... as docker export shows
// them) as one OCI layer: overlay whiteouts (0:0 character devices) become
// .wh.NAME, opaque directories (trusted.overlay.opaque=y) get .wh..wh..opq,
// overlay's own xattrs are left out, every other xattr and all three times
// are kept. dirs are the overlay layers, top first. Files are opened
// O_NOATIME and never written. A file that changes while it is read (a
// live container) is read once more; if it changes again, the second read
// is stored and flagged changed-during-capture (see storeFile).
//
// With overlay false the directories are plain (a volume): character
// devices stay devices and no xattr has a special meaning.
func upperRoute(dirs []string, overlay bool, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	var roots []*dirFD
	defer func() {
		for _, d := range roots {
			d.close()
		}
	}()
	for _, d := range dirs {
		fd, err := openDir(unix.AT_FDCWD, d, d)
		if err != nil {
			return fmt.Errorf("opening the container's layer directory: %w", err)
		}
		roots = append(roots, fd)
	}
	// Names are read through /proc/self/fd (see entryAt.procPath): without
	// /proc every name would look deleted.
	if len(roots) > 0 {
		if _, err := os.Stat(entryAt{dir: roots[0], name: "."}.procPath()); err != nil {
			return fmt.Errorf("reading the container's layer directory needs /proc: %w", err)
		}
	}
	w := &upperWalk{overlay: overlay, lf: lf, anomalies: anomalies, links: map[[2]uint64]string{}, buf: make([]byte, 1<<20)}
	return w.dir(roots, "")
}

// upperWalk is one walk of upperRoute.
type upperWalk struct {
	overlay   bool
	lf        *layerFile
	anomalies *[]manifest.Anomaly
	// links: the first path of each file with more than one link
	links map[[2]uint64]string
	buf   []byte
}

// dir writes the directory rel, merged from every layer that has it.
func (w *upperWalk) dir(layers []*dirFD, rel string) error {
	// Names from every layer that has this directory.
	var names []string
	seen := map[string]bool{}
	for _, dir := range layers {
		ents, err := dir.names()
		if err != nil {
			return fmt.Errorf("reading %s: %w", dir.path, err)
		}
		for _, n := range ents {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if err := w.entry(layers, rel, name); err != nil {
			return err
		}
	}
	return nil
}

// topOf finds name in the layers: the topmost layer holding it decides;
// a directory merges with directories below it.
func topOf(layers []*dirFD, name string) ([]entryAt, error) {
	var top []entryAt
	for _, dir := range layers {
		e := entryAt{dir: dir, name: name}
		if err := unix.Fstatat(dir.fd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("reading %s: %w", e.path(), err)
		}
		top = append(top, e)
		if e.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			break
		}
	}
	return top, nil
}

// entry writes name of the directory rel.
func (w *upperWalk) entry(layers []*dirFD, rel, name string) error {
	p := joinPath(rel, name)
	top, err := topOf(layers, name)
	if err != nil {
		return err
	}
	if len(top) == 0 {
		*w.anomalies = append(*w.anomalies, manifest.Anomaly{Path: p, Kind: "vanished", Detail: "deleted while the capture read the directory"})
		return nil
	}
	if statHook != nil {
		statHook(top[0].path())
	}
	st := top[0].st
	mode := st.Mode & unix.S_IFMT
	if w.overlay && mode == unix.S_IFCHR && st.Rdev == 0 {
		return w.lf.whiteout(rel, name)
	}
	xattrs, opaque, err := readXattrs(top[0], w.overlay)
	if errors.Is(err, unix.ENOENT) {
		*w.anomalies = append(*w.anomalies, vanished(p, err))
		return nil
	}
	if err != nil {
		return err
	}
	h := &tar.Header{Name: p, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()), AccessTime: time.Unix(st.Atim.Unix()), ChangeTime: time.Unix(st.Ctim.Unix())}
	for k, v := range xattrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = v
	}
	switch mode {
	case unix.S_IFDIR:
		return w.subdir(top, h, p, opaque)
	case unix.S_IFLNK:
		t, err := readlinkat(top[0])
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) { // gone, or no longer a link
			*w.anomalies = append(*w.anomalies, vanished(p, err))
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading link %s: %w", top[0].path(), err)
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, t
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if mode == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		*w.anomalies = append(*w.anomalies, manifest.Anomaly{Path: p, Kind: "socket", Detail: "a unix socket: tar cannot hold it; not stored"})
		return nil
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if st.Nlink > 1 {
			if first, ok := w.links[key]; ok {
				h.Typeflag, h.Linkname = tar.TypeLink, first
				break
			}
			w.links[key] = p
		}
		h.Typeflag = tar.TypeReg
		return storeFile(top[0], &st, h, w.lf, w.buf, p, w.anomalies)
	default:
		return nil
	}
	return w.lf.header(h)
}

// subdir writes the directory p (h) and walks into it, through the
// directories it merges with.
func (w *upperWalk) subdir(top []entryAt, h *tar.Header, p string, opaque bool) error {
	sub, gone, err := openSubdirs(top, w.overlay, &opaque)
	if err != nil {
		return err
	}
	if gone != nil {
		*w.anomalies = append(*w.anomalies, vanished(p, gone))
		return nil
	}
	defer func() {
		for _, d := range sub {
			d.close()
		}
	}()
	h.Typeflag = tar.TypeDir
	h.Name += "/"
	if err := w.lf.header(h); err != nil {
		return err
	}
	if opaque {
		if err := w.lf.opaque(p); err != nil {
			return err
		}
	}
	return w.dir(sub, p)
}

// dirFD is an open directory of the upper route. Everything below it is
// reached from its descriptor one name at a time (fstatat, openat with
// O_NOFOLLOW, readlinkat), never by a path: a running container may swap
// a directory for a symlink to a host directory while the capture is
// inside it, and a path through it would then be resolved on the host. The
// descriptor stays on the directory that was opened, wherever it is moved.
type dirFD struct {
	fd int
	// path is where the directory was when opened: for messages only.
	path string
}

// openDir opens name under the directory at, without following a link
// and without changing its access time (as root, or its owner).
func openDir(at int, name, path string) (*dirFD, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(at, name, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Openat(at, name, flags, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &dirFD{fd: fd, path: path}, nil
}

func (d *dirFD) close() { unix.Close(d.fd) }

// names lists the directory sorted by name, through a descriptor of its
// own (the listing moves its offset), opened from d's.
func (d *dirFD) names() ([]string, error) {
	l, err := openDir(d.fd, ".", d.path)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(l.fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// entryAt is a name in an open directory of the upper route, as lstat
// found it there.
type entryAt struct {
	dir  *dirFD
	name string
	st   unix.Stat_t
}

func (e entryAt) path() string { return filepath.Join(e.dir.path, e.name) }

// procPath names e for the calls that take no directory descriptor (the
// xattr calls, and reopening a file held by an O_PATH descriptor): the
// kernel resolves /proc/self/fd/N to the directory the descriptor holds,
// not by its path, and the l- calls do not follow the last name.
func (e entryAt) procPath() string { return fmt.Sprintf("/proc/self/fd/%d/%s", e.dir.fd, e.name) }

// openSubdirs opens the directory top[0] and those it merges with below
// it (down to an opaque one, which sets opaque). A layer's directory gone
// or no longer a directory is left out; gone is set when the top one is,
// and nothing is open then.
func openSubdirs(top []entryAt, overlay bool, opaque *bool) (sub []*dirFD, gone error, err error) {
	for i, f := range top {
		if f.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			break
		}
		if i > 0 {
			_, op, err := readXattrs(f, overlay)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				for _, d := range sub {
					d.close()
				}
				return nil, nil, err
			}
			*opaque = *opaque || op
		}
		d, err := openDir(f.dir.fd, f.name, f.path())
		switch {
		case err == nil:
			sub = append(sub, d)
		case i == 0 && replaced(err):
			return nil, err, nil
		case !replaced(err):
			for _, d := range sub {
				d.close()
			}
			return nil, nil, fmt.Errorf("reading %s: %w", f.path(), err)
		}
		if *opaque {
			break
		}
	}
	return sub, nil, nil
}

// vanished records that p, found in its directory's listing, was gone or
// another kind of file when it was read: a running container's doing.
func vanished(p string, err error) manifest.Anomaly {
	return manifest.Anomaly{Path: p, Kind: "vanished", Detail: fmt.Sprintf("deleted or replaced while the capture read the directory: %v", err)}
}

// replaced reports whether opening a name lstat had found failed because
// it was deleted, or replaced by another kind of file (a symlink gives
// ELOOP under O_NOFOLLOW), since.
func replaced(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR)
}

func readlinkat(e entryAt) (string, error) {
	for n := 256; ; n *= 4 {
		b := make([]byte, n)
		k, err := unix.Readlinkat(e.dir.fd, e.name, b)
		if err != nil {
			return "", err
		}
		if k < n {
			return string(b[:k]), nil
		}
		if n >= 1<<16 { // Linux refuses targets of PATH_MAX (4096) bytes or more
			return "", fmt.Errorf("link target longer than %d bytes", n)
		}
	}
}

// readXattrs returns an entry's xattrs except overlay's own, whether it is
// an opaque directory, and errRouteUnsupported for redirects and metacopy.
func readXattrs(e entryAt, overlay bool) (map[string]string, bool, error) {
	p := e.procPath()
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) || err == nil {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("listing xattrs of %s: %w", e.path(), err)
	}
	lb := make([]byte, sz*2)
	sz, err = unix.Llistxattr(p, lb)
	if err != nil {
		return nil, false, fmt.Errorf("listing xattrs of %s: %w", e.path(), err)
	}
	var out map[string]string
	opaque := false
	for _, k := range strings.Split(strings.TrimRight(string(lb[:sz]), "\x00"), "\x00") {
		if k == "" {
			continue
		}
		v, err := getXattr(p, e.path(), k)
		if err != nil {
			return nil, false, err
		}
		if ov, ok := strings.CutPrefix(k, "trusted.overlay."); overlay && (ok || strings.HasPrefix(k, "user.overlay.")) {
			if !ok {
				ov = strings.TrimPrefix(k, "user.overlay.")
			}
			switch ov {
			case "opaque":
				opaque = opaque || v == "y"
			case "redirect", "metacopy":
				return nil, false, fmt.Errorf("%w (%s on %s)", errRouteUnsupported, k, e.path())
			}
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out, opaque, nil
}

// getXattr reads xattr k at p (a procPath; shown is for messages).
func getXattr(p, shown, k string) (string, error) {
	b := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, k, b)
		if errors.Is(err, unix.ERANGE) {
			b = make([]byte, len(b)*4)
			if len(b) > 1<<20 {
				return "", fmt.Errorf("xattr %s of %s is too large", k, shown)
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("reading xattr %s of %s: %w", k, shown, err)
		}
		return string(b[:n]), nil
	}
}

// statHook, when a test sets it, runs after the capture found an entry
// (lstat) and before it reads anything of it (xattrs, link, listing,
// content): the moment a container would swap it.
var statHook func(path string)
