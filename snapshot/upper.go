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
// O_NOATIME and never written. A file whose size changes while it is read
// is stored at the size first seen (padded with zeros or cut) and reported.
//
// With overlay false the directories are plain (a volume): character
// devices stay devices and no xattr has a special meaning.
func upperRoute(dirs []string, overlay bool, lf *layerFile, anomalies *[]manifest.Anomaly) error {
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			return fmt.Errorf("opening the container's layer directory: %w", err)
		}
	}
	links := map[[2]uint64]string{}
	buf := make([]byte, 1<<20)
	type found struct {
		full string
		st   unix.Stat_t
	}
	var walk func(layers []string, rel string) error
	walk = func(layers []string, rel string) error {
		// Names from every layer that has this directory.
		var names []string
		seen := map[string]bool{}
		for _, dir := range layers {
			ents, err := readDirNames(dir)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return fmt.Errorf("reading %s: %w", dir, err)
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
			var top []found
			for _, dir := range layers {
				full := filepath.Join(dir, name)
				var st unix.Stat_t
				if err := unix.Lstat(full, &st); err != nil {
					if errors.Is(err, unix.ENOENT) {
						continue
					}
					return fmt.Errorf("reading %s: %w", full, err)
				}
				top = append(top, found{full, st})
				if st.Mode&unix.S_IFMT != unix.S_IFDIR {
					break
				}
			}
			if len(top) == 0 {
				*anomalies = append(*anomalies, manifest.Anomaly{Path: p, Kind: "vanished", Detail: "deleted while the capture read the directory"})
				continue
			}
			full, st := top[0].full, top[0].st
			mode := st.Mode & unix.S_IFMT
			if overlay && mode == unix.S_IFCHR && st.Rdev == 0 {
				if err := lf.whiteout(rel, name); err != nil {
					return err
				}
				continue
			}
			xattrs, opaque, err := readXattrs(full, overlay)
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
				var sub []string
				for i, f := range top {
					if f.st.Mode&unix.S_IFMT != unix.S_IFDIR {
						break
					}
					sub = append(sub, f.full)
					if i > 0 {
						if _, op, err := readXattrs(f.full, overlay); err != nil {
							return err
						} else if op {
							opaque = true
						}
					}
					if opaque {
						break
					}
				}
				h.Typeflag = tar.TypeDir
				h.Name += "/"
				if err := lf.header(h); err != nil {
					return err
				}
				if opaque {
					if err := lf.opaque(p); err != nil {
						return err
					}
				}
				if err := walk(sub, p); err != nil {
					return err
				}
				continue
			case unix.S_IFLNK:
				t, err := os.Readlink(full)
				if err != nil {
					return fmt.Errorf("reading link %s: %w", full, err)
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
				h.Typeflag, h.Size = tar.TypeReg, st.Size
				if err := lf.header(h); err != nil {
					return err
				}
				if err := copyFile(full, st.Size, lf.tw, buf, p, anomalies); err != nil {
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
	return walk(dirs, "")
}

// readDirNames lists a directory sorted by name, without following links
// or changing its access time.
func readDirNames(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NOATIME|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// readXattrs returns a path's xattrs except overlay's own, whether it is an
// opaque directory, and errRouteUnsupported for redirects and metacopy.
func readXattrs(p string, overlay bool) (map[string]string, bool, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) || err == nil {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	lb := make([]byte, sz*2)
	sz, err = unix.Llistxattr(p, lb)
	if err != nil {
		return nil, false, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	var out map[string]string
	opaque := false
	for _, k := range strings.Split(strings.TrimRight(string(lb[:sz]), "\x00"), "\x00") {
		if k == "" {
			continue
		}
		v, err := getXattr(p, k)
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
				return nil, false, fmt.Errorf("%w (%s on %s)", errRouteUnsupported, k, p)
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

func getXattr(p, k string) (string, error) {
	b := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, k, b)
		if errors.Is(err, unix.ERANGE) {
			b = make([]byte, len(b)*4)
			if len(b) > 1<<20 {
				return "", fmt.Errorf("xattr %s of %s is too large", k, p)
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("reading xattr %s of %s: %w", k, p, err)
		}
		return string(b[:n]), nil
	}
}

// copyFile copies exactly size bytes of the file at p to w, opened so that
// its access time is not changed.
func copyFile(p string, size int64, w io.Writer, buf []byte, rel string, anomalies *[]manifest.Anomaly) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		// Gone or unreadable: the header promised size bytes.
		*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "unreadable", Detail: fmt.Sprintf("%v; %d zero bytes stored in its place", err, size)})
		return writeZeros(w, size, buf)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	src := &readErrReader{r: io.LimitReader(f, size)}
	n, err := io.CopyBuffer(w, src, buf)
	if err != nil {
		return fmt.Errorf("storing %s: %w", rel, err)
	}
	if n < size {
		why := "shrank while read"
		if src.err != nil {
			why = "read failed: " + src.err.Error()
		}
		*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "size-changed", Detail: fmt.Sprintf("%s: %d of %d bytes; the rest stored as zeros", why, n, size)})
		return writeZeros(w, size-n, buf)
	}
	var one [1]byte
	if k, _ := f.Read(one[:]); k > 0 {
		*anomalies = append(*anomalies, manifest.Anomaly{Path: rel, Kind: "size-changed", Detail: fmt.Sprintf("grew while read: stored its first %d bytes", size)})
	}
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
