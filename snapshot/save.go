package snapshot

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/tmpfile"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/source"
)

// An image from the engine is captured as the engine's save stream
// arrives. A layer's tar header must name it (blobs/sha256/<diff_id>)
// before its bytes go into the archive: in the Docker 25+ (OCI) layout
// the stream names each layer by its digest, so it goes straight in; the
// legacy layout names layers by v1 IDs, so each is first spooled to a
// temporary file beside the output while it is hashed, then stored under
// its digest. Either way every layer is checked against its diff_id.

// saveStream captures one image from the engine's save stream into w.
// diffIDs are the image's layers as the engine inspects them. It returns a
// Source over the stream's metadata whose layers are all in layers.
func saveStream(ctx context.Context, rt engine.Runtime, ref string, diffIDs []hashing.Digest, spoolDir string, w *archive.Writer, layers *layerSet, opts Options, progress func(string)) (*source.Source, error) {
	rc, err := rt.SaveImage(ctx, ref)
	if err != nil {
		return nil, engine.Wrap(err, "saving image "+ref)
	}
	defer rc.Close()
	sv := &saveReader{ctx: ctx, ref: ref, want: map[hashing.Digest]bool{}, spoolDir: spoolDir, w: w, layers: layers, opts: opts, progress: progress,
		st: source.NewStreamStore(), found: map[hashing.Digest]*foundLayer{}}
	for _, d := range diffIDs {
		sv.want[d] = true
	}
	if err := sv.findings(rt, diffIDs); err != nil {
		return nil, err
	}
	tr := tar.NewReader(engine.ContextReader(ctx, rc))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: reading the save stream of %s: %v", ErrEngine, ref, err)
		}
		if err := sv.member(tr, h); err != nil {
			return nil, err
		}
	}
	return sv.source()
}

// saveReader is one reading of a save stream.
type saveReader struct {
	ctx      context.Context
	ref      string
	want     map[hashing.Digest]bool // the image's diff_ids
	st       *source.StreamStore
	spoolDir string
	w        *archive.Writer
	layers   *layerSet
	opts     Options
	progress func(string)
	// found are the layers the runtime found changed in its own store
	// (engine.LayerChecker), by the digest of the layer as found: the
	// stream holds them as found, each stored under its own digest and
	// recorded for its diff_id with the paths that differ.
	found map[hashing.Digest]*foundLayer
}

// foundLayer is a layer of the stream that is not what its image's config
// says: the runtime's own files changed after the pull.
type foundLayer struct {
	diffID  hashing.Digest
	finding engine.LayerFinding
}

// maxFindingPaths bounds the anomalies one changed layer adds: past it,
// one more says how many paths were left out of the record.
const maxFindingPaths = 10000

// findings asks a runtime that rebuilds its layers from its files which
// of the image's layers it found changed.
func (sv *saveReader) findings(rt engine.Runtime, diffIDs []hashing.Digest) error {
	lc, ok := rt.(engine.LayerChecker)
	if !ok {
		return nil
	}
	for _, f := range lc.LayerFindings(sv.ref) {
		diffID, err := hashing.Parse(f.DiffID)
		if err != nil || !sv.want[diffID] {
			return fmt.Errorf("%w: a layer finding of %s names layer %q, not one of the image's", ErrEngine, sv.ref, f.DiffID)
		}
		found, err := hashing.Parse(f.Found)
		if err != nil || found == diffID {
			return fmt.Errorf("%w: a layer finding of %s gives layer %s the digest %q as found", ErrEngine, sv.ref, f.DiffID, f.Found)
		}
		sv.want[found] = true
		sv.found[found] = &foundLayer{diffID: diffID, finding: f}
	}
	return nil
}

// member reads one member of the stream: a layer goes into the archive
// (spooled first when the stream does not name it by its digest), a
// symlink or a small file is kept in memory.
func (sv *saveReader) member(tr *tar.Reader, h *tar.Header) error {
	name, _ := fileindex.CleanName(h.Name)
	switch h.Typeflag {
	case tar.TypeSymlink:
		target, _ := fileindex.CleanName(path.Join(path.Dir("/"+name), h.Linkname))
		sv.st.AddLink(name, target)
		return nil
	case tar.TypeReg:
	default:
		return nil
	}
	var layer hashing.Digest
	var body io.Reader = fileindex.SourceReader(tr)
	isLayer := false
	if hex, ok := digestNamed(name); ok {
		if d, err := hashing.Parse(hex); err == nil && sv.want[d] {
			layer, isLayer = d, true
		}
	} else if path.Base(name) == "layer.tar" {
		f, d, err := spool(sv.ctx, tr, sv.spoolDir)
		if err != nil {
			return fmt.Errorf("%w: reading the save stream of %s: %v", ErrEngine, sv.ref, err)
		}
		defer func() { f.Close(); os.Remove(f.Name()) }()
		if !sv.want[d] {
			return fmt.Errorf("%w: the save stream of %s holds a layer (%s) the image does not list", ErrDigestMismatch, sv.ref, d)
		}
		layer, isLayer, body = d, true, f
	}
	if !isLayer {
		if h.Size > source.MaxJSON {
			return fmt.Errorf("%w: the save stream of %s has an unexpected member %q of %d bytes", ErrEngine, sv.ref, name, h.Size)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("%w: reading the save stream of %s: %v", ErrEngine, sv.ref, err)
		}
		sv.st.AddFile(name, b)
		return nil
	}
	sv.st.AddLayer(name, h.Size)
	return sv.layer(body, h.Size, layer)
}

// digestNamed is the digest a member's name gives a layer: the OCI
// layout's blobs/sha256/<hex>, or <hex>.tar at the top, as Podman's save
// stream (containers/image's docker-archive) names each layer by its
// diff_id, its legacy <id>/layer.tar a link to it.
func digestNamed(name string) (string, bool) {
	if hex, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
		return hex, true
	}
	if hex, ok := strings.CutSuffix(name, ".tar"); ok && !strings.Contains(hex, "/") && len(hex) == 64 {
		return hex, true
	}
	return "", false
}

// layer stores a layer of the stream, or checks it is the one stored
// from an earlier image.
func (sv *saveReader) layer(body io.Reader, size int64, layer hashing.Digest) error {
	// Layers are kept by the digest of their bytes: a layer found changed
	// is not its diff_id's (one image may hold a diff_id twice, one copy
	// changed and one not).
	key, fl := layer, sv.found[layer]
	if ld, ok := sv.layers.done[key]; ok {
		hm := hashing.NewMulti(false, false)
		if _, err := io.Copy(hm, body); err != nil {
			return fmt.Errorf("%w: reading the save stream of %s: %v", ErrEngine, sv.ref, err)
		}
		if hm.SHA256() != ld.layer.Digest || ld.layer.Size != size {
			return fmt.Errorf("%w: a layer of %s has digest %s, expected %s", ErrDigestMismatch, sv.ref, hm.SHA256(), layer)
		}
		return nil
	}
	if sv.progress != nil {
		sv.progress(fmt.Sprintf("image %s: layer %s (%d MiB), as the engine saves it", sv.ref, layer.Short(), size>>20))
	}
	ld, err := storeLayer(sv.ctx, body, size, layer, sv.w, sv.opts, sv.opts.maxSparse(size))
	if err != nil {
		if sv.ctx.Err() != nil {
			return sv.ctx.Err()
		}
		return fmt.Errorf("image %s, layer %s: %w", sv.ref, layer.Short(), err)
	}
	if fl != nil {
		ld.layer.DiffID = fl.diffID
		ld.anomalies = append(ld.anomalies, modifiedOnDisk(fl, layer)...)
	}
	sv.layers.done[key] = ld
	return nil
}

// modifiedOnDisk is the record of a layer found changed in the runtime's
// store: one anomaly per path that differs (bounded), each saying what.
func modifiedOnDisk(fl *foundLayer, found hashing.Digest) []manifest.Anomaly {
	head := fmt.Sprintf("changed on disk after the pull: the layer (diff_id %s) is captured as found (%s)", fl.diffID, found)
	var out []manifest.Anomaly
	for i, p := range fl.finding.Paths {
		if i == maxFindingPaths {
			out = append(out, manifest.Anomaly{Kind: "layer-modified-on-disk",
				Detail: fmt.Sprintf("%s; %d more paths differ, not listed", head, len(fl.finding.Paths)-i)})
			break
		}
		d := head + ": " + p.What
		if p.Detail != "" {
			d += " (" + p.Detail + ")"
		}
		out = append(out, manifest.Anomaly{Kind: "layer-modified-on-disk", Path: p.Path, Detail: d})
	}
	if len(out) == 0 {
		out = append(out, manifest.Anomaly{Kind: "layer-modified-on-disk", Detail: head + ": no path named (the layer's bytes differ)"})
	}
	return out
}

// source reads the stream's metadata (docker-save or OCI) and checks
// that every layer it names was in the stream.
func (sv *saveReader) source() (*source.Source, error) {
	st, ref := sv.st, sv.ref
	if !st.Exists("manifest.json") && !st.Exists("index.json") {
		return nil, fmt.Errorf("%w: the save stream of %s has neither manifest.json nor index.json", ErrEngine, ref)
	}
	src, err := source.FromStore(st, source.KindDockerEngine, ref)
	if err != nil {
		return nil, err
	}
	for _, img := range src.Images {
		for i, l := range img.Layers {
			if _, ok := sv.layers.lookup(img.DiffIDs[i], l.Digest); !ok {
				return nil, fmt.Errorf("%w: layer %d of %s (%s) was not in the save stream as expected", ErrEngine, i, ref, l.Name)
			}
		}
	}
	return src, nil
}

// spool copies a stream member to a temporary file in dir while hashing
// it, and rewinds the file.
func spool(ctx context.Context, r io.Reader, dir string) (*os.File, hashing.Digest, error) {
	f, err := tmpfile.TempFile(dir, ".amber-layer-*.tar") // no name: nothing left by kill -9
	if err != nil {
		return nil, hashing.Digest{}, err
	}
	hm := hashing.NewMulti(false, false)
	_, err = io.CopyBuffer(io.MultiWriter(f, hm), engine.ContextReader(ctx, r), make([]byte, 1<<20))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, hashing.Digest{}, err
	}
	return f, hm.SHA256(), nil
}
