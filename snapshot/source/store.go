package source

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/amber-forensics/amber/fileindex"
)

// ErrSource reports a source that cannot be read as an image.
var ErrSource = errors.New("snapshot: bad source")

// ErrNoMember: a source does not hold a member its manifests name (a bad
// source, exit 6 — not a path the user mistyped).
var ErrNoMember = errors.New("no such member")

// IsNotPresent tells a member the source does not hold from a damaged one.
func IsNotPresent(err error) bool { return errors.Is(err, ErrNoMember) }

// Store is a flat namespace of files: the members of a tarball, the files
// under an OCI layout directory, the small members of an engine's save
// stream, or one file.
type Store interface {
	// Open returns the named file and its size.
	Open(name string) (io.ReadCloser, int64, error)
	Exists(name string) bool
	// Key names the file a name resolves to, so that a file reached
	// under many names (links, aliases) is read once.
	Key(name string) string
}

// tarStore indexes the regular members of an uncompressed tarball once and
// then reads them in place.
type tarStore struct {
	f       *os.File
	path    string
	size    int64
	members map[string]tarMember
	dups    map[string]bool
}

type tarMember struct {
	off, size int64
	link      string // symlink or hard-link target, cleaned
	typ       byte
}

func openTarStore(p string) (*tarStore, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("opening source: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening source: %w", err)
	}
	s := &tarStore{f: f, path: p, size: st.Size(), members: map[string]tarMember{}, dups: map[string]bool{}}
	if err := s.scan(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (s *tarStore) scan() error {
	var magic [4]byte
	if n, _ := s.f.ReadAt(magic[:], 0); n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return fmt.Errorf("%w: %s is gzip-compressed; decompress it first (gunzip -k)", ErrSource, s.path)
	}
	if n, _ := s.f.ReadAt(magic[:], 0); n == 4 && string(magic[:]) == "\x28\xb5\x2f\xfd" {
		return fmt.Errorf("%w: %s is zstd-compressed; decompress it first (zstd -d)", ErrSource, s.path)
	}
	tr := tar.NewReader(s.f)
	count := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %s is not a readable tarball (after %d members): %v", ErrSource, s.path, count, err)
		}
		count++
		if count > 1_000_000 {
			return fmt.Errorf("%w: %s has more than a million members; not a docker save tarball", ErrSource, s.path)
		}
		off, err := s.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return fmt.Errorf("reading source: %w", err)
		}
		name, _ := fileindex.CleanName(h.Name)
		m := tarMember{off: off, size: h.Size, typ: h.Typeflag}
		switch h.Typeflag {
		case tar.TypeReg:
			if off+h.Size > s.size {
				return fmt.Errorf("%w: %s is truncated: member %q claims %d bytes at offset %d, the file ends at %d", ErrSource, s.path, h.Name, h.Size, off, s.size)
			}
			for k := range h.PAXRecords {
				if strings.HasPrefix(k, "GNU.sparse.") {
					return fmt.Errorf("%w: member %q of %s is a sparse file; docker save does not write those", ErrSource, h.Name, s.path)
				}
			}
		case tar.TypeSymlink:
			if strings.HasPrefix(h.Linkname, "/") {
				m.link = "\x00" // absolute: never resolved
			} else {
				m.link, _ = fileindex.CleanName(path.Join(path.Dir("/"+name), h.Linkname))
			}
		case tar.TypeLink:
			m.link, _ = fileindex.CleanName(h.Linkname)
		default:
			continue
		}
		if _, ok := s.members[name]; ok {
			s.dups[name] = true
		}
		s.members[name] = m
	}
	return nil
}

func (s *tarStore) resolve(name string) (tarMember, error) {
	name, _ = fileindex.CleanName(name)
	for hops := 0; hops < 16; hops++ {
		if s.dups[name] {
			return tarMember{}, fmt.Errorf("%w: %s holds %q more than once; refusing to guess which is meant", ErrSource, s.path, name)
		}
		m, ok := s.members[name]
		if !ok {
			return tarMember{}, fmt.Errorf("%w: %s has no member %q: %w", ErrSource, s.path, name, ErrNoMember)
		}
		if m.typ == tar.TypeReg {
			return m, nil
		}
		if m.link == "\x00" {
			return tarMember{}, fmt.Errorf("%w: member %q of %s is an absolute symlink; not followed", ErrSource, name, s.path)
		}
		name = m.link
	}
	return tarMember{}, fmt.Errorf("%w: member %q of %s: too many links", ErrSource, name, s.path)
}

func (s *tarStore) Open(name string) (io.ReadCloser, int64, error) {
	m, err := s.resolve(name)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(io.NewSectionReader(s.f, m.off, m.size)), m.size, nil
}

func (s *tarStore) Exists(name string) bool {
	_, err := s.resolve(name)
	return err == nil
}

func (s *tarStore) Key(name string) string {
	if m, err := s.resolve(name); err == nil {
		return fmt.Sprint(m.off)
	}
	return name
}

func (s *tarStore) Close() error { return s.f.Close() }

// dirStore reads an OCI layout directory through os.Root: a blob that is a
// symlink out of the directory, or a name with "..", cannot be opened.
type dirStore struct {
	root *os.Root
	path string
}

func openDirStore(p string) (*dirStore, error) {
	r, err := os.OpenRoot(p)
	if err != nil {
		return nil, fmt.Errorf("opening source: %w", err)
	}
	return &dirStore{root: r, path: p}, nil
}

func (d *dirStore) Open(name string) (io.ReadCloser, int64, error) {
	// A FIFO or a device in the layout would block an open (and a read)
	// forever: look before opening, and open without blocking.
	st, err := d.root.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s has no %s: %w", ErrSource, d.path, name, ErrNoMember)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrSource, d.path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%w: %s/%s is not a regular file (a %s); refusing to read it", ErrSource, d.path, name, typeName(st.Mode()))
	}
	f, err := d.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrSource, d.path, err)
	}
	if st, err = f.Stat(); err != nil || !st.Mode().IsRegular() {
		// Swapped for something else between the look and the open.
		f.Close()
		return nil, 0, fmt.Errorf("%w: %s/%s is not a regular file; refusing to read it", ErrSource, d.path, name)
	}
	return f, st.Size(), nil
}

func (d *dirStore) Key(name string) string { return path.Clean(name) }

func (d *dirStore) Exists(name string) bool {
	st, err := d.root.Stat(name)
	return err == nil && st.Mode().IsRegular()
}

func (d *dirStore) Close() error { return d.root.Close() }

// FileStore serves one file as a store, whatever the name asked: a
// container's changes layer or a volume, stored through the same path as
// image layers.
type FileStore string

// Open opens the file.
func (p FileStore) Open(string) (io.ReadCloser, int64, error) {
	f, err := os.Open(string(p))
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Exists is always true: the one file stands for every name.
func (p FileStore) Exists(string) bool { return true }

// Key is the file's path.
func (p FileStore) Key(string) string { return string(p) }

// typeName names a file's type for messages.
func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}
