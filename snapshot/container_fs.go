package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
)

// A container's filesystem: the route chosen (upper directory or the
// engine's export), read, compared with its image, stored as one layer.

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

// captureContainerFS stores the container's changes layer, its config and
// manifest (the image's plus that layer), and its metadata.
func captureContainerFS(ctx context.Context, e *Engine, c *ctrCapture, img manifest.Artifact, idx map[hashing.Digest]*fileindex.Index,
	w *archive.Writer, mw *archiveMembers, req EngineRequest, s *session, progress func(string)) (descriptor, error) {
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
	ld, err := captureFileLayer(ctx, lf.path(), "changes", size, sum, w, req.Options)
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
