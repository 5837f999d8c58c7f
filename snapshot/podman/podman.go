package podman

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/freezer"
	"github.com/amber-forensics/amber/snapshot/procmem"
)

// The standard places of rootful Podman's storage.
const (
	DefaultGraphRoot = "/var/lib/containers/storage"
	DefaultRunRoot   = "/run/containers/storage"
)

// Options says where the storage lies.
type Options struct {
	// GraphRoot is containers/storage's graph root (podman --root);
	// DefaultGraphRoot when empty.
	GraphRoot string
	// RunRoot is its run root (podman --runroot), where the runtime
	// keeps each running container's pidfile; DefaultRunRoot when empty.
	RunRoot string
	// Proc is procfs' mount point; /proc when empty.
	Proc string
	// Cgroup is where the cgroup hierarchies are mounted, for the
	// freezer; /sys/fs/cgroup when empty.
	Cgroup string
}

// Storage is Podman's storage, read directly.
type Storage struct {
	// root and runRoot are the real directories (symbolic links
	// resolved once here): nothing is read outside them but /proc and
	// the container's cgroup.
	root, runRoot string
	driver        string
	proc, cgroup  string
	info          manifest.Engine
	mu            sync.Mutex
	frozen        map[string]freezer.Freezer // the cgroup each paused container was frozen in

	// offline: a dead host's storage (OpenOffline), read inside
	// hostRoot; graphGiven is the graph root as given, the path the
	// dead host's own records use. libpod is its database's record of
	// each container, read once (libpodNote: why it could not be).
	offline    bool
	hostRoot   string
	graphGiven string
	libpodOnce sync.Once
	libpod     map[string]*libpodCtr
	libpodNote string
	libpodRoot string                           // the graph root libpod recorded
	findings   map[string][]engine.LayerFinding // by image ID: layers SaveImage found changed on disk
}

var _ engine.Runtime = (*Storage)(nil)

// Open opens Podman's storage. Only the overlay driver is read: its
// lists are <graphroot>/overlay-{containers,images,layers}.
func Open(opts Options) (*Storage, error) {
	s := &Storage{driver: "overlay", proc: opts.Proc, cgroup: opts.Cgroup, frozen: map[string]freezer.Freezer{},
		findings: map[string][]engine.LayerFinding{}}
	if s.proc == "" {
		s.proc = "/proc"
	}
	if s.cgroup == "" {
		s.cgroup = "/sys/fs/cgroup"
	}
	graph, run := opts.GraphRoot, opts.RunRoot
	if graph == "" {
		graph = DefaultGraphRoot
	}
	if run == "" {
		run = DefaultRunRoot
	}
	var err error
	for _, p := range []struct {
		in  string
		out *string
	}{{graph, &s.root}, {run, &s.runRoot}} {
		if !filepath.IsAbs(p.in) {
			return nil, fmt.Errorf("%w: podman's storage %q is not an absolute path", engine.ErrEngine, p.in)
		}
		if *p.out, err = filepath.EvalSymlinks(p.in); err != nil {
			return nil, &engine.Fault{Kind: engine.ErrEngine, Note: "is this podman's storage? (--root, --runroot)", Err: err}
		}
	}
	if _, err := os.Stat(filepath.Join(s.root, s.driver+"-containers")); err != nil {
		return nil, &engine.Fault{Kind: engine.ErrEngine, Note: "podman's storage with the overlay driver has " + s.driver + "-containers in its graph root", Err: err}
	}
	h, _ := os.Hostname()
	s.info = manifest.Engine{Host: "containers-storage:[" + s.driver + "@" + s.root + "+" + s.runRoot + "]", Name: h,
		Kernel: kernel(), StorageDriver: s.driver, Local: true}
	return s, nil
}

// Info describes the storage: Host is its place as containers/storage
// names it. No version: no podman is asked.
func (s *Storage) Info() manifest.Engine { return s.info }

// GraphRoot is the storage's graph root, its real path: the same storage
// reached through Podman's service reports it too.
func (s *Storage) GraphRoot() string { return s.root }

// Close releases nothing: every file is closed when read.
func (s *Storage) Close() error { return nil }

// ociSpec is what amber reads of the container's OCI runtime spec (podman
// writes it to its userdata directory for the runtime).
type ociSpec struct {
	Hostname string `json:"hostname"`
	Process  *struct {
		Terminal bool     `json:"terminal"`
		Args     []string `json:"args"`
		Env      []string `json:"env"`
		Cwd      string   `json:"cwd"`
		User     struct {
			UID uint32 `json:"uid"`
			GID uint32 `json:"gid"`
		} `json:"user"`
	} `json:"process"`
	Mounts []struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type"`
		Source      string   `json:"source"`
		Options     []string `json:"options"`
	} `json:"mounts"`
}

// state is the container's state as amber finds it: the runtime's
// pidfile, checked against /proc and the container's cgroup.
type state struct {
	Status  string `json:"Status"`
	Running bool   `json:"Running"`
	Paused  bool   `json:"Paused"`
	Pid     int    `json:"Pid"`
	Source  string `json:"Source"`
	Note    string `json:"Note,omitempty"`
}

// Container finds a container by name or ID in containers.json and reads
// its OCI spec and its state.
func (s *Storage) Container(ctx context.Context, ref string) (*engine.Container, error) {
	r, err := s.findContainer(ref)
	if err != nil {
		return nil, engine.Wrap(err, "container "+ref)
	}
	if !fullID.MatchString(r.ID) {
		return nil, engine.Claimf("podman's storage answers container %s with ID %q, not 64 hex digits", ref, r.ID)
	}
	if !fullID.MatchString(r.Image) {
		return nil, engine.Claimf("podman's storage gives container %s the image %q, not 64 hex digits", ref, r.Image)
	}
	var meta struct {
		ImageName string `json:"image-name"`
		Name      string `json:"name"`
	}
	if r.Metadata != "" {
		if err := json.Unmarshal([]byte(r.Metadata), &meta); err != nil {
			return nil, engine.Claimf("podman's storage gives container %s metadata that is not JSON: %v", ref, err)
		}
	}
	c := &engine.Container{ID: r.ID, Image: "sha256:" + r.Image, ImageRef: meta.ImageName, Driver: s.driver,
		Storage: map[string]string{"LayerID": r.Layer}}
	if len(r.Names) > 0 {
		c.Name = r.Names[0]
	}
	specRaw, err := readFile(s.root, filepath.Join(s.driver+"-containers", r.ID, "userdata", "config.json"), maxConfig)
	var spec ociSpec
	switch {
	case errors.Is(err, os.ErrNotExist):
		specRaw = nil // created, never started: podman writes the spec when it starts it
	case err != nil:
		return nil, engine.Wrap(storageFault(err, "its OCI spec"), "container "+ref)
	default:
		if err := json.Unmarshal(specRaw, &spec); err != nil {
			return nil, engine.Claimf("podman's OCI spec of container %s is not JSON: %v", ref, err)
		}
	}
	st := s.state(r.ID)
	c.State, c.Running, c.Paused, c.Pid = st.Status, st.Running, st.Paused, st.Pid
	if p := spec.Process; p != nil {
		c.Tty = p.Terminal
		cfg := map[string]any{"Hostname": spec.Hostname, "Image": meta.ImageName, "Cmd": p.Args, "Env": p.Env, "WorkingDir": p.Cwd,
			"User": fmt.Sprintf("%d:%d", p.User.UID, p.User.GID), "Tty": p.Terminal}
		if c.Config, err = json.Marshal(cfg); err != nil {
			return nil, fmt.Errorf("container %s: %w", ref, err)
		}
	}
	c.Mounts = s.mounts(r.ID, spec)
	raw := map[string]any{"Id": r.ID, "Name": c.Name, "Runtime": "podman", "Source": s.info.Host,
		"Container": r.raw, "State": st}
	if specRaw != nil {
		raw["OCISpec"] = json.RawMessage(specRaw)
	}
	if c.Raw, err = json.MarshalIndent(raw, "", "  "); err != nil {
		return nil, engine.Claimf("podman's records of container %s do not make JSON: %v", ref, err)
	}
	return c, nil
}

// state finds whether the container runs: the PID the runtime wrote to
// <runroot>/overlay-containers/<id>/userdata/pidfile is taken only when
// that process is alive and in a cgroup named after the container (a
// stale pidfile, or a PID reused by another process, is not the
// container). Podman's own database is not read: its format changed
// (BoltDB, then SQLite) and the kernel is the better witness.
func (s *Storage) state(id string) state {
	if s.offline {
		return s.offlineState(id)
	}
	st := state{Status: "exited", Source: "pidfile"}
	b, err := readFile(s.runRoot, filepath.Join(s.driver+"-containers", id, "userdata", "pidfile"), maxPID)
	if err != nil {
		st.Note = "no pidfile: " + err.Error()
		if errors.Is(err, os.ErrNotExist) {
			st.Note = "no pidfile: the container is not running"
		}
		return st
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		st.Note = fmt.Sprintf("the pidfile holds %q, not a PID", b)
		return st
	}
	if err := procmem.InContainer(pid, id, procmem.Options{Root: s.proc}); err != nil {
		st.Note = fmt.Sprintf("the pidfile names process %d, which is not the container's: %v", pid, err)
		return st
	}
	st.Status, st.Running, st.Pid = "running", true, pid
	if fz, err := freezer.Of(s.proc, s.cgroup, pid, id); err == nil {
		if frozen, err := fz.Frozen(); err == nil && frozen {
			st.Status, st.Paused = "paused", true
		}
	}
	return st
}

// mounts are the container's mounts as its OCI spec lists them: named
// volumes (<graphroot>/volumes/<name>/_data), bind mounts and tmpfs;
// podman's own (its userdata files, /proc, /dev, ...) are left out.
func (s *Storage) mounts(id string, spec ociSpec) []engine.Mount {
	var out []engine.Mount
	vols := filepath.Join(s.root, "volumes") + "/"
	for _, m := range spec.Mounts {
		rw := true
		for _, o := range m.Options {
			if o == "ro" {
				rw = false
			}
		}
		em := engine.Mount{Source: m.Source, Destination: m.Destination, RW: rw}
		vol, isVol := "", false
		if m.Type == "bind" && strings.HasSuffix(m.Source, "/_data") {
			if s.offline {
				// The dead host's path: its graph root as it saw it.
				if rel, ok := s.inGraph(m.Source); ok && strings.HasPrefix(rel, "volumes/") {
					vol, isVol = strings.TrimSuffix(strings.TrimPrefix(rel, "volumes/"), "/_data"), true
				}
			} else if strings.HasPrefix(m.Source, vols) {
				vol, isVol = strings.TrimSuffix(strings.TrimPrefix(m.Source, vols), "/_data"), true
			}
		}
		switch {
		case isVol:
			em.Type, em.Name = "volume", vol
		case m.Type == "bind" && strings.Contains(m.Source, "/"+s.driver+"-containers/"+id+"/"):
			continue
		case m.Type == "bind":
			em.Type = "bind"
		case m.Type == "tmpfs" && m.Destination != "/dev":
			em.Type = "tmpfs"
		default:
			continue
		}
		out = append(out, em)
	}
	return out
}

// Image finds an image by name or ID and checks it: its config (kept as
// big data under the key of its own digest) hashes to its ID, and the
// config's diff_ids are its layers' from layers.json.
func (s *Storage) Image(ctx context.Context, ref string) (*engine.Image, error) {
	img, err := s.image(ref)
	if err != nil {
		return nil, err
	}
	return &engine.Image{ID: "sha256:" + img.rec.ID, DiffIDs: img.diffIDs}, nil
}

// Export has no stream without podman: the container's filesystem is read
// from its upper directory (the upperdir route) only.
func (s *Storage) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	return nil, &engine.Fault{Kind: engine.ErrEngine, Err: errors.New("podman's storage read directly has no export stream: only the upper directory route reads a container (--route upperdir)")}
}

// CopyFrom has no stream without podman either: volumes are read from
// their directories (VolumeDir).
func (s *Storage) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return nil, &engine.Fault{Kind: engine.ErrEngine, Err: errors.New("podman's storage read directly cannot copy from a container")}
}

// Changes is unavailable: podman diff computes its list from the same
// upper directory the capture reads, so the capture's own comparison with
// the image is the list.
func (s *Storage) Changes(ctx context.Context, id string) ([]engine.Change, error) {
	return nil, &engine.Unavailable{Why: "podman's storage read directly keeps no change list of its own (podman diff compares the same upper directory with the image)"}
}

// UpperDirs is the container's layer's upper directory:
// <graphroot>/overlay/<layer ID>/diff, a real directory. Podman has no
// init layer: the files it makes for the container (hosts, resolv.conf,
// ...) are bind mounts from its userdata directories, and their mount
// points are in the upper directory.
func (s *Storage) UpperDirs(c *engine.Container) ([]string, error) {
	if c.Driver != s.driver {
		return nil, &engine.Unavailable{Why: "the storage driver is " + c.Driver + ", not " + s.driver}
	}
	layer := c.Storage["LayerID"]
	if !fullID.MatchString(layer) {
		return nil, engine.Claimf("podman's storage gives container %s the layer %q, not 64 hex digits", c.ID, layer)
	}
	d, err := dir(s.root, s.driver, layer, "diff")
	if errors.Is(err, engine.ErrNoSuchObject) {
		return nil, &engine.Unavailable{Why: "the container's layer has no upper directory: " + err.Error()}
	}
	if err != nil {
		return nil, err
	}
	return []string{d}, nil
}

// VolumeDir checks a volume's place: <graphroot>/volumes/<name>/_data.
// Offline, source is the dead host's path (its graph root as it saw it):
// only a volume of the graph root is read, a bind mount of the dead
// host's own files is refused (nothing outside the graph root is read).
func (s *Storage) VolumeDir(name, source string) (string, error) {
	if s.offline {
		rel, ok := s.inGraph(source)
		if !ok || name == "" || rel != filepath.Join("volumes", name, "_data") {
			return "", engine.Claimf("podman places mount %q at %s, not at volumes/<name>/_data under its graph root %s: not read offline", name, source, s.graphGiven)
		}
		return dir(s.root, "volumes", name, "_data")
	}
	want := filepath.Join(s.root, "volumes", name, "_data")
	if filepath.Clean(source) != want {
		return "", engine.Claimf("podman places volume %s at %s, not at volumes/%s/_data under its graph root %s", name, source, name, s.root)
	}
	return dir(s.root, "volumes", name, "_data")
}
