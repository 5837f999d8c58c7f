package podman

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/internal/layerstore"
)

// A dead host's Podman storage, read from its disk mounted at a root: the
// same containers/storage files, found inside the root as the host saw
// them, with no run root, no /proc and no cgroup (nothing runs). The
// state each container had at shutdown is libpod's word, read from its
// BoltDB database (libpod/bolt_state.db) when there is one.

// Bounds of the offline reads: libpod's database, a layer's parent
// chain.
const (
	maxLibpodDB = 4 << 30
	maxChain    = 1000
)

// stateUnknown is the state of a container whose libpod record cannot be
// read (a SQLite database, none, or a broken one).
const stateUnknown = "unknown (offline)"

// OpenOffline opens the Podman storage of a dead host whose root
// directory is root: graphRoot ("" for /var/lib/containers/storage) is
// resolved inside root as a chroot would (an absolute link target starts
// again from root, ".." never leads above it, at most 40 links), and
// every read is beneath it, through no symbolic link. Every container is
// reported not running; its state is what libpod recorded.
func OpenOffline(root, graphRoot string) (*Storage, error) {
	if graphRoot == "" {
		graphRoot = DefaultGraphRoot
	}
	// root is the examiner's own path: made absolute and its links (this
	// host's) resolved once, so that the graph root's real path names the
	// mount that holds it.
	given := root
	root, err := layerstore.RealRoot(root)
	if err != nil {
		return nil, &engine.Fault{Kind: engine.ErrEngine, Note: "the host's root", Err: err}
	}
	real, err := layerstore.ResolveIn(root, graphRoot)
	if err != nil {
		return nil, &engine.Fault{Kind: engine.ErrEngine, Note: "is this podman's storage? (its graph root inside the host's root)", Err: err}
	}
	s := &Storage{driver: "overlay", root: real, offline: true, hostRoot: root, graphGiven: graphRoot,
		findings: map[string][]engine.LayerFinding{}}
	found := false
	for _, k := range []string{"containers", "images", "layers"} {
		if dirBeneath(real, s.driver+"-"+k) == nil {
			found = true
		}
	}
	if !found {
		return nil, &engine.Fault{Kind: engine.ErrEngine, Note: "podman's storage with the overlay driver has overlay-containers, overlay-images or overlay-layers in its graph root",
			Err: fmt.Errorf("%s (%s inside %s) holds none of them", real, graphRoot, root)}
	}
	off := engine.DescribeRoot(given, graphRoot, real)
	s.info = manifest.Engine{Host: "containers-storage-root:" + graphRoot, Name: readHostname(root), StorageDriver: s.driver,
		Local: true, Runtime: "podman", Offline: off}
	return s, nil
}

// readHostname is the dead host's name from its etc/hostname, read beneath
// root through no symbolic link; "" when there is none.
func readHostname(root string) string {
	b, err := readFile(root, "etc/hostname", 256)
	if err != nil {
		return ""
	}
	h, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	for _, r := range h {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	return h
}

// inGraph turns a path the dead host's libpod recorded (a log path, a
// volume's source) into a path relative to the graph root, or says it
// lies elsewhere. The graph root is known by its path as given and by its
// path with its links resolved in the root: libpod may have recorded
// either.
func (s *Storage) inGraph(p string) (string, bool) {
	if !filepath.IsAbs(p) {
		return "", false
	}
	p = filepath.Clean(p)
	resolved := "/" + strings.TrimPrefix(strings.TrimPrefix(s.root, filepath.Clean(s.hostRoot)), "/")
	gs := []string{filepath.Clean(s.graphGiven), resolved}
	if g := s.libpodGraph(); g != "" {
		gs = append(gs, filepath.Clean(g))
	}
	for _, g := range gs {
		if rel, ok := strings.CutPrefix(p, strings.TrimSuffix(g, "/")+"/"); ok && rel != "" {
			return rel, true
		}
	}
	return "", false
}

// libpodGraph is the graph root libpod's database says it used (its
// runtime-config), "" when unknown: the dead host's records name paths
// under it.
func (s *Storage) libpodGraph() string {
	s.loadLibpod()
	return s.libpodRoot
}

// libpodCtr is what amber reads of a container in libpod's database.
type libpodCtr struct {
	State     string // libpod's word for the state at shutdown
	Created   string
	Started   string
	LogDriver string
	LogPath   string
}

// libpodStates are libpod's container states (define.ContainerStatus) by
// number, as podman ps words them.
var libpodStates = map[int]string{0: "unknown", 1: "created", 2: "created", 3: "running", 4: "stopped", 5: "paused",
	6: "exited", 7: "removing", 8: "stopping"}

// loadLibpod reads libpod's database once: each container's state,
// times and log place. A database amber cannot read leaves every state
// unknown, with a note saying why.
func (s *Storage) loadLibpod() (map[string]*libpodCtr, string) {
	s.libpodOnce.Do(func() {
		s.libpod, s.libpodNote = map[string]*libpodCtr{}, ""
		m, g, err := s.readLibpod()
		if err != nil {
			s.libpodNote = err.Error()
			return
		}
		s.libpod, s.libpodRoot = m, g
	})
	return s.libpod, s.libpodNote
}

// boltMagic is the magic number of a bbolt meta page (after the page's
// 16-byte header).
var boltMagic = []byte{0xed, 0xda, 0x0c, 0xed}

func (s *Storage) readLibpod() (map[string]*libpodCtr, string, error) {
	const rel = "libpod/bolt_state.db"
	f, err := openBeneath(s.root, rel, true)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := openBeneath(s.root, "libpod/db.sql", true); serr == nil {
			return nil, "", errors.New("libpod's database is SQLite (libpod/db.sql), not read offline")
		}
		return nil, "", errors.New("no libpod database (libpod/bolt_state.db)")
	}
	if err != nil {
		return nil, "", fmt.Errorf("libpod's database: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("libpod's database %s: %w", f.Name(), err)
	}
	head := make([]byte, 20)
	switch _, rerr := io.ReadFull(f, head); {
	case st.Size() > maxLibpodDB:
		err = fmt.Errorf("libpod's database %s has %d bytes; amber reads at most %d", f.Name(), st.Size(), int64(maxLibpodDB))
	case rerr != nil || !bytes.Equal(head[16:20], boltMagic):
		err = fmt.Errorf("libpod's database %s is not a bbolt database (%d bytes, no bbolt magic number)", f.Name(), st.Size())
	}
	if err != nil {
		f.Close()
		return nil, "", err
	}
	used := false
	opts := &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second, OpenFile: func(_ string, flag int, _ os.FileMode) (*os.File, error) {
		// bbolt is given the file opened beneath the graph root, once,
		// and never for writing.
		if flag != os.O_RDONLY || used {
			return nil, fmt.Errorf("bbolt asked to open %s with flags %#x: refused", f.Name(), flag)
		}
		used = true
		return f, nil
	}}
	var db *bolt.DB
	if err := guard(func() (err error) { db, err = bolt.Open(f.Name(), 0, opts); return err }); err != nil {
		if !used {
			f.Close()
		}
		return nil, "", fmt.Errorf("libpod's database %s: %w", f.Name(), err)
	}
	defer db.Close()
	out := map[string]*libpodCtr{}
	graph := ""
	err = guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			if rc := tx.Bucket([]byte("runtime-config")); rc != nil {
				if g := rc.Get([]byte("graph-root")); len(g) < 4096 && filepath.IsAbs(string(g)) {
					graph = string(g)
				}
			}
			ctrs := tx.Bucket([]byte("ctr"))
			if ctrs == nil {
				return nil
			}
			return ctrs.ForEach(func(k, v []byte) error {
				id := string(k)
				b := ctrs.Bucket(k)
				if v != nil || b == nil || !fullID.MatchString(id) {
					return nil // not a container's bucket
				}
				c := &libpodCtr{State: stateUnknown}
				var cfg struct {
					Created   time.Time `json:"createdTime"`
					LogDriver string    `json:"logDriver"`
					LogPath   string    `json:"logPath"`
				}
				if raw := b.Get([]byte("config")); len(raw) <= maxConfig && json.Unmarshal(raw, &cfg) == nil {
					c.LogDriver, c.LogPath = cfg.LogDriver, cfg.LogPath
					c.Created = rfc3339(cfg.Created)
				}
				var st struct {
					State   *int      `json:"state"`
					Started time.Time `json:"startedTime"`
				}
				if raw := b.Get([]byte("state")); len(raw) <= maxConfig && json.Unmarshal(raw, &st) == nil && st.State != nil {
					if w, ok := libpodStates[*st.State]; ok {
						c.State = w
					}
					c.Started = rfc3339(st.Started)
				}
				out[id] = c
				return nil
			})
		})
	})
	if err != nil {
		return nil, "", fmt.Errorf("libpod's database %s: %w", f.Name(), err)
	}
	return out, graph, nil
}

// rfc3339 is a recorded time as amber host shows it, "" for none.
func rfc3339(t time.Time) string {
	if t.IsZero() || t.Year() <= 1 {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
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

// offlineState is a container's state on a dead host: not running,
// whatever libpod recorded (its word is kept as the state).
func (s *Storage) offlineState(id string) state {
	st := state{Status: stateUnknown, Source: "offline"}
	m, note := s.loadLibpod()
	if c := m[id]; c != nil {
		st.Status, st.Source = c.State, "libpod/bolt_state.db"
		st.Note = "read offline: the state libpod recorded; nothing runs here"
		return st
	}
	st.Note = "read offline: " + note
	if note == "" {
		st.Note = "read offline: libpod's database does not list the container"
	}
	return st
}

var _ engine.ImageLister = (*Storage)(nil)

// ListImages lists the storage's images from images.json, each with the
// bytes of its layers as layers.json records them: no layer is read.
func (s *Storage) ListImages(ctx context.Context) ([]engine.ImageSummary, error) {
	var imgs []struct {
		ID      string   `json:"id"`
		Names   []string `json:"names"`
		Layer   string   `json:"layer"`
		Created string   `json:"created"`
	}
	if err := s.list("images", "images.json", &imgs); err != nil {
		return nil, engine.Wrap(err, "listing images")
	}
	all, err := s.layers()
	if err != nil {
		return nil, engine.Wrap(err, "listing images")
	}
	out := make([]engine.ImageSummary, 0, len(imgs))
	for _, im := range imgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !fullID.MatchString(im.ID) {
			continue
		}
		sm := engine.ImageSummary{Runtime: "podman", ID: "sha256:" + im.ID, Refs: im.Names}
		if sm.Refs == nil {
			sm.Refs = []string{}
		}
		if t, err := time.Parse(time.RFC3339Nano, im.Created); err == nil {
			sm.Created = rfc3339(t)
		}
		// The chain's sizes, bounded: a loop or a missing layer leaves
		// the size unknown (0).
		var size int64
		n := 0
		for id := im.Layer; id != ""; n++ {
			l := all[id]
			if l == nil || l.DiffSize == nil || n >= maxChain {
				size = 0
				break
			}
			size += *l.DiffSize
			id = l.Parent
		}
		sm.Size = size
		out = append(out, sm)
	}
	return out, nil
}
