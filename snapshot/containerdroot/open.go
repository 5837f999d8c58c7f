//go:build linux

package containerdroot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// DefaultDataRoot is containerd's root directory on a host.
const DefaultDataRoot = "/var/lib/containerd"

// The places of containerd's state under its root (its default plugin
// directories).
const (
	metaDB      = "io.containerd.metadata.v1.bolt/meta.db"
	overlayRoot = "io.containerd.snapshotter.v1.overlayfs"
	overlayDB   = overlayRoot + "/metadata.db"
	blobDir     = "io.containerd.content.v1.content/blobs/sha256"
)

// maxDB bounds a bbolt database amber maps (containerd's are megabytes);
// maxHostname the etc/hostname read.
const (
	maxDB       = 4 << 30
	maxHostname = 256
)

// Store is a dead host's containerd root, open for reading: every
// namespace at once.
type Store struct {
	root, dataRoot string
	// realData is the data root's real path on this host (its links
	// resolved inside root); dataFD and rootFD are O_PATH descriptors of
	// it and of root, beneath which every file is opened.
	realData       string
	rootFD, dataFD int
	meta           *bolt.DB
	// overlay is the overlayfs snapshotter's database (nil: the host has
	// none, overlayErr says why).
	overlay    *bolt.DB
	overlayErr error
	info       manifest.Engine
	// chosen is the namespace a container was asked for in ("ns/id"),
	// by ID: the capture's later calls name the ID alone.
	mu     sync.Mutex
	chosen map[string]string
	// dockerImages are the targets of images of namespace moby that a
	// lookup by namespace reached: the capture then names them bare.
	dockerImages map[string]bool
	// findings are SaveImage's layers found changed in their snapshots,
	// by the image's namespace/target.
	findings map[string][]engine.LayerFinding
	// imageNS is, by an image's target, the namespace of the container
	// last inspected that runs it: of the image's records in several
	// namespaces, that one is saved (its snapshots are checked).
	imageNS map[string]string
}

// dockerNamespace is where a Docker engine that uses the host's
// containerd keeps its own containers and images (the live runtime's
// containerd.DockerNamespace): they are Docker's, captured through its
// data root, so the listings and a bare ID or name pass over them, as the
// live containerd runtime does; "moby/<id>" still reads them.
const dockerNamespace = "moby"

var (
	_ engine.Runtime      = (*Store)(nil)
	_ engine.Lister       = (*Store)(nil)
	_ engine.ImageLister  = (*Store)(nil)
	_ engine.IDChecker    = (*Store)(nil)
	_ engine.LayerChecker = (*Store)(nil)
)

// Open opens the containerd root dataRoot ("" is DefaultDataRoot) of the
// host whose root directory is root. dataRoot is a path inside root: its
// symbolic links are resolved as if root were the system's root (an
// absolute target is taken inside root, ".." stops at root, 40 links at
// most). Nothing under root is written, locked for writing or has its
// access time changed.
func Open(root, dataRoot string) (*Store, error) {
	if dataRoot == "" {
		dataRoot = DefaultDataRoot
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("host root %s: %w", root, err)
	}
	// root is the examiner's own path: its links are this host's.
	realRoot, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("host root %s: %w", root, err)
	}
	s := &Store{root: root, dataRoot: dataRoot, rootFD: -1, dataFD: -1, chosen: map[string]string{}, dockerImages: map[string]bool{}, findings: map[string][]engine.LayerFinding{}, imageNS: map[string]string{}}
	fail := func(err error) (*Store, error) { s.Close(); return nil, err }
	if s.rootFD, err = unix.Open(realRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("host root: %w", &os.PathError{Op: "open", Path: realRoot, Err: err})
	}
	rel := strings.TrimLeft(filepath.Clean("/"+dataRoot), "/")
	if rel == "" {
		rel = "."
	}
	s.dataFD, err = unix.Openat2(s.rootFD, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return fail(fmt.Errorf("containerd root %s in %s: %w", dataRoot, root, &os.PathError{Op: "open", Path: filepath.Join(realRoot, rel), Err: err}))
	}
	if s.realData, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(s.dataFD)); err != nil {
		return fail(fmt.Errorf("containerd root %s in %s: %w", dataRoot, root, err))
	}
	if s.realData != realRoot && !strings.HasPrefix(s.realData, strings.TrimSuffix(realRoot, "/")+"/") {
		return fail(engine.Claimf("containerd root %s in %s resolves to %s, outside it", dataRoot, root, s.realData))
	}
	if s.meta, err = s.openDB(metaDB); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fail(fmt.Errorf("%s is no containerd root (no %s): %w", s.realData, metaDB, err))
		}
		return fail(err)
	}
	if s.overlay, err = s.openDB(overlayDB); err != nil {
		// Without it no container's upper directory is known; the rest
		// (images, the list) is still read.
		s.overlay, s.overlayErr = nil, err
	}
	off := engine.DescribeRoot(root, dataRoot, s.realData)
	s.info = manifest.Engine{Host: "containerd-root:" + dataRoot, Name: s.hostname(), StorageDriver: overlayfs, Local: true,
		Runtime: "containerd", Offline: off}
	return s, nil
}

// overlayfs is the one snapshotter whose directories are read.
const overlayfs = "overlayfs"

// Info describes the dead host's containerd: read offline from its root.
func (s *Store) Info() manifest.Engine { return s.info }

// Close releases the databases and the directories.
func (s *Store) Close() error {
	var errs []error
	for _, db := range []*bolt.DB{s.meta, s.overlay} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	s.meta, s.overlay = nil, nil
	for _, fd := range []*int{&s.dataFD, &s.rootFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

// hostname is the dead host's name from its etc/hostname ("" when it has
// none readable).
func (s *Store) hostname() string {
	fd, err := unix.Openat2(s.rootFD, "etc/hostname", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOATIME,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err == unix.EPERM {
		fd, err = unix.Openat2(s.rootFD, "etc/hostname", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	}
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), "hostname")
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	line, _ := bufio.NewReader(io.LimitReader(f, maxHostname)).ReadString('\n')
	line = strings.TrimSpace(line)
	if !hostnameRE.MatchString(line) {
		return ""
	}
	return line
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$`)

// openFile opens rel beneath the data root for reading: the kernel
// resolves it never above the data root and through no symbolic link; a
// regular file only. The access time is left alone where the kernel lets
// us.
func (s *Store) openFile(rel string) (*os.File, error) {
	return openBeneath(s.dataFD, s.realData, rel)
}

func openBeneath(dirFD int, dir, rel string) (*os.File, error) {
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_NOATIME,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dirFD, rel, &how)
	if err == unix.EPERM {
		how.Flags &^= unix.O_NOATIME // not the owner, without CAP_FOWNER
		fd, err = unix.Openat2(dirFD, rel, &how)
	}
	path := filepath.Join(dir, rel)
	switch err {
	case nil:
	case unix.ELOOP, unix.EXDEV:
		return nil, engine.Claimf("%s leads out of %s or through a symbolic link: refused", rel, dir)
	default:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, engine.Claimf("%s is not a regular file: refused", path)
	}
	// O_NONBLOCK kept a FIFO from blocking the open; a regular file is
	// read with it cleared.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// dirBeneath checks that rel is a real directory beneath the data root,
// reached through no symbolic link, and returns its path on this host.
func (s *Store) dirBeneath(rel string) (string, error) {
	fd, err := unix.Openat2(s.dataFD, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	path := filepath.Join(s.realData, rel)
	switch err {
	case nil:
	case unix.ELOOP, unix.EXDEV, unix.ENOTDIR:
		return "", engine.Claimf("%s is not a directory beneath %s reached through no symbolic link: refused", rel, s.realData)
	default:
		return "", &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if real != path {
		return "", engine.Claimf("%s is really %s: refused", path, real)
	}
	return path, nil
}

// boltMagic is the magic number of a bbolt meta page (after the page's
// 16-byte header).
var boltMagic = []byte{0xed, 0xda, 0x0c, 0xed}

// openDB opens the bbolt database rel read-only: through a descriptor
// opened beneath the data root (bbolt opens nothing itself), a shared
// lock only (a live containerd holding its lock is waited for 2 s, then
// an error). A file that is no bbolt database is an error naming it.
func (s *Store) openDB(rel string) (db *bolt.DB, err error) {
	f, err := s.openFile(rel)
	if err != nil {
		return nil, fmt.Errorf("containerd's database %s: %w", rel, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("containerd's database %s: %w", f.Name(), err)
	}
	head := make([]byte, 20)
	switch _, rerr := io.ReadFull(f, head); {
	case st.Size() > maxDB:
		err = fmt.Errorf("containerd's database %s has %d bytes; amber reads at most %d", f.Name(), st.Size(), int64(maxDB))
	case rerr != nil || !bytes.Equal(head[16:20], boltMagic):
		err = fmt.Errorf("containerd's database %s is not a bbolt database (%d bytes, no bbolt magic number)", f.Name(), st.Size())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	used := false
	opts := &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second, OpenFile: func(_ string, flag int, _ os.FileMode) (*os.File, error) {
		// bbolt is given the file opened beneath the root, once, and
		// never for writing.
		if flag != os.O_RDONLY || used {
			return nil, fmt.Errorf("bbolt asked to open %s with flags %#x: refused", f.Name(), flag)
		}
		used = true
		return f, nil
	}}
	err = guard(func() error {
		var oerr error
		db, oerr = bolt.Open(f.Name(), 0, opts)
		return oerr
	})
	if err != nil {
		if !used {
			f.Close()
		}
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("containerd's database %s is locked (is a containerd running on it? amber reads a stopped one's): %w", f.Name(), err)
		}
		return nil, fmt.Errorf("containerd's database %s: %w", f.Name(), err)
	}
	return db, nil
}

// guard runs fn, turning a panic, or a fault of a read of the mapped
// database (a corrupt bbolt file points past its end), into an error.
func guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupt database: %v", r)
		}
	}()
	return fn()
}

// view reads db in a read transaction, guarded.
func view(db *bolt.DB, what string, fn func(*bolt.Tx) error) error {
	err := guard(func() error { return db.View(fn) })
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// wrap gives an error the context of what was asked: a runtime's Fault
// keeps its class (engine.Wrap), a claim refused stays one, a
// cancellation stays one; anything else (the root's files cannot be
// read) is an engine.ErrEngine.
func wrap(err error, what string) error {
	var f *engine.Fault
	var u *engine.Unavailable
	switch {
	case err == nil:
		return nil
	case errors.As(err, &f):
		return engine.Wrap(err, what)
	case errors.Is(err, engine.ErrEngine), errors.As(err, &u),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", engine.ErrEngine, what, err)
}
