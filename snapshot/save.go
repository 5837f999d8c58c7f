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
func saveStream(ctx context.Context, e *Engine, ref string, diffIDs []hashing.Digest, spoolDir string, w *archive.Writer, layers *layerSet, opts Options, progress func(string)) (*source.Source, error) {
	rc, err := e.c.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, e.wrap(err, "saving image "+ref)
	}
	defer rc.Close()
	want := map[hashing.Digest]bool{}
	for _, d := range diffIDs {
		want[d] = true
	}
	st := source.NewStreamStore()
	tr := tar.NewReader(ctxReader{ctx, rc})
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
		name, _ := fileindex.CleanName(h.Name)
		switch h.Typeflag {
		case tar.TypeSymlink:
			target, _ := fileindex.CleanName(path.Join(path.Dir("/"+name), h.Linkname))
			st.AddLink(name, target)
			continue
		case tar.TypeReg:
		default:
			continue
		}
		var layer hashing.Digest
		var body io.Reader = fileindex.SourceReader(tr)
		isLayer := false
		if hex, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
			if d, err := hashing.Parse(hex); err == nil && want[d] {
				layer, isLayer = d, true
			}
		} else if path.Base(name) == "layer.tar" {
			f, d, err := spool(ctx, tr, spoolDir)
			if err != nil {
				return nil, fmt.Errorf("%w: reading the save stream of %s: %v", ErrEngine, ref, err)
			}
			defer func() { f.Close(); os.Remove(f.Name()) }()
			if !want[d] {
				return nil, fmt.Errorf("%w: the save stream of %s holds a layer (%s) the image does not list", ErrDigestMismatch, ref, d)
			}
			layer, isLayer, body = d, true, f
		}
		if !isLayer {
			if h.Size > source.MaxJSON {
				return nil, fmt.Errorf("%w: the save stream of %s has an unexpected member %q of %d bytes", ErrEngine, ref, name, h.Size)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("%w: reading the save stream of %s: %v", ErrEngine, ref, err)
			}
			st.AddFile(name, b)
			continue
		}
		st.AddLayer(name, h.Size)
		if ld, ok := layers.done[layer]; ok {
			// Stored from an earlier image: check it is the same.
			hm := hashing.NewMulti(false, false)
			if _, err := io.Copy(hm, body); err != nil {
				return nil, fmt.Errorf("%w: reading the save stream of %s: %v", ErrEngine, ref, err)
			}
			if hm.SHA256() != layer || ld.layer.Size != h.Size {
				return nil, fmt.Errorf("%w: a layer of %s has digest %s, expected %s", ErrDigestMismatch, ref, hm.SHA256(), layer)
			}
			continue
		}
		if progress != nil {
			progress(fmt.Sprintf("image %s: layer %s (%d MiB), as the engine saves it", ref, layer.Short(), h.Size>>20))
		}
		ld, err := storeLayer(ctx, body, h.Size, layer, w, opts, opts.maxSparse(h.Size))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("image %s, layer %s: %w", ref, layer.Short(), err)
		}
		layers.done[layer] = ld
	}
	if !st.Exists("manifest.json") && !st.Exists("index.json") {
		return nil, fmt.Errorf("%w: the save stream of %s has neither manifest.json nor index.json", ErrEngine, ref)
	}
	src, err := source.FromStore(st, source.KindDockerEngine, ref)
	if err != nil {
		return nil, err
	}
	for _, img := range src.Images {
		for i, l := range img.Layers {
			if _, ok := layers.done[img.DiffIDs[i]]; !ok {
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
	_, err = io.CopyBuffer(io.MultiWriter(f, hm), ctxReader{ctx, r}, make([]byte, 1<<20))
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
