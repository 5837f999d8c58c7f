package snapshot

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
)

// DefaultMaxLogBytes is far more than a container's logs hold where the
// engine rotates them, and bounds an engine whose logs never end.
const DefaultMaxLogBytes = 1 << 30

// Routes for a container's filesystem.
const (
	RouteAuto     = "auto"
	RouteUpperdir = "upperdir"
	RouteExport   = "export"
)

// EngineRequest is one capture from a Docker engine into one archive.
type EngineRequest struct {
	Images      []string
	Containers  []string
	Output      string
	Case        manifest.Case
	CommandLine []string
	Tool        manifest.Tool
	MD5, SHA1   bool
	Level       int
	// Pause freezes each running container for the capture; it is always
	// unpaused again.
	Pause bool
	// NoMemory skips the process memory.
	NoMemory bool
	// Volumes also captures the contents of the containers' volumes
	// (never of bind mounts), each as an artifact of its own.
	Volumes bool
	// Route is RouteAuto (upperdir when the engine is local and uses
	// overlay2, else export), RouteUpperdir or RouteExport.
	Route string
	// MaxLogBytes bounds each container's logs (stdout and stderr
	// together); past it they are cut and flagged logs-truncated. 0 means
	// DefaultMaxLogBytes.
	MaxLogBytes int64
	Options
	WriteProgress func(int64)
}

// session is the bookkeeping common to every capture: the manifest being
// built and the custody chain.
type session struct {
	m     *manifest.Manifest
	chain *manifest.Chain
	actor string
	// volumes captured so far: volume name -> artifact
	volumes map[string]*manifest.Artifact
}

func newSession(tool manifest.Tool, c manifest.Case, cmdline []string) *session {
	m := &manifest.Manifest{Tool: tool, Case: c}
	m.Acquisition.Started = time.Now().UTC()
	manifest.HostInfo(&m.Acquisition)
	m.Acquisition.CommandLine = cmdline
	return &session{m: m, chain: manifest.NewChain(hashing.Digest{}, 0), actor: Actor(c, m.Acquisition), volumes: map[string]*manifest.Artifact{}}
}

func (s *session) ev(action string, details map[string]string) error {
	_, err := s.chain.Append(manifest.Event{Time: time.Now(), Actor: s.actor, Host: s.m.Acquisition.Host, Action: action, Details: details})
	return err
}

type ctrCapture struct {
	ref      string
	name     string
	ci       container.InspectResponse
	raw      []byte
	imageRef string // what to save: the name it was created from, or its ID
	art      manifest.Artifact
	paused   bool
	cfg      []byte // its image's config, as saved
	volumes  []*manifest.Artifact
	fs       *containerFS
}

// CaptureEngine captures containers and images from the Docker engine:
// for each container its processes' memory first (order of volatility),
// then its image, its filesystem changes, inspect record, change lists and
// logs. On any error, and on cancellation, nothing is left at the output
// name, and every container paused by amber is unpaused.
func CaptureEngine(ctx context.Context, req EngineRequest) (res *Result, err error) {
	// A container's change list is computed against its image's indexes.
	req.Options.keepIndexes = len(req.Containers) > 0
	if req.Route == "" {
		req.Route = RouteAuto
	}
	if len(req.Images)+len(req.Containers) == 0 {
		return nil, fmt.Errorf("nothing to capture")
	}
	e, err := Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	s := newSession(req.Tool, req.Case, req.CommandLine)
	acq := &s.m.Acquisition
	info := e.Info
	acq.Docker = &info
	progress := req.Progress
	if progress == nil {
		progress = func(string) {}
	}
	// Resolve everything before touching anything.
	var ctrs []*ctrCapture
	names := map[string]bool{}
	for _, ref := range req.Containers {
		ci, raw, err := e.inspect(ctx, ref)
		if err != nil {
			return nil, err
		}
		c := &ctrCapture{ref: ref, ci: ci, raw: raw}
		c.name = manifest.PathSafe(strings.TrimPrefix(ci.Name, "/"))
		if c.name == "" {
			c.name = ci.ID[:12]
		}
		if names[c.name] {
			return nil, fmt.Errorf("container %s named twice", ref)
		}
		names[c.name] = true
		if ci.GraphDriver.Name == "" && req.Route == RouteUpperdir {
			return nil, fmt.Errorf("container %s: the engine reports no storage driver", ref)
		}
		c.imageRef = ci.Image
		if ci.Config != nil && ci.Config.Image != "" {
			if ii, err := e.c.ImageInspect(ctx, ci.Config.Image); err == nil && ii.ID == ci.Image {
				c.imageRef = ci.Config.Image
			}
		}
		ctrs = append(ctrs, c)
		acq.Sources = append(acq.Sources, manifest.Source{Kind: "docker-container", Path: info.Host + " " + c.name + " " + ci.ID})
	}
	var saveRefs []string
	imageIDs := map[string]string{} // ref -> ID
	addRef := func(ref, id string) {
		for _, known := range imageIDs {
			if known == id {
				return // the same image under another name: saved once
			}
		}
		saveRefs = append(saveRefs, ref)
		imageIDs[ref] = id
	}
	for _, ref := range req.Images {
		ii, err := e.c.ImageInspect(ctx, ref)
		if err != nil {
			return nil, e.wrap(err, "image "+ref)
		}
		addRef(ref, ii.ID)
		acq.Sources = append(acq.Sources, manifest.Source{Kind: "docker-image", Path: info.Host + " " + ref + " " + ii.ID})
	}
	for _, c := range ctrs {
		addRef(c.imageRef, c.ci.Image)
	}
	details := map[string]string{"command_line": ShellJoin(req.CommandLine), "output": filepath.Base(req.Output), "tool": req.Tool.Name + " " + req.Tool.Version,
		"engine": info.Host, "engine_id": info.ID, "engine_name": info.Name, "engine_version": info.Version, "api_version": info.APIVersion}
	for i, src := range acq.Sources {
		details[fmt.Sprintf("source_%d", i)] = src.Kind + " " + src.Path
	}
	if err := s.ev("acquisition-started", details); err != nil {
		return nil, err
	}
	w, err := manifest.Create(req.Output, manifest.WriterOptions{MD5: req.MD5, SHA1: req.SHA1, Progress: req.WriteProgress, Level: req.Level, Perm: req.Perm})
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	// Pause, and always unpause: also on errors and cancellation.
	unpause := func() error {
		var first error
		for _, c := range ctrs {
			if !c.paused {
				continue
			}
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
			err := e.c.ContainerUnpause(uctx, c.ci.ID)
			cancel()
			if err != nil && strings.Contains(err.Error(), "is not paused") {
				c.paused = false // the pause never happened
				continue
			}
			if err != nil {
				if first == nil {
					first = e.wrap(err, "unpausing container "+c.name+" (run: docker unpause "+c.ci.ID[:12]+")")
				}
				continue
			}
			c.paused = false
			if err := s.ev("unpaused", map[string]string{"container": c.name, "id": c.ci.ID}); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	defer func() {
		if uerr := unpause(); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	if req.Pause {
		for _, c := range ctrs {
			if c.ci.State == nil || !c.ci.State.Running || c.ci.State.Paused {
				continue
			}
			// Marked first and asked without the capture's context: a
			// signal arriving while the engine pauses it must still
			// find it unpaused afterwards.
			c.paused = true
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
			err := e.c.ContainerPause(pctx, c.ci.ID)
			cancel()
			if err != nil {
				return nil, e.wrap(err, "pausing container "+c.name)
			}
			if err := s.ev("paused", map[string]string{"container": c.name, "id": c.ci.ID}); err != nil {
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	mw := &archiveMembers{w: w}
	// Memory first: it is the most volatile.
	for _, c := range ctrs {
		cc := &manifest.Container{ID: c.ci.ID, ImageRef: c.imageRef, Driver: c.ci.GraphDriver.Name}
		if c.ci.State != nil {
			cc.State = c.ci.State.Status
		}
		cc.Paused = c.paused
		c.art.Container = cc
		switch {
		case req.NoMemory:
			cc.MemorySkipped = "not asked for (--no-memory)"
		case c.ci.State == nil || !c.ci.State.Running || c.ci.State.Pid <= 0:
			cc.MemorySkipped = "the container is not running"
		case !info.Local:
			cc.MemorySkipped = "the engine is not on this host (" + info.Host + "); memory can only be taken locally"
		default:
			if err := captureMemory(ctx, c, mw, s, progress); err != nil {
				return nil, err
			}
		}
	}
	// The containers' own filesystems next, where they can be read
	// directly: more volatile than their images.
	for _, c := range ctrs {
		c.fs = &containerFS{}
		defer c.fs.remove()
		if err := chooseRoute(e, c, req, c.fs); err != nil {
			return nil, err
		}
		if c.fs.route == RouteUpperdir {
			if err := readUpper(ctx, e, c, req, c.fs, progress); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return nil, fmt.Errorf("%w: container %s: %w", ErrContainerGone, c.name, err)
				}
				return nil, fmt.Errorf("container %s: %w", c.name, err)
			}
		}
	}
	// Images, each as the engine's save stream arrives; layers shared
	// between images are stored once.
	layers := newLayerSet()
	capd := &Captured{Indexes: map[hashing.Digest]*manifest.Index{}}
	var srcs []*Source
	for _, ref := range saveRefs {
		ii, err := e.c.ImageInspect(ctx, ref)
		if err != nil {
			return nil, e.wrap(err, "image "+ref)
		}
		if ii.ID != imageIDs[ref] {
			return nil, fmt.Errorf("%w: %s is now image %s, not %s as when the capture began", ErrEngine, ref, ii.ID, imageIDs[ref])
		}
		var diffIDs []hashing.Digest
		for _, l := range ii.RootFS.Layers {
			d, err := hashing.Parse(l)
			if err != nil {
				return nil, fmt.Errorf("%w: image %s: layer %q", ErrEngine, ref, l)
			}
			diffIDs = append(diffIDs, d)
		}
		progress(fmt.Sprintf("image %s: saving from the engine", ref))
		src, err := saveStream(ctx, e, ref, diffIDs, filepath.Dir(req.Output), w, layers, req.Options, progress)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
		c, err := layers.capture(ctx, src, w, req.Options)
		if err != nil {
			return nil, fmt.Errorf("capturing image %s from the engine: %w", ref, err)
		}
		for _, a := range c.Artifacts {
			for {
				if _, dup := s.m.Artifact(a.Kind, a.Name); !dup {
					break
				}
				a.Name += "_" + a.ImageID.Short()
			}
			capd.Artifacts = append(capd.Artifacts, a)
			s.m.Artifacts = append(s.m.Artifacts, a)
		}
		capd.Anomalies = append(capd.Anomalies, c.Anomalies...)
		capd.Events = append(capd.Events, c.Events...)
		capd.Index = append(capd.Index, c.Index...)
		for k, v := range c.Indexes {
			capd.Indexes[k] = v
		}
	}
	index := capd.Index
	byID := map[string]*manifest.Artifact{}
	for i := range s.m.Artifacts {
		a := &s.m.Artifacts[i]
		byID[a.ImageID.String()] = a
	}
	for ref, id := range imageIDs {
		if byID[id] == nil {
			return nil, fmt.Errorf("%w: the engine's save of %s does not hold image %s", ErrEngine, ref, id)
		}
	}
	s.m.Anomalies = append(s.m.Anomalies, capd.Anomalies...)
	for _, ev := range capd.Events {
		if err := s.ev(ev.Action, ev.Details); err != nil {
			return nil, err
		}
	}
	// Each container's filesystem, metadata and logs.
	for _, c := range ctrs {
		for _, src := range srcs {
			for _, im := range src.Images {
				if im.ConfigDigest.String() == c.ci.Image {
					c.cfg = im.Config
				}
			}
		}
		img := *byID[c.ci.Image]
		desc, err := captureContainerFS(ctx, e, c, img, capd.Indexes, w, mw, req, s, progress)
		if err != nil {
			if errors.Is(err, ErrNoSuchObject) || errors.Is(err, os.ErrNotExist) {
				// It was there when the capture began.
				return nil, fmt.Errorf("%w: container %s: %w", ErrContainerGone, c.name, err)
			}
			return nil, fmt.Errorf("container %s: %w", c.name, err)
		}
		index = append(index, desc)
	}
	// byID pointed into s.m.Artifacts; containers are appended after.
	for _, c := range ctrs {
		s.m.Artifacts = append(s.m.Artifacts, c.art)
		for _, v := range c.volumes {
			s.m.Artifacts = append(s.m.Artifacts, *v)
		}
	}
	if err := unpause(); err != nil {
		return nil, err
	}
	if err := WriteIndex(w, index); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	acq.Finished = time.Now().UTC()
	if err := s.ev("sealing", map[string]string{"artifacts": fmt.Sprint(len(s.m.Artifacts)), "anomalies": fmt.Sprint(len(s.m.Anomalies))}); err != nil {
		return nil, err
	}
	sealed, err := w.Seal(s.m, s.chain)
	if err != nil {
		return nil, err
	}
	res = &Result{Sealed: sealed, Manifest: s.m}
	side, err := WriteSidecars(sealed, s.actor, acq.Host, s.m.Custody)
	res.Sidecars = side
	return res, err
}

// archiveMembers adds members to the archive and remembers them.
type archiveMembers struct {
	w    *manifest.Writer
	list []manifest.Entry
}

func (a *archiveMembers) add(name string, data []byte) error {
	e, err := a.w.Add(name, data)
	a.list = append(a.list, e)
	return err
}
func (a *archiveMembers) begin(name string, size int64) error { return a.w.Begin(name, size) }
func (a *archiveMembers) write(p []byte) error {
	_, err := a.w.Write(p)
	return err
}
func (a *archiveMembers) end() error {
	e, err := a.w.End()
	a.list = append(a.list, e)
	return err
}

// prefixed stores members under amber/containers/<name>/.
type prefixed struct {
	*archiveMembers
	prefix string
	c      *manifest.Container
}

func (p *prefixed) record() {
	e := p.list[len(p.list)-1]
	p.c.Members = append(p.c.Members, manifest.Member{Path: strings.TrimPrefix(e.Name, p.prefix), Entry: e.Name, Size: e.Size, SHA256: e.SHA256})
}

func (p *prefixed) add(name string, data []byte) error {
	if err := p.archiveMembers.add(p.prefix+name, data); err != nil {
		return err
	}
	p.record()
	return nil
}
func (p *prefixed) begin(name string, size int64) error {
	return p.archiveMembers.begin(p.prefix+name, size)
}
func (p *prefixed) end() error {
	if err := p.archiveMembers.end(); err != nil {
		return err
	}
	p.record()
	return nil
}

// ContainerPrefix is where a container's own files lie in the archive.
func ContainerPrefix(name string) string { return "amber/containers/" + name + "/" }

func captureMemory(ctx context.Context, c *ctrCapture, mw *archiveMembers, s *session, progress func(string)) error {
	cc := c.art.Container
	pids, err := containerPIDs(c.ci.State.Pid, c.ci.ID)
	if errors.Is(err, errNotInContainer) {
		// Never a host process's memory on the engine's word.
		cc.MemorySkipped = "not dumped: " + err.Error()
		s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Kind: "engine-claims-pid-outside-container", Detail: err.Error()})
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", c.name, err)
	}
	pm := &prefixed{archiveMembers: mw, prefix: ContainerPrefix(c.name), c: cc}
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The PID may have been reused since the list was made.
		if err := inContainer(pid, c.ci.ID); errors.Is(err, errNotInContainer) {
			s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Kind: "engine-claims-pid-outside-container", Detail: err.Error()})
			continue
		}
		p, err := dumpProcess(pid, pm, progress)
		if err != nil {
			return fmt.Errorf("container %s, process %d: %w", c.name, pid, err)
		}
		cc.Processes = append(cc.Processes, p)
		d := map[string]string{"container": c.name, "pid": fmt.Sprint(pid), "comm": p.Comm, "dir": p.Dir,
			"bytes": fmt.Sprint(p.Bytes), "unreadable_regions": fmt.Sprint(len(p.Unreadable))}
		for _, m := range cc.Members {
			if m.Path == p.Dir+"/core" {
				d["core_sha256"] = m.SHA256.String()
			}
		}
		if p.Lost != "" {
			d["lost"] = p.Lost
		}
		if err := s.ev("memory-captured", d); err != nil {
			return err
		}
	}
	return nil
}

// captureContainerFS stores the container's changes layer, its config and
// manifest (the image's plus that layer), and its metadata.
// containerFS is a container's filesystem as read: its changes layer in
// a temporary file, and the engine's change list, asked for only once the
// filesystem has been read (the engine reads the directories to answer).
type containerFS struct {
	route     string
	dirs      []string // the upperdir route's directories, checked and resolved
	lf        *layerFile
	anomalies []manifest.Anomaly
	diff      chan engineDiff
}

type engineDiff struct {
	changes []container.FilesystemChange
	err     error
}

// chooseRoute picks the route for a container's filesystem.
func chooseRoute(e *Engine, c *ctrCapture, req EngineRequest, fs *containerFS) error {
	route := req.Route
	upper := c.ci.GraphDriver.Data["UpperDir"]
	if route == RouteAuto || route == RouteUpperdir {
		why := ""
		switch {
		case !e.Info.Local:
			why = "the engine is not on this host"
		case c.ci.GraphDriver.Name != "overlay2":
			why = "the storage driver is " + c.ci.GraphDriver.Name + ", not overlay2"
		case upper == "":
			why = "the engine does not report an upper directory"
		}
		if why == "" {
			dirs, err := upperDirs(e, c.ci.GraphDriver.Data)
			if err != nil {
				// The engine points at a directory that is not its own:
				// the filesystem is still read, through its API.
				if route == RouteUpperdir {
					return fmt.Errorf("--route upperdir: %w", err)
				}
				fs.anomalies = append(fs.anomalies, manifest.Anomaly{Kind: "engine-claims-upperdir-outside-root", Detail: "filesystem read through the engine's export: " + err.Error()})
				fs.route = RouteExport
				return nil
			}
			if _, err := os.Stat(dirs[0]); err != nil {
				why = "the upper directory cannot be read: " + err.Error()
			}
			fs.dirs = dirs
		}
		if why != "" {
			if route == RouteUpperdir {
				return fmt.Errorf("%w: --route upperdir: %s", ErrNotLocal, why)
			}
			route = RouteExport
			fs.anomalies = append(fs.anomalies, manifest.Anomaly{Kind: "route", Detail: "filesystem read through the engine's export: " + why})
		} else {
			route = RouteUpperdir
		}
	}
	fs.route = route
	return nil
}

// upperDirs returns the directories of the upperdir route: the upper
// directory and, just below it, the engine's init layer (hosts,
// resolv.conf, /dev, ...: part of the container's filesystem as docker
// export shows it, and not of its image). Both are the engine's word, and
// read directly only where the engine keeps them:
// <root>/overlay2/<id>/diff and <root>/overlay2/<id>-init/diff.
func upperDirs(e *Engine, data map[string]string) ([]string, error) {
	upper := data["UpperDir"]
	id := filepath.Base(filepath.Dir(filepath.Clean(upper)))
	if !fullID.MatchString(id) {
		return nil, claimf("the engine places the container's upper directory at %s, not at overlay2/<64 hex digits>/diff under its root directory %s", upper, e.root)
	}
	real, err := e.inRoot(upper, "overlay2", id, "diff")
	if err != nil {
		return nil, err
	}
	dirs := []string{real}
	if lower := strings.Split(data["LowerDir"], ":"); len(lower) > 0 && strings.HasSuffix(lower[0], "-init/diff") {
		init, err := e.inRoot(lower[0], "overlay2", id+"-init", "diff")
		if err != nil {
			return nil, fmt.Errorf("its init layer: %w", err)
		}
		dirs = append(dirs, init)
	}
	return dirs, nil
}

// readUpper reads the upper directory route into fs.lf. It may fall back
// to the export route (fs.route says which was taken).
func readUpper(ctx context.Context, e *Engine, c *ctrCapture, req EngineRequest, fs *containerFS, progress func(string)) error {
	progress(fmt.Sprintf("container %s: filesystem (%s)", c.name, fs.route))
	lf, err := newLayerFile(filepath.Dir(req.Output))
	if err != nil {
		return err
	}
	fs.lf = lf
	err = upperRoute(fs.dirs, true, lf, &fs.anomalies)
	if errors.Is(err, errRouteUnsupported) && req.Route == RouteAuto {
		fs.anomalies = append(fs.anomalies, manifest.Anomaly{Kind: "route", Detail: "filesystem read through the engine's export: " + err.Error()})
		lf.remove()
		fs.lf, fs.route = nil, RouteExport
		return nil
	}
	if err != nil {
		return err
	}
	fs.askEngine(ctx, e, c)
	return nil
}

// askEngine starts asking the engine for its change list.
func (fs *containerFS) askEngine(ctx context.Context, e *Engine, c *ctrCapture) {
	fs.diff = make(chan engineDiff, 1)
	go func() {
		ch, err := e.c.ContainerDiff(ctx, c.ci.ID)
		fs.diff <- engineDiff{ch, err}
	}()
}

func (fs *containerFS) remove() {
	if fs.lf != nil {
		fs.lf.remove()
	}
	if fs.diff != nil {
		<-fs.diff // the request ends with the capture's context
		fs.diff = nil
	}
}

func captureContainerFS(ctx context.Context, e *Engine, c *ctrCapture, img manifest.Artifact, idx map[hashing.Digest]*manifest.Index,
	w *manifest.Writer, mw *archiveMembers, req EngineRequest, s *session, progress func(string)) (descriptor, error) {
	cc := c.art.Container
	cc.Image = img.Name
	pristine := &layers.Stack{}
	for _, l := range img.Layers {
		pristine.Indexes = append(pristine.Indexes, idx[l.Digest])
	}
	fs := c.fs
	if fs.route == RouteExport && fs.lf == nil {
		progress(fmt.Sprintf("container %s: filesystem (%s)", c.name, fs.route))
		lf, err := newLayerFile(filepath.Dir(req.Output))
		if err != nil {
			return descriptor{}, err
		}
		fs.lf = lf
		if err := exportRoute(ctx, e, c.ci.ID, pristine, lf, &fs.anomalies); err != nil {
			return descriptor{}, err
		}
		fs.askEngine(ctx, e, c)
	}
	lf, route, anomalies := fs.lf, fs.route, fs.anomalies
	cc.Route = route
	size, sum, err := lf.finish()
	if err != nil {
		return descriptor{}, err
	}
	ld, err := captureLayer(ctx, &Source{store: fileStore{lf.path()}}, w, LayerSource{Name: "changes", Size: size, Digest: sum}, sum, req.Options)
	if err != nil {
		return descriptor{}, fmt.Errorf("storing the changes layer: %w", err)
	}
	for _, a := range append(anomalies, ld.anomalies...) {
		a.Artifact = c.name
		a.Layer = len(img.Layers)
		s.m.Anomalies = append(s.m.Anomalies, a)
	}
	// The content-aware change list, and the engine's.
	changes, err := layers.ContainerChanges(pristine, ld.index)
	if err != nil {
		return descriptor{}, fmt.Errorf("comparing with the image: %w", err)
	}
	pm := &prefixed{archiveMembers: mw, prefix: ContainerPrefix(c.name), c: cc}
	progress(fmt.Sprintf("container %s: the engine's change list", c.name))
	ed := <-fs.diff
	fs.diff = nil
	engineChanges, cerr := ed.changes, ed.err
	if cerr != nil {
		return descriptor{}, e.wrap(cerr, "asking the engine for the change list")
	}
	ours := map[string]layers.Change{}
	for _, ch := range changes {
		ours[ch.Path] = ch
		switch ch.Kind {
		case 'A':
			cc.Changes.Added++
		case 'C':
			cc.Changes.Changed++
		case 'D':
			cc.Changes.Deleted++
		}
	}
	var eng []layers.Change
	theirs := map[string]byte{}
	for _, ch := range engineChanges {
		k := "CAD"[ch.Kind]
		theirs[ch.Path] = k
		eng = append(eng, layers.Change{Kind: k, Path: ch.Path})
	}
	sort.Slice(eng, func(i, j int) bool { return eng[i].Path < eng[j].Path })
	for _, p := range unionKeys(ours, theirs) {
		o, ok := ours[p]
		t, tok := theirs[p]
		switch {
		case ok && tok && o.Kind == t:
			continue
		case ok && !tok && engineMade[p]:
			continue // the engine's change list leaves out its own init layer
		case ok && !tok:
			s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Layer: len(img.Layers), Path: p, Kind: "engine-change-list",
				Detail: fmt.Sprintf("content comparison: %c (%s); the engine's change list does not list it", o.Kind, strings.Join(o.What, ", "))})
		case !ok && tok:
			s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Layer: len(img.Layers), Path: p, Kind: "engine-change-list",
				Detail: fmt.Sprintf("the engine lists %c; content comparison finds no change", t)})
		default:
			s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Layer: len(img.Layers), Path: p, Kind: "engine-change-list",
				Detail: fmt.Sprintf("the engine lists %c; content comparison: %c (%s)", t, o.Kind, strings.Join(o.What, ", "))})
		}
		cc.Changes.Disagree++
	}
	if err := pm.add("changes.txt", layers.FormatChanges(changes)); err != nil {
		return descriptor{}, err
	}
	if err := pm.add("engine-changes.txt", layers.FormatChanges(eng)); err != nil {
		return descriptor{}, err
	}
	if err := pm.add("inspect.json", c.raw); err != nil {
		return descriptor{}, err
	}
	for _, m := range c.ci.Mounts {
		mt := manifest.Mount{Type: string(m.Type), Name: m.Name, Source: m.Source, Destination: m.Destination, RW: m.RW}
		switch {
		case m.Type != "volume":
			mt.Skipped = "a " + string(m.Type) + " mount of a host path: recorded, never walked"
		case !req.Volumes:
			mt.Skipped = "volume contents not asked for (--volumes)"
		default:
			source, refused := m.Source, error(nil)
			if e.Info.Local && source != "" {
				if _, err := os.Lstat(source); err == nil {
					// Read directly only where the engine keeps volumes.
					source, refused = e.inRoot(source, "volumes", m.Name, "_data")
				}
			}
			if refused != nil {
				mt.Skipped = "not read: " + refused.Error()
				s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Path: m.Destination, Kind: "engine-claims-volume-outside-root", Detail: refused.Error()})
				break
			}
			va, err := captureVolume(ctx, e, c, m.Name, source, m.Destination, w, req, s, progress)
			if err != nil {
				return descriptor{}, fmt.Errorf("volume %s: %w", m.Name, err)
			}
			mt.Captured = "volumes/" + va.Name
		}
		cc.Mounts = append(cc.Mounts, mt)
	}
	progress(fmt.Sprintf("container %s: logs", c.name))
	maxLog := req.MaxLogBytes
	if maxLog <= 0 {
		maxLog = DefaultMaxLogBytes
	}
	if err := captureLogs(ctx, e, c, pm, filepath.Dir(req.Output), maxLog, s); err != nil {
		return descriptor{}, err
	}
	// An OCI config and manifest: the image's, plus the changes layer.
	cfgBytes, err := containerConfig(ld.layer.Digest, c)
	if err != nil {
		return descriptor{}, err
	}
	cfgDigest := hashing.Sum(cfgBytes)
	if !w.Has(manifest.BlobName(cfgDigest)) {
		if _, err := w.Add(manifest.BlobName(cfgDigest), cfgBytes); err != nil {
			return descriptor{}, err
		}
	}
	a := &c.art
	a.Kind = manifest.KindContainer
	a.Name = c.name
	a.Refs = []string{strings.TrimPrefix(c.ci.Name, "/")}
	a.ImageID = img.ImageID
	a.Layers = append(append([]manifest.Layer(nil), img.Layers...), ld.layer)
	a.Files = img.Files + ld.layer.Files
	var roots []hashing.Digest
	for _, l := range a.Layers {
		roots = append(roots, hashing.LeafHash([]byte(l.MerkleRoot.String())))
	}
	a.MerkleRoot = hashing.MerkleRoot(roots)
	a.Config = manifest.Descriptor{MediaType: MediaTypeConfig, Digest: cfgDigest, Size: int64(len(cfgBytes))}
	om := ociManifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: descriptor{MediaType: MediaTypeConfig, Digest: cfgDigest.String(), Size: int64(len(cfgBytes))}}
	for _, l := range a.Layers {
		om.Layers = append(om.Layers, descriptor{MediaType: MediaTypeLayer, Digest: l.Digest.String(), Size: l.Size})
	}
	mb, err := json.Marshal(om)
	if err != nil {
		return descriptor{}, fmt.Errorf("encoding the container's manifest: %w", err)
	}
	md := hashing.Sum(mb)
	if !w.Has(manifest.BlobName(md)) {
		if _, err := w.Add(manifest.BlobName(md), mb); err != nil {
			return descriptor{}, err
		}
	}
	a.Manifest = manifest.Descriptor{MediaType: MediaTypeManifest, Digest: md, Size: int64(len(mb))}
	d := map[string]string{"artifact": "containers/" + c.name, "id": c.ci.ID, "route": route, "image": "images/" + img.Name,
		"changes_layer": ld.layer.Digest.String(), "manifest": md.String(), "merkle_root": a.MerkleRoot.String(),
		"added": fmt.Sprint(cc.Changes.Added), "changed": fmt.Sprint(cc.Changes.Changed), "deleted": fmt.Sprint(cc.Changes.Deleted),
		"engine_disagrees": fmt.Sprint(cc.Changes.Disagree)}
	if err := s.ev("captured", d); err != nil {
		return descriptor{}, err
	}
	return descriptor{MediaType: MediaTypeManifest, Digest: md.String(), Size: int64(len(mb)), Annotations: map[string]string{AnnotationRefName: c.name}}, nil
}

// engineMade are the paths of the engine's init layer, made for every
// container: in its filesystem (and docker export), never in docker diff.
var engineMade = map[string]bool{"/.dockerenv": true, "/dev": true, "/dev/console": true, "/dev/pts": true, "/dev/shm": true,
	"/etc": true, "/etc/hostname": true, "/etc/hosts": true, "/etc/mtab": true, "/etc/resolv.conf": true, "/proc": true, "/sys": true}

// captureVolume stores a named volume's contents as an artifact of one
// layer: read directly (O_NOATIME) when the engine is local, else through
// the engine from the container's mount point.
func captureVolume(ctx context.Context, e *Engine, c *ctrCapture, name, source, dest string, w *manifest.Writer, req EngineRequest, s *session, progress func(string)) (*manifest.Artifact, error) {
	if a, ok := s.volumes[name]; ok {
		return a, nil
	}
	progress(fmt.Sprintf("volume %s", name))
	lf, err := newLayerFile(filepath.Dir(req.Output))
	if err != nil {
		return nil, err
	}
	defer lf.remove()
	var anomalies []manifest.Anomaly
	how := "direct"
	if _, serr := os.Stat(source); e.Info.Local && source != "" && serr == nil {
		err = upperRoute([]string{source}, false, lf, &anomalies)
	} else {
		how = "engine"
		err = copyFromContainer(ctx, e, c.ci.ID, dest, lf)
	}
	if err != nil {
		return nil, err
	}
	size, sum, err := lf.finish()
	if err != nil {
		return nil, err
	}
	ld, err := captureLayer(ctx, &Source{store: fileStore{lf.path()}}, w, LayerSource{Name: "volume", Size: size, Digest: sum}, sum, req.Options)
	if err != nil {
		return nil, fmt.Errorf("storing the volume: %w", err)
	}
	vname := manifest.PathSafe(name)
	if vname == "" {
		vname = sum.Short()
	}
	a := &manifest.Artifact{Kind: manifest.KindVolume, Name: vname, Refs: []string{name}, Layers: []manifest.Layer{ld.layer}, Files: ld.layer.Files,
		MerkleRoot: hashing.MerkleRoot([]hashing.Digest{hashing.LeafHash([]byte(ld.layer.MerkleRoot.String()))})}
	for _, an := range append(anomalies, ld.anomalies...) {
		an.Artifact = vname
		s.m.Anomalies = append(s.m.Anomalies, an)
	}
	s.volumes[name] = a
	c.volumes = append(c.volumes, a)
	if err := s.ev("captured", map[string]string{"artifact": "volumes/" + vname, "volume": name, "read": how, "source": source,
		"layer": ld.layer.Digest.String(), "merkle_root": a.MerkleRoot.String(), "files": fmt.Sprint(a.Files)}); err != nil {
		return nil, err
	}
	return a, nil
}

// copyFromContainer writes the tree at path in the container, as the
// engine gives it (docker cp), as a layer rooted at that path.
func copyFromContainer(ctx context.Context, e *Engine, id, p string, lf *layerFile) error {
	rc, _, err := e.c.CopyFromContainer(ctx, id, p)
	if err != nil {
		return e.wrap(err, "reading "+p+" of container "+id)
	}
	defer rc.Close()
	tr := tar.NewReader(ctxReader{ctx, rc})
	base := path.Base(path.Clean("/" + p))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: reading %s of container %s: %v", ErrEngine, p, id, err)
		}
		name, unsafe := manifest.CleanName(h.Name)
		if unsafe {
			continue
		}
		rel, ok := strings.CutPrefix(name, base)
		if !ok || rel != "" && rel[0] != '/' {
			continue
		}
		rel = strings.TrimPrefix(rel, "/")
		if rel == "" {
			continue
		}
		h.Name = rel
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if h.Typeflag == tar.TypeLink {
			t, _ := manifest.CleanName(h.Linkname)
			h.Linkname = strings.TrimPrefix(strings.TrimPrefix(t, base), "/")
		}
		if err := lf.header(h); err != nil {
			return err
		}
		if _, err := io.Copy(lf.tw, tr); err != nil {
			return fmt.Errorf("%w: reading %s of container %s: %v", ErrEngine, p, id, err)
		}
	}
}

func unionKeys(a map[string]layers.Change, b map[string]byte) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// containerConfig is the image's config with the changes layer added, as
// docker commit would make it, so that an OCI tool unpacking the
// container's manifest reproduces its filesystem.
func containerConfig(changes hashing.Digest, c *ctrCapture) ([]byte, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(c.cfg, &cfg); err != nil {
		return nil, fmt.Errorf("%w: image config: %v", ErrSource, err)
	}
	var rootfs struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	}
	if err := json.Unmarshal(cfg["rootfs"], &rootfs); err != nil {
		return nil, fmt.Errorf("%w: image config rootfs: %v", ErrSource, err)
	}
	rootfs.DiffIDs = append(rootfs.DiffIDs, changes.String())
	var hist []json.RawMessage
	if h, ok := cfg["history"]; ok {
		if err := json.Unmarshal(h, &hist); err != nil {
			return nil, fmt.Errorf("%w: image config history: %v", ErrSource, err)
		}
	}
	entry, _ := json.Marshal(map[string]any{"created": time.Now().UTC().Format(time.RFC3339Nano),
		"created_by": "amber capture container " + c.ci.ID, "comment": "the changes of container " + c.name + " at capture time"})
	hist = append(hist, entry)
	cfg["rootfs"], _ = json.Marshal(rootfs)
	cfg["history"], _ = json.Marshal(hist)
	if c.ci.Config != nil {
		if b, err := json.Marshal(c.ci.Config); err == nil {
			cfg["container_config"] = b
		}
	}
	cfg["container"], _ = json.Marshal(c.ci.ID)
	return json.Marshal(cfg)
}

// captureLogs stores the container's stdout and stderr as the engine has
// them, each line prefixed with the engine's timestamp: their first limit
// bytes, the rest flagged logs-truncated and not read.
func captureLogs(ctx context.Context, e *Engine, c *ctrCapture, pm *prefixed, dir string, limit int64, s *session) error {
	rc, err := e.c.ContainerLogs(ctx, c.ci.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true})
	if err != nil {
		return pm.add("logs/unavailable", []byte(fmt.Sprintf("the engine gives no logs: %v\n", err)))
	}
	defer rc.Close()
	out, err := manifest.TempFile(dir, ".amber-stdout-*") // no name: nothing left by kill -9
	if err != nil {
		return fmt.Errorf("storing logs: %w", err)
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	errf, err := manifest.TempFile(dir, ".amber-stderr-*")
	if err != nil {
		return fmt.Errorf("storing logs: %w", err)
	}
	defer func() { errf.Close(); os.Remove(errf.Name()) }()
	tty := c.ci.Config != nil && c.ci.Config.Tty
	left := limit
	if tty {
		_, err = io.Copy(logBudget{out, &left}, ctxReader{ctx, rc})
	} else {
		_, err = stdcopy.StdCopy(logBudget{out, &left}, logBudget{errf, &left}, ctxReader{ctx, rc})
	}
	if errors.Is(err, errLogBound) {
		s.m.Anomalies = append(s.m.Anomalies, manifest.Anomaly{Artifact: c.name, Path: "logs", Kind: "logs-truncated",
			Detail: fmt.Sprintf("the engine's logs go on past %d MiB: their first %d MiB (stdout and stderr together) are stored, the rest was not read", limit>>20, limit>>20)})
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%w: reading the container's logs: %v", ErrEngine, err)
	}
	for _, f := range []struct {
		name string
		f    *os.File
	}{{"logs/stdout", out}, {"logs/stderr", errf}} {
		if tty && f.name == "logs/stderr" {
			continue
		}
		if err := pm.addFile(f.name, f.f); err != nil {
			return err
		}
	}
	return nil
}

// errLogBound ends the reading of logs at their bound.
var errLogBound = errors.New("the logs' bound is reached")

// logBudget passes on at most *left bytes (shared by stdout and stderr),
// then fails with errLogBound.
type logBudget struct {
	w    io.Writer
	left *int64
}

func (b logBudget) Write(p []byte) (int, error) {
	cut := int64(len(p)) > *b.left
	if cut {
		p = p[:*b.left]
	}
	n, err := b.w.Write(p)
	*b.left -= int64(n)
	if err == nil && cut {
		err = errLogBound
	}
	return n, err
}

func (p *prefixed) addFile(name string, f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := p.begin(name, st.Size()); err != nil {
		return err
	}
	if _, err := io.Copy(writerFunc(p.write), io.LimitReader(f, st.Size())); err != nil {
		return err
	}
	return p.end()
}

type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
