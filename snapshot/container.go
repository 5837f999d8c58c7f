package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/source"
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
	w, err := archive.Create(req.Output, archive.WriterOptions{MD5: req.MD5, SHA1: req.SHA1, Progress: req.WriteProgress, Level: req.Level, Perm: req.Perm, Encoder: req.Encoder})
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
			if err := captureMemory(ctx, c, mw, s, req.MaxProcessMemory, progress); err != nil {
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
	capd := &Captured{Indexes: map[hashing.Digest]*fileindex.Index{}}
	var srcs []*source.Source
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
