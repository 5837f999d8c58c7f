//go:build linux

package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/hashing"
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
	links := map[[2]uint64]string{}
	buf := make([]byte, 1<<20)
	var walk func(layers []*dirFD, rel string) error
	walk = func(layers []*dirFD, rel string) error {
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
			p := joinPath(rel, name)
			// The topmost layer holding name decides; a directory merges
			// with directories below it down to an opaque one.
			var top []entryAt
			for _, dir := range layers {
				e := entryAt{dir: dir, name: name}
				if err := unix.Fstatat(dir.fd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					if errors.Is(err, unix.ENOENT) {
						continue
					}
					return fmt.Errorf("reading %s: %w", e.path(), err)
				}
				top = append(top, e)
				if e.st.Mode&unix.S_IFMT != unix.S_IFDIR {
					break
				}
			}
			if len(top) == 0 {
				*anomalies = append(*anomalies, manifest.Anomaly{Path: p, Kind: "vanished", Detail: "deleted while the capture read the directory"})
				continue
			}
			if statHook != nil {
				statHook(top[0].path())
			}
			st := top[0].st
			mode := st.Mode & unix.S_IFMT
			if overlay && mode == unix.S_IFCHR && st.Rdev == 0 {
				if err := lf.whiteout(rel, name); err != nil {
					return err
				}
				continue
			}
			xattrs, opaque, err := readXattrs(top[0], overlay)
			if errors.Is(err, unix.ENOENT) {
				*anomalies = append(*anomalies, vanished(p, err))
				continue
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
				sub, gone, err := openSubdirs(top, overlay, &opaque)
				if err != nil {
					return err
				}
				if gone != nil {
					*anomalies = append(*anomalies, vanished(p, gone))
					continue
				}
				h.Typeflag = tar.TypeDir
				h.Name += "/"
				err = lf.header(h)
				if err == nil && opaque {
					err = lf.opaque(p)
				}
				if err == nil {
					err = walk(sub, p)
				}
				for _, d := range sub {
					d.close()
				}
				if err != nil {
					return err
				}
				continue
			case unix.S_IFLNK:
				t, err := readlinkat(top[0])
				if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) { // gone, or no longer a link
					*anomalies = append(*anomalies, vanished(p, err))
					continue
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
				*anomalies = append(*anomalies, manifest.Anomaly{Path: p, Kind: "socket", Detail: "a unix socket: tar cannot hold it; not stored"})
				continue
			case unix.S_IFREG:
				key := [2]uint64{st.Dev, st.Ino}
				if st.Nlink > 1 {
					if first, ok := links[key]; ok {
						h.Typeflag, h.Linkname = tar.TypeLink, first
						break
					}
					links[key] = p
				}
				h.Typeflag = tar.TypeReg
				if err := storeFile(top[0], &st, h, lf, buf, p, anomalies); err != nil {
					return err
				}
				continue
			default:
				continue
			}
			if err := lf.header(h); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(roots, "")
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

// readHook, when a test sets it, runs after each read of a file's content
// and before the file's state is compared: the test changes the file
// there, at the one moment that matters.
var readHook func(path string, pass int)

// fileState is what tells one version of a file from the next without
// reading it again: its size and its modification and change times.
type fileState struct {
	size         int64
	mtime, ctime unix.Timespec
}

func stateOf(st *unix.Stat_t) fileState { return fileState{st.Size, st.Mtim, st.Ctim} }

func (s fileState) String() string {
	return fmt.Sprintf("size %d, mtime %s, ctime %s", s.size, timespec(s.mtime), timespec(s.ctime))
}

func timespec(t unix.Timespec) string {
	return time.Unix(t.Unix()).UTC().Format(time.RFC3339Nano)
}

// coarseNow is the clock the kernel stamps files with (current_time).
func coarseNow() unix.Timespec {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &ts)
	return ts
}

// racy reports whether a file whose change time is ctime may have been
// written at or after start without its times showing it: the kernel
// stamps a write with the clock's current tick, so writes within one tick
// leave ctime as it was. Only a ctime older than the tick in which a read
// began proves that nothing wrote during the read. A ctime with no
// nanoseconds is taken as whole seconds (a file system that keeps no
// more).
func racy(ctime, start unix.Timespec) bool {
	if ctime.Nsec == 0 {
		return ctime.Sec >= start.Sec
	}
	return ctime.Sec > start.Sec || ctime.Sec == start.Sec && ctime.Nsec >= start.Nsec
}

// storeFile stores the regular file at p (st: its lstat) as the entry h,
// opened so that its access time is not changed. A live container may
// rewrite the file while it is read, and a plain copy would then seal a
// version that never existed: so its size, mtime and ctime are compared
// before the read (lstat) and after it (fstat of the open file). When they
// differ the file is read once more, describing the version then found;
// if it changes again that second read is stored and flagged
// changed-during-capture with the states around both reads (--pause
// avoids it). A file smaller than buf is read into buf before anything is
// written; a larger one is streamed into the layer and, when it changed,
// taken back out of it before the second read.
func storeFile(e entryAt, st *unix.Stat_t, h *tar.Header, lf *layerFile, buf []byte, rel string, anomalies *[]manifest.Anomaly) error {
	p := e.path()
	fd, err := openRegular(e)
	if err != nil {
		// Gone or unreadable: recorded with the size lstat saw.
		h.Size = st.Size
		if err := lf.header(h); err != nil {
			return err
		}
		*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "unreadable", Detail: fmt.Sprintf("%v; %d zero bytes stored in its place", err, st.Size)})
		return writeZeros(lf.tw, st.Size, buf)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	before := stateOf(st)
	var reads []string
	for pass := 0; ; pass++ {
		var n int64
		var rerr error
		mark := int64(-1)
		start := coarseNow()
		if before.size < int64(len(buf)) {
			k, err := readAllAt(f, buf)
			n, rerr = int64(k), err
		} else {
			if mark, err = lf.mark(); err != nil {
				return err
			}
			h.Size = before.size
			if err := lf.header(h); err != nil {
				return err
			}
			src := &readErrReader{r: io.NewSectionReader(f, 0, before.size)}
			if n, err = io.CopyBuffer(lf.tw, src, buf); err != nil {
				return fmt.Errorf("storing %s: %w", rel, err)
			}
			rerr = src.err
			if err := writeZeros(lf.tw, before.size-n, buf); err != nil {
				return fmt.Errorf("storing %s: %w", rel, err)
			}
		}
		if readHook != nil {
			readHook(p, pass)
		}
		var now unix.Stat_t
		if err := unix.Fstat(fd, &now); err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		after := stateOf(&now)
		changed := rerr == nil && (after != before || n != before.size || racy(after.ctime, start))
		if changed && pass == 0 {
			reads = append(reads, fmt.Sprintf("first read: %s before, %s after", before, after))
			if mark >= 0 {
				if err := lf.rollback(mark); err != nil {
					return err
				}
			}
			// The second read is described by what it finds, and begins
			// once the clock has left the tick of the last change, so
			// that a quiet file reads as quiet (at most a tick; a second
			// on a file system with whole-second times).
			for i := 0; i < 1100 && racy(after.ctime, coarseNow()); i++ {
				time.Sleep(time.Millisecond)
			}
			before = after
			h.Mode, h.Uid, h.Gid = int64(now.Mode&0o7777), int(now.Uid), int(now.Gid)
			h.ModTime, h.AccessTime, h.ChangeTime = time.Unix(now.Mtim.Unix()), time.Unix(now.Atim.Unix()), time.Unix(now.Ctim.Unix())
			continue
		}
		if mark < 0 {
			// Read whole into buf: stored as read, unless a read failed.
			h.Size = n
			if rerr != nil {
				h.Size = max(n, before.size)
			}
			if err := lf.header(h); err != nil {
				return err
			}
			if _, err := lf.tw.Write(buf[:n]); err != nil {
				return fmt.Errorf("storing %s: %w", rel, err)
			}
			if err := writeZeros(lf.tw, h.Size-n, buf); err != nil {
				return fmt.Errorf("storing %s: %w", rel, err)
			}
		}
		switch {
		case rerr != nil:
			*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "size-changed", Detail: fmt.Sprintf("read failed: %v: %d of %d bytes; the rest stored as zeros", rerr, n, h.Size)})
		case changed:
			reads = append(reads, fmt.Sprintf("second read, stored: %s before, %s after", before, after))
			d := "changed while read, twice (use --pause for a busy container): " + strings.Join(reads, "; ")
			if after == before && n == before.size {
				d = "may have changed while read, twice: changed within the clock tick each read began in, so its times cannot tell (use --pause for a busy container): " + strings.Join(reads, "; ")
			}
			if n != h.Size {
				d += fmt.Sprintf("; %d bytes read, stored as %d (the size seen before the read; cut, or padded with zeros)", n, h.Size)
			}
			*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "changed-during-capture", Detail: d})
		}
		return nil
	}
}

// errNotRegular says a name that lstat found a regular file was something
// else when it was opened.
var errNotRegular = errors.New("no longer a regular file when opened")

// openRegular opens the regular file e for reading, without changing its
// access time. Only a regular file is ever opened: a running container
// could put a device node (the host's disk, a watchdog that opening arms)
// or a FIFO (whose open never returns) in place of a file between lstat
// and open, so it is held first by an O_PATH descriptor, which opens
// nothing, checked, and then reopened through that descriptor.
func openRegular(e entryAt) (int, error) {
	pfd, err := unix.Openat(e.dir.fd, e.name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: e.path(), Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return -1, &os.PathError{Op: "stat", Path: e.path(), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, &os.PathError{Op: "open", Path: e.path(), Err: errNotRegular}
	}
	self := fmt.Sprintf("/proc/self/fd/%d", pfd)
	fd, err := unix.Open(self, unix.O_RDONLY|unix.O_NOATIME|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: e.path(), Err: err}
	}
	return fd, nil
}

// readAllAt reads f from its start into buf until EOF or buf is full.
func readAllAt(f *os.File, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := f.ReadAt(buf[n:], int64(n))
		n += k
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// mark flushes the layer to an entry boundary and returns its length, for
// rollback.
func (l *layerFile) mark() (int64, error) {
	if err := l.tw.Flush(); err != nil {
		return 0, fmt.Errorf("writing the changes layer: %w", err)
	}
	if err := l.bw.Flush(); err != nil {
		return 0, fmt.Errorf("writing the changes layer: %w", err)
	}
	return l.h.Size(), nil
}

// rollback takes what was written after mark out of the layer: the file
// is cut back and the digest computed again over what stays (the hash's
// state cannot be saved; this happens only for a large file that changed
// while it was read).
func (l *layerFile) rollback(mark int64) error {
	l.bw.Reset(l.f)
	if err := l.f.Truncate(mark); err != nil {
		return fmt.Errorf("writing the changes layer: %w", err)
	}
	if _, err := l.f.Seek(mark, io.SeekStart); err != nil {
		return fmt.Errorf("writing the changes layer: %w", err)
	}
	h := hashing.NewMulti(false, false)
	if _, err := io.Copy(h, io.NewSectionReader(l.f, 0, mark)); err != nil {
		return fmt.Errorf("reading the changes layer back: %w", err)
	}
	l.h = h
	l.tw = tar.NewWriter(io.MultiWriter(l.bw, l.h))
	l.count--
	return nil
}

// readErrReader ends the stream at a read error and keeps the error, so
// that a copy tells a failing source from a failing destination.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
		return n, io.EOF
	}
	return n, err
}

func writeZeros(w io.Writer, n int64, buf []byte) error {
	clear(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
