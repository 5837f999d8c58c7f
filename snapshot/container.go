package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/source"
)

// DefaultMaxLogBytes is far more than a container's logs hold where the
// engine rotates them, and bounds an engine whose logs never end.
const DefaultMaxLogBytes = 1 << 30

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
	// MaxProcessMemory bounds the bytes of memory taken from one process;
	// mappings past it are recorded with no bytes. 0 means
	// procmem.DefaultMaxBytes (64 GiB).
	MaxProcessMemory uint64
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
	// Pods are Kubernetes pods whose containers are among Containers:
	// each is recorded as a pod artifact (pods/<namespace>_<name>/).
	Pods []PodRecord
	// DiskImages, when set, opens the runtime's image store from its
	// files on this host (a local Docker engine's data root, read-only):
	// images are rebuilt from them and checked, layer by layer, rather
	// than saved through the engine. The engine's save refuses an image
	// whose layer files changed on disk ("file integrity checksum
	// failed") and leaves out a file added to a layer's directory; read
	// from the files, such a layer is captured as found and every path
	// that differs is recorded (layer-modified-on-disk). When they cannot
	// be opened, the engine saves the images, as without it.
	DiskImages func() (engine.Runtime, error)
	Options
	WriteProgress func(int64)
}

type ctrCapture struct {
	ref      string
	name     string
	ci       *engine.Container
	imageRef string // what to save: the name it was created from, or its ID
	art      manifest.Artifact
	paused   bool
	cfg      []byte // its image's config, as saved
	volumes  []*manifest.Artifact
	fs       *containerFS
}

// engineCapture is a capture from a container runtime: the session, and
// what the runtime was asked and answered.
type engineCapture struct {
	*session
	ctx      context.Context
	rt       engine.Runtime
	req      EngineRequest
	info     manifest.Engine
	progress func(string)
	ctrs     []*ctrCapture
	// the images to save (each once, by the first name met) and their
	// IDs when the capture began
	saveRefs []string
	imageIDs map[string]string // ref -> ID
	mw       *archiveMembers
	// what the images' capture left: the layers' indexes and sources
	indexes map[hashing.Digest]*fileindex.Index
	srcs    []*source.Source
	// volumes captured so far: volume name -> artifact
	volumes map[string]*manifest.Artifact
	// disk is the engine's image store read from its files
	// (EngineRequest.DiskImages), opened at the first image
	disk      engine.Runtime
	diskTried bool
}

// CaptureEngine captures containers and images from a container runtime:
// for each container its processes' memory first (order of volatility),
// then its image, its filesystem changes, inspect record, change lists and
// logs. On any error, and on cancellation, nothing is left at the output
// name, and every container paused by amber is unpaused. rt is the
// runtime, dialled by the caller (cmd chooses which).
func CaptureEngine(ctx context.Context, rt engine.Runtime, req EngineRequest) (res *Result, err error) {
	// A container's change list is computed against its image's indexes.
	req.Options.keepIndexes = len(req.Containers) > 0
	if req.Route == "" {
		req.Route = RouteAuto
	}
	if len(req.Images)+len(req.Containers) == 0 {
		return nil, fmt.Errorf("nothing to capture")
	}
	e := &engineCapture{session: newSession(req.Tool, req.Case, req.CommandLine, nil, nil), ctx: ctx, rt: rt, req: req, info: rt.Info(),
		progress: req.Progress, imageIDs: map[string]string{}, volumes: map[string]*manifest.Artifact{}}
	if e.progress == nil {
		e.progress = func(string) {}
	}
	info := e.info
	e.m.Acquisition.Docker = &info
	// Resolve everything before touching anything.
	if err := e.resolve(); err != nil {
		return nil, err
	}
	extra := map[string]string{"tool": req.Tool.Name + " " + req.Tool.Version,
		"engine": info.Host, "engine_id": info.ID, "engine_name": info.Name, "engine_version": info.Version, "api_version": info.APIVersion}
	// A runtime other than Docker's says which, and its namespace.
	if info.Runtime != "" {
		extra["runtime"] = info.Runtime
	}
	if info.Namespace != "" {
		extra["namespace"] = info.Namespace
	}
	for i, p := range req.Pods {
		extra[fmt.Sprintf("pod_%d", i)] = p.Namespace + "/" + p.Name + " sandbox " + p.SandboxID
	}
	if err := e.begin(req.CommandLine, extra, archive.WriterOptions{MD5: req.MD5, SHA1: req.SHA1, Progress: req.WriteProgress, Level: req.Level, Perm: req.Perm, Encoder: req.Encoder}, req.Output, req.Stream); err != nil {
		return nil, err
	}
	defer e.abort()
	defer func() {
		if e.disk != nil {
			e.disk.Close()
		}
	}()
	// Pause, and always unpause: also on errors and cancellation.
	defer func() {
		if uerr := e.unpause(); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	defer func() {
		for _, c := range e.ctrs {
			if c.fs != nil {
				c.fs.remove()
			}
		}
	}()
	if err := e.pause(); err != nil {
		return nil, err
	}
	e.mw = &archiveMembers{w: e.w}
	// Memory first: it is the most volatile.
	for _, c := range e.ctrs {
		if err := e.memory(c); err != nil {
			return nil, err
		}
	}
	// The containers' own filesystems next, where they can be read
	// directly: more volatile than their images.
	for _, c := range e.ctrs {
		if err := e.readEarly(c); err != nil {
			return nil, err
		}
	}
	byID, err := e.images()
	if err != nil {
		return nil, err
	}
	// Each container's filesystem, metadata and logs.
	for _, c := range e.ctrs {
		if err := e.container(c, byID); err != nil {
			return nil, err
		}
	}
	// byID pointed into s.m.Artifacts; containers are appended after.
	for _, c := range e.ctrs {
		e.m.Artifacts = append(e.m.Artifacts, c.art)
		for _, v := range c.volumes {
			e.m.Artifacts = append(e.m.Artifacts, *v)
		}
	}
	for _, p := range req.Pods {
		a, err := e.pod(p)
		if err != nil {
			return nil, err
		}
		e.m.Artifacts = append(e.m.Artifacts, a)
	}
	if err := e.unpause(); err != nil {
		return nil, err
	}
	return e.seal(ctx, nil)
}

// resolve inspects every container and image asked for, and records them
// as the acquisition's sources.
func (e *engineCapture) resolve() error {
	acq := &e.m.Acquisition
	names := map[string]bool{}
	for _, ref := range e.req.Containers {
		ci, err := inspect(e.ctx, e.rt, ref)
		if err != nil {
			return err
		}
		c := &ctrCapture{ref: ref, ci: ci}
		c.name = manifest.PathSafe(strings.TrimPrefix(ci.Name, "/"))
		if c.name == "" {
			c.name = engine.ShortID(ci.ID)
		}
		if names[c.name] {
			return fmt.Errorf("container %s named twice", ref)
		}
		names[c.name] = true
		if ci.Driver == "" && e.req.Route == RouteUpperdir {
			return fmt.Errorf("container %s: the engine reports no storage driver", ref)
		}
		c.imageRef = ci.Image
		if ci.ImageRef != "" {
			if ii, err := e.rt.Image(e.ctx, ci.ImageRef); err == nil && ii.ID == ci.Image {
				c.imageRef = ci.ImageRef
			}
		}
		e.ctrs = append(e.ctrs, c)
		acq.Sources = append(acq.Sources, manifest.Source{Kind: runtimeName(e.info) + "-container", Path: e.info.Host + " " + c.name + " " + ci.ID})
	}
	for _, ref := range e.req.Images {
		ii, err := e.rt.Image(e.ctx, ref)
		if err != nil {
			return engine.Wrap(err, "image "+ref)
		}
		e.addRef(ref, ii.ID)
		acq.Sources = append(acq.Sources, manifest.Source{Kind: "docker-image", Path: e.info.Host + " " + ref + " " + ii.ID})
	}
	for _, c := range e.ctrs {
		e.addRef(c.imageRef, c.ci.Image)
	}
	return nil
}

// addRef adds an image to save, unless it is saved already under another
// name.
func (e *engineCapture) addRef(ref, id string) {
	for _, known := range e.imageIDs {
		if known == id {
			return
		}
	}
	e.saveRefs = append(e.saveRefs, ref)
	e.imageIDs[ref] = id
}

// pause freezes each running container when asked. A container is marked
// paused before the runtime is asked, and asked without the capture's
// context: a signal arriving while the runtime pauses it must still find
// it unpaused afterwards.
func (e *engineCapture) pause() error {
	if !e.req.Pause {
		return nil
	}
	for _, c := range e.ctrs {
		if !c.ci.Running || c.ci.Paused {
			continue
		}
		c.paused = true
		pctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), 60*time.Second)
		err := e.rt.Pause(pctx, c.ci.ID)
		cancel()
		if err != nil {
			return engine.Wrap(err, "pausing container "+c.name)
		}
		if err := e.ev("paused", map[string]string{"container": c.name, "id": c.ci.ID}); err != nil {
			return err
		}
		if err := e.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// unpause thaws every container amber paused, without the capture's
// context (it runs on cancellation too), and returns the first failure.
func (e *engineCapture) unpause() error {
	var first error
	for _, c := range e.ctrs {
		if !c.paused {
			continue
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), 60*time.Second)
		err := e.rt.Unpause(uctx, c.ci.ID)
		cancel()
		if errors.Is(err, engine.ErrNotPaused) {
			c.paused = false // the pause never happened
			continue
		}
		if err != nil {
			if first == nil {
				first = engine.Wrap(err, "unpausing container "+c.name+" (run: "+unpauseHint(e.info, c.ci.ID)+")")
			}
			continue
		}
		c.paused = false
		if err := e.ev("unpaused", map[string]string{"container": c.name, "id": c.ci.ID}); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// memory starts the container's record and takes its processes' memory
// where it can.
func (e *engineCapture) memory(c *ctrCapture) error {
	cc := &manifest.Container{ID: c.ci.ID, ImageRef: c.imageRef, Driver: c.ci.Driver, State: c.ci.State}
	cc.Paused = c.paused
	c.art.Container = cc
	switch {
	case e.req.NoMemory:
		cc.MemorySkipped = "not asked for (--no-memory)"
	case e.info.Offline != nil:
		cc.MemorySkipped = "read offline from a disk (" + e.info.Offline.Root + "): no process to read"
	case !c.ci.Running || c.ci.Pid <= 0:
		cc.MemorySkipped = "the container is not running"
	case !e.info.Local:
		cc.MemorySkipped = "the engine is not on this host (" + e.info.Host + "); memory can only be taken locally"
	default:
		return captureMemory(e.ctx, c, e.mw, e.session, e.req.MaxProcessMemory, e.progress)
	}
	return nil
}

// images captures each image as the runtime's save stream arrives;
// layers shared between images are stored once. It returns the image
// artifacts by ID.
func (e *engineCapture) images() (map[string]*manifest.Artifact, error) {
	ls := newLayerSet()
	e.indexes = map[hashing.Digest]*fileindex.Index{}
	for _, ref := range e.saveRefs {
		src, err := e.saveImage(ref, ls)
		if err != nil {
			return nil, err
		}
		e.srcs = append(e.srcs, src)
		c, err := ls.capture(e.ctx, src, e.w, e.req.Options)
		if err != nil {
			return nil, fmt.Errorf("capturing image %s from the engine: %w", ref, err)
		}
		err = e.add(c, func(a *manifest.Artifact) error {
			for {
				if _, dup := e.m.Artifact(a.Kind, a.Name); !dup {
					return nil
				}
				a.Name += "_" + a.ImageID.Short()
			}
		})
		if err != nil {
			return nil, err
		}
		for k, v := range c.Indexes {
			e.indexes[k] = v
		}
	}
	byID := map[string]*manifest.Artifact{}
	for i := range e.m.Artifacts {
		a := &e.m.Artifacts[i]
		byID[a.ImageID.String()] = a
	}
	for ref, id := range e.imageIDs {
		if byID[id] == nil {
			return nil, fmt.Errorf("%w: the engine's save of %s does not hold image %s", ErrEngine, ref, id)
		}
	}
	return byID, nil
}

// saveImage checks that ref is still the image it was when the capture
// began and stores its layers from the runtime's save stream.
func (e *engineCapture) saveImage(ref string, ls *layerSet) (*source.Source, error) {
	ii, err := e.rt.Image(e.ctx, ref)
	if err != nil {
		return nil, engine.Wrap(err, "image "+ref)
	}
	if ii.ID != e.imageIDs[ref] {
		return nil, fmt.Errorf("%w: %s is now image %s, not %s as when the capture began", ErrEngine, ref, ii.ID, e.imageIDs[ref])
	}
	var diffIDs []hashing.Digest
	for _, l := range ii.DiffIDs {
		d, err := hashing.Parse(l)
		if err != nil {
			return nil, fmt.Errorf("%w: image %s: layer %q", ErrEngine, ref, l)
		}
		diffIDs = append(diffIDs, d)
	}
	disk, err := e.diskImages()
	if err != nil {
		return nil, err
	}
	if disk != nil {
		// The files read must be this engine's: an engine reached through
		// a socket of this host may keep its images elsewhere (Docker in
		// Docker, a VM's socket forwarded). The engine's own image ID
		// decides.
		if di, err := disk.Image(e.ctx, ref); err != nil || di.ID != ii.ID {
			why := fmt.Sprintf("they hold image %s as %v", ref, err)
			if err == nil {
				why = fmt.Sprintf("they hold %s as image %s, the engine as %s", ref, di.ID, ii.ID)
			}
			e.progress(fmt.Sprintf("image %s: saving from the engine (the engine's files are not read: %s)", ref, why))
			if err := e.ev("image-read", map[string]string{"image": ref, "id": ii.ID, "from": e.info.Host, "how": "saved through the engine: the files at " + disk.Info().Host + " do not match: " + why}); err != nil {
				return nil, err
			}
			return saveStream(e.ctx, e.rt, ref, diffIDs, filepath.Dir(e.req.Output), e.w, ls, e.req.Options, e.progress)
		}
		e.progress(fmt.Sprintf("image %s: rebuilding its layers from %s", ref, disk.Info().Host))
		src, err := saveStream(e.ctx, disk, ref, diffIDs, filepath.Dir(e.req.Output), e.w, ls, e.req.Options, e.progress)
		if err != nil {
			return nil, fmt.Errorf("image %s, read from the engine's files: %w", ref, err)
		}
		return src, e.ev("image-read", map[string]string{"image": ref, "id": ii.ID, "from": disk.Info().Host,
			"how": "each layer rebuilt from the engine's files with its tar-split record and checked against its diff_id"})
	}
	e.progress(fmt.Sprintf("image %s: saving from the engine", ref))
	return saveStream(e.ctx, e.rt, ref, diffIDs, filepath.Dir(e.req.Output), e.w, ls, e.req.Options, e.progress)
}

// diskImages is the engine's image store read from its files, when the
// request allows it and they can be opened (once; nil otherwise, the
// reason in the custody log): the images are then rebuilt from them.
func (e *engineCapture) diskImages() (engine.Runtime, error) {
	if e.req.DiskImages == nil || e.diskTried {
		return e.disk, nil
	}
	e.diskTried = true
	disk, err := e.req.DiskImages()
	if err != nil {
		e.progress(fmt.Sprintf("the engine's files cannot be read (%v): images are saved through the engine", err))
		return nil, e.ev("image-read", map[string]string{"from": e.info.Host, "how": "saved through the engine: its files cannot be read: " + err.Error()})
	}
	e.disk = disk
	return disk, nil
}

// container stores one container: its filesystem, metadata and logs.
func (e *engineCapture) container(c *ctrCapture, byID map[string]*manifest.Artifact) error {
	for _, src := range e.srcs {
		for _, im := range src.Images {
			if im.ConfigDigest.String() == c.ci.Image {
				c.cfg = im.Config
			}
		}
	}
	desc, err := e.captureContainerFS(c, *byID[c.ci.Image])
	if err != nil {
		if errors.Is(err, ErrNoSuchObject) || errors.Is(err, os.ErrNotExist) {
			// It was there when the capture began.
			return fmt.Errorf("%w: container %s: %w", ErrContainerGone, c.name, err)
		}
		return fmt.Errorf("container %s: %w", c.name, err)
	}
	e.index = append(e.index, desc)
	return nil
}

// runtimeName is the runtime the acquisition record names: Docker's engine
// unless the runtime says otherwise.
func runtimeName(info manifest.Engine) string {
	if info.Runtime != "" {
		return info.Runtime
	}
	return "docker"
}

// unpauseHint is the command that thaws a container its runtime left
// frozen, for the examiner to run when amber could not.
func unpauseHint(info manifest.Engine, id string) string {
	switch runtimeName(info) {
	case "containerd":
		return "ctr -n " + info.Namespace + " tasks resume " + id
	case "podman":
		return "podman unpause " + engine.ShortID(id)
	}
	return "docker unpause " + engine.ShortID(id)
}
