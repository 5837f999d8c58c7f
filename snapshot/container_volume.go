package snapshot

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// A named volume's contents, stored as one layer.

// captureVolume stores a named volume's contents as an artifact of one
// layer: read directly (O_NOATIME) when the engine is local, else through
// the engine from the container's mount point.
func (e *engineCapture) captureVolume(c *ctrCapture, name, source, dest string) (*manifest.Artifact, error) {
	if a, ok := e.volumes[name]; ok {
		return a, nil
	}
	e.progress(fmt.Sprintf("volume %s", name))
	lf, err := newLayerFile(filepath.Dir(e.req.Output))
	if err != nil {
		return nil, err
	}
	defer lf.remove()
	var anomalies []manifest.Anomaly
	var r route = copyRoute{rt: e.rt, id: c.ci.ID, path: dest}
	if _, serr := os.Stat(source); e.info.Local && source != "" && serr == nil {
		r = dirRoute{name: "direct", dirs: []string{source}}
	}
	if err := r.read(e.ctx, nil, lf, &anomalies); err != nil {
		return nil, err
	}
	size, sum, err := lf.finish()
	if err != nil {
		return nil, err
	}
	ld, err := captureFileLayer(e.ctx, lf.path(), "volume", size, sum, e.w, e.req.Options)
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
		e.m.Anomalies = append(e.m.Anomalies, an)
	}
	e.volumes[name] = a
	c.volumes = append(c.volumes, a)
	if err := e.ev("captured", map[string]string{"artifact": "volumes/" + vname, "volume": name, "read": r.Name(), "source": source,
		"layer": ld.layer.Digest.String(), "merkle_root": a.MerkleRoot.String(), "files": fmt.Sprint(a.Files)}); err != nil {
		return nil, err
	}
	return a, nil
}

// copyFromContainer writes the tree at path in the container, as the
// engine gives it (docker cp), as a layer rooted at that path.
func copyFromContainer(ctx context.Context, rt engine.Runtime, id, p string, lf *layerFile) error {
	rc, err := rt.CopyFrom(ctx, id, p)
	if err != nil {
		return engine.Wrap(err, "reading "+p+" of container "+id)
	}
	defer rc.Close()
	tr := tar.NewReader(engine.ContextReader(ctx, rc))
	base := path.Base(path.Clean("/" + p))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: reading %s of container %s: %v", ErrEngine, p, id, err)
		}
		name, unsafe := fileindex.CleanName(h.Name)
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
			t, _ := fileindex.CleanName(h.Linkname)
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
