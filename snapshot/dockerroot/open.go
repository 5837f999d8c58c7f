//go:build linux

package dockerroot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/internal/layerstore"
)

// DefaultDataRoot is Docker's data root when none is given.
const DefaultDataRoot = "/var/lib/docker"

// Bounds of what is read whole: a JSON record (config.v2.json, an image
// config, hostconfig.json, repositories.json) and a small id file
// (cache-id, mount-id, size, diff, parent).
const (
	maxJSON  = 16 << 20
	maxSmall = 4 << 10
	// maxChain bounds a layer's parent chain.
	maxChain = 1000
)

// hex64 is Docker's form of an ID: container, image, chain and cache IDs
// are 64 hex digits, one path element.
var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Store is a Docker data root read offline.
type Store struct {
	root     string // the dead host's root, as given
	dataRoot string // the data root, as given (a path inside root)
	real     string // the data root's real path on this host
	dfd      int    // an O_PATH descriptor of real: every read is beneath it
	driver   string // the storage driver found ("" when none)
	hostname string

	mu       sync.Mutex
	findings map[string][]engine.LayerFinding // by image ID
	sizes    map[string]int64                 // layer sizes by chain ID
}

var (
	_ engine.Runtime      = (*Store)(nil)
	_ engine.Lister       = (*Store)(nil)
	_ engine.ImageLister  = (*Store)(nil)
	_ engine.LayerChecker = (*Store)(nil)
)

// drivers are the graph drivers whose image/<driver> directory Docker
// keeps, in the order a root holding several is read (overlay2 first:
// the one read offline).
var drivers = []string{"overlay2", "fuse-overlayfs", "btrfs", "zfs", "devicemapper", "vfs", "aufs", "overlay"}

// Open opens the Docker data root dataRoot ("" for /var/lib/docker) of the
// dead host whose root directory is root. dataRoot's symbolic links are
// resolved as if root were /: an absolute target is relative to root, and
// ".." never leads above it.
func Open(root, dataRoot string) (*Store, error) {
	if dataRoot == "" {
		dataRoot = DefaultDataRoot
	}
	// root is the examiner's own path: made absolute and its links (this
	// host's) resolved once, so that the data root's real path names the
	// mount that holds it.
	realRoot, err := layerstore.RealRoot(root)
	if err != nil {
		return nil, err
	}
	real, err := layerstore.ResolveIn(realRoot, dataRoot)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(real, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the Docker data root %s: %w", real, &os.PathError{Op: "open", Path: real, Err: err})
	}
	s := &Store{root: root, dataRoot: dataRoot, real: real, dfd: fd, findings: map[string][]engine.LayerFinding{}, sizes: map[string]int64{}}
	for _, d := range drivers {
		if s.isDir(path.Join("image", d)) {
			s.driver = d
			break
		}
	}
	if s.driver == "" && !s.isDir("containers") {
		unix.Close(fd)
		return nil, fmt.Errorf("%s (%s inside %s) holds neither image/<driver> nor containers: not a Docker data root", real, dataRoot, root)
	}
	s.hostname = layerstore.ReadHostname(realRoot)
	return s, nil
}

// open opens a regular file rel of the data root for reading.
func (s *Store) open(rel string) (*os.File, error) {
	f, err := layerstore.OpenAt(s.dfd, s.real, rel, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil {
		f.Close()
		return nil, err
	} else if !fi.Mode().IsRegular() {
		f.Close()
		return nil, engine.Claimf("%s is not a regular file: refused", f.Name())
	}
	return f, nil
}

// readFile reads a regular file of the data root whole, up to max bytes:
// a larger one is an error naming it.
func (s *Store) readFile(rel string, max int64) ([]byte, error) {
	f, err := s.open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The size first: a huge record is refused without reading it (a
	// listing meets it every time).
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		return nil, fmt.Errorf("%s is %d bytes, over the bound of %d: refused", f.Name(), fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over the bound of %d bytes: refused", f.Name(), max)
	}
	return b, nil
}

// readID reads a small file holding one ID (cache-id, mount-id, parent,
// diff) and checks it is one of Docker's: 64 hex digits, with a
// "sha256:" prefix where prefixed says so.
func (s *Store) readID(rel string, prefixed bool) (string, error) {
	b, err := s.readFile(rel, maxSmall)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if prefixed {
		var ok bool
		if id, ok = strings.CutPrefix(id, "sha256:"); !ok {
			return "", engine.Claimf("%s holds %q, not sha256:<64 hex digits>: refused", filepath.Join(s.real, rel), trunc(string(b)))
		}
	}
	if !hex64.MatchString(id) {
		return "", engine.Claimf("%s holds %q, not 64 hex digits: refused", filepath.Join(s.real, rel), trunc(string(b)))
	}
	return id, nil
}

// trunc shortens a hostile value for a message.
func trunc(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// isDir says whether rel is a directory of the data root (no link).
func (s *Store) isDir(rel string) bool {
	f, err := layerstore.OpenAt(s.dfd, s.real, rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// realDir checks that rel is a directory beneath the data root reached
// through no symbolic link and returns its real path.
func (s *Store) realDir(rel string) (string, error) {
	f, err := layerstore.OpenAt(s.dfd, s.real, rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return "", engine.Claimf("%s is not a directory: refused", filepath.Join(s.real, rel))
		}
		return "", err
	}
	f.Close()
	return filepath.Join(s.real, rel), nil
}

// Driver is the storage driver found: the graph driver whose image store
// the data root holds ("overlay2", "vfs", ...), "" when it has none (a
// Docker using containerd's image store).
func (s *Store) Driver() string { return s.driver }

// Info describes the data root for the acquisition record.
func (s *Store) Info() manifest.Engine {
	return manifest.Engine{Host: "docker-root:" + s.dataRoot, Name: s.hostname, StorageDriver: s.driver, Local: true,
		Runtime: "docker", Offline: engine.DescribeRoot(s.root, s.dataRoot, s.real)}
}

// Close releases the data root.
func (s *Store) Close() error {
	if s.dfd < 0 {
		return nil
	}
	err := unix.Close(s.dfd)
	s.dfd = -1
	return err
}

// needOverlay2 is the error of a capture call on a root whose driver is
// not read offline.
func (s *Store) needOverlay2() error {
	switch s.driver {
	case "overlay2":
		return nil
	case "":
		return &engine.Unavailable{Why: "the Docker data root " + s.real + " has no graph driver image store (containerd's image store?): overlay2 only is read offline"}
	}
	return &engine.Unavailable{Why: "storage driver " + s.driver + " is not read offline: overlay2 only"}
}
