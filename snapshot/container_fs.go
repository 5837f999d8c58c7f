package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/layers"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// A container's filesystem: the route chosen (upper directory or the
// engine's export), read, compared with its image, stored as one layer.

// captureContainerFS stores the container's changes layer, its config and
// manifest (the image's plus that layer), and its metadata.
func (e *engineCapture) captureContainerFS(c *ctrCapture, img manifest.Artifact) (descriptor, error) {
	ctx := e.ctx
	cc := c.art.Container
	cc.Image = img.Name
	pristine := &layers.Stack{}
	for i, l := range img.Layers {
		if l.Missing {
			continue // not in the source: the merged views lack its files (layer-not-present)
		}
		ix := e.indexes[l.Digest]
		if ix == nil {
			return descriptor{}, fmt.Errorf("image %s: the index of layer %d (%s) was not kept", img.Name, i, l.Digest)
		}
		pristine.Indexes = append(pristine.Indexes, ix)
	}
	fs := c.fs
	if fs.lf == nil {
		if err := fs.read(ctx, e.rt, c, filepath.Dir(e.req.Output), pristine, e.progress); err != nil {
			return descriptor{}, err
		}
	}
	cc.Route = fs.route.Name()
	ld, err := e.storeChanges(c, len(img.Layers))
	if err != nil {
		return descriptor{}, err
	}
	// The content-aware change list, and the engine's.
	changes, err := layers.ContainerChanges(pristine, ld.index)
	if err != nil {
		return descriptor{}, fmt.Errorf("comparing with the image: %w", err)
	}
	pm := &prefixed{archiveMembers: e.mw, prefix: ContainerPrefix(c.name), c: cc}
	e.progress(fmt.Sprintf("container %s: the engine's change list", c.name))
	ed := <-fs.diff
	fs.diff = nil
	// A runtime that keeps no change list (Podman's storage read
	// directly) leaves the content comparison alone, and says so.
	var none *engine.Unavailable
	noList := errors.As(ed.err, &none)
	if ed.err != nil && !noList {
		return descriptor{}, engine.Wrap(ed.err, "asking the engine for the change list")
	}
	eng := e.compareChanges(c, len(img.Layers), changes, ed.changes, !noList)
	if err := pm.add("changes.txt", layers.FormatChanges(changes)); err != nil {
		return descriptor{}, err
	}
	if noList {
		e.m.Anomalies = append(e.m.Anomalies, manifest.Anomaly{Artifact: c.name, Layer: len(img.Layers), Kind: "engine-change-list",
			Detail: "no engine-changes.txt: " + none.Why + "; changes.txt is amber's content comparison alone"})
	} else if err := pm.add("engine-changes.txt", layers.FormatChanges(eng)); err != nil {
		return descriptor{}, err
	}
	if err := pm.add("inspect.json", c.ci.Raw); err != nil {
		return descriptor{}, err
	}
	if err := e.mounts(c); err != nil {
		return descriptor{}, err
	}
	e.progress(fmt.Sprintf("container %s: logs", c.name))
	maxLog := e.req.MaxLogBytes
	if maxLog <= 0 {
		maxLog = DefaultMaxLogBytes
	}
	if err := captureLogs(ctx, e.rt, c, pm, filepath.Dir(e.req.Output), maxLog, e.session); err != nil {
		return descriptor{}, err
	}
	return e.containerManifest(c, img, ld)
}

// storeChanges stores the container's changes layer, read by its route,
// and records the anomalies of both as its layer's (the one above the
// image's layers).
func (e *engineCapture) storeChanges(c *ctrCapture, layer int) (*layerDone, error) {
	lf := c.fs.lf
	size, sum, err := lf.finish()
	if err != nil {
		return nil, err
	}
	ld, err := captureFileLayer(e.ctx, lf.path(), "changes", size, sum, e.w, e.req.Options)
	if err != nil {
		return nil, fmt.Errorf("storing the changes layer: %w", err)
	}
	for _, a := range append(c.fs.anomalies, ld.anomalies...) {
		a.Artifact = c.name
		a.Layer = layer
		e.m.Anomalies = append(e.m.Anomalies, a)
	}
	return ld, nil
}

// compareChanges counts the container's changes, records every path on
// which the engine's change list disagrees with the content comparison
// (when the engine has one: hasList), and returns the engine's list
// sorted.
func (e *engineCapture) compareChanges(c *ctrCapture, layer int, changes []layers.Change, engineChanges []engine.Change, hasList bool) []layers.Change {
	cc := c.art.Container
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
		theirs[ch.Path] = ch.Kind
		eng = append(eng, layers.Change{Kind: ch.Kind, Path: ch.Path})
	}
	sort.Slice(eng, func(i, j int) bool { return eng[i].Path < eng[j].Path })
	if !hasList {
		return eng
	}
	for _, p := range unionKeys(ours, theirs) {
		o, ok := ours[p]
		t, tok := theirs[p]
		detail := ""
		switch {
		case ok && tok && o.Kind == t:
			continue
		case ok && !tok && engineMade[p]:
			continue // the engine's change list leaves out its own init layer
		case ok && !tok:
			detail = fmt.Sprintf("content comparison: %c (%s); the engine's change list does not list it", o.Kind, strings.Join(o.What, ", "))
		case !ok && tok:
			detail = fmt.Sprintf("the engine lists %c; content comparison finds no change", t)
		default:
			detail = fmt.Sprintf("the engine lists %c; content comparison: %c (%s)", t, o.Kind, strings.Join(o.What, ", "))
		}
		e.m.Anomalies = append(e.m.Anomalies, manifest.Anomaly{Artifact: c.name, Layer: layer, Path: p, Kind: "engine-change-list", Detail: detail})
		cc.Changes.Disagree++
	}
	return eng
}

// mounts records the container's mounts and, when asked, captures its
// named volumes: read directly only where the runtime keeps volumes, bind
// mounts never.
func (e *engineCapture) mounts(c *ctrCapture) error {
	cc := c.art.Container
	for _, m := range c.ci.Mounts {
		mt := manifest.Mount{Type: m.Type, Name: m.Name, Source: m.Source, Destination: m.Destination, RW: m.RW}
		switch {
		case m.Type != "volume":
			mt.Skipped = "a " + m.Type + " mount of a host path: recorded, never walked"
		case !e.req.Volumes:
			mt.Skipped = "volume contents not asked for (--volumes)"
		default:
			source, refused := m.Source, error(nil)
			if e.info.Offline != nil {
				// A dead host's path: only the runtime, which reads
				// inside the host's root, knows where it lies here.
				// The examiner's own file of that name is never read.
				source, refused = e.rt.VolumeDir(m.Name, source)
			} else if e.info.Local && source != "" {
				if _, err := os.Lstat(source); err == nil {
					source, refused = e.rt.VolumeDir(m.Name, source)
				}
			}
			var un *engine.Unavailable
			if errors.As(refused, &un) {
				mt.Skipped = "not read: " + un.Why
				break
			}
			if refused != nil && !errors.Is(refused, ErrEngineClaim) {
				// Not a claim refused: the volume cannot be read
				// (a dead host's volume directory missing).
				mt.Skipped = "not read: " + refused.Error()
				e.m.Anomalies = append(e.m.Anomalies, manifest.Anomaly{Artifact: c.name, Path: m.Destination, Kind: "volume-not-read", Detail: refused.Error()})
				break
			}
			if refused != nil {
				mt.Skipped = "not read: " + refused.Error()
				e.m.Anomalies = append(e.m.Anomalies, manifest.Anomaly{Artifact: c.name, Path: m.Destination, Kind: "engine-claims-volume-outside-root", Detail: refused.Error()})
				break
			}
			va, err := e.captureVolume(c, m.Name, source, m.Destination)
			if err != nil {
				return fmt.Errorf("volume %s: %w", m.Name, err)
			}
			mt.Captured = "volumes/" + va.Name
		}
		cc.Mounts = append(cc.Mounts, mt)
	}
	return nil
}

// containerManifest stores the container's OCI config and manifest (the
// image's, plus the changes layer), completes its artifact and records
// the captured event.
func (e *engineCapture) containerManifest(c *ctrCapture, img manifest.Artifact, ld *layerDone) (descriptor, error) {
	w, cc := e.w, c.art.Container
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
	d := map[string]string{"artifact": "containers/" + c.name, "id": c.ci.ID, "route": cc.Route, "image": "images/" + img.Name,
		"changes_layer": ld.layer.Digest.String(), "manifest": md.String(), "merkle_root": a.MerkleRoot.String(),
		"added": fmt.Sprint(cc.Changes.Added), "changed": fmt.Sprint(cc.Changes.Changed), "deleted": fmt.Sprint(cc.Changes.Deleted),
		"engine_disagrees": fmt.Sprint(cc.Changes.Disagree)}
	if err := e.ev("captured", d); err != nil {
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
