package podman

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/vbatts/tar-split/tar/storage"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// Bounds of a layer's tar-split record: it holds every tar header of the
// layer (some hundred bytes a file), base64-encoded, one JSON line per
// entry; a line is one header with its padding, or one file.
const (
	maxTarSplit     = 4 << 30
	maxTarSplitLine = 64 << 20
)

// image is an image of the storage, checked: its config and its layers
// with their diff_ids, base first.
type image struct {
	rec     *imgRecord
	config  []byte
	layers  []*layerRecord
	diffIDs []string
}

// bigDataName is the file name containers/storage gives an image's big
// data item: the key itself when it is a plain name, else "=" and its
// base64 (a digest key holds a colon).
func bigDataName(key string) string {
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return "=" + base64.StdEncoding.EncodeToString([]byte(key))
		}
	}
	return key
}

// image finds ref and checks it (see Image).
func (s *Storage) image(ref string) (*image, error) {
	rec, err := s.findImage(ref)
	if err != nil {
		return nil, engine.Wrap(err, "image "+ref)
	}
	if !fullID.MatchString(rec.ID) {
		return nil, engine.Claimf("podman's storage answers image %s with ID %q, not 64 hex digits", ref, rec.ID)
	}
	key := "sha256:" + rec.ID
	cfg, err := readFile(s.root, filepath.Join(s.driver+"-images", rec.ID, bigDataName(key)), maxConfig)
	if err != nil {
		return nil, engine.Wrap(storageFault(err, "its config"), "image "+ref)
	}
	if sum := sha256.Sum256(cfg); hex.EncodeToString(sum[:]) != rec.ID {
		return nil, engine.Claimf("podman's config of image %s hashes to sha256:%x, not to its ID", rec.ID, sum)
	}
	var c struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, engine.Claimf("podman's config of image %s is not JSON: %v", rec.ID, err)
	}
	chain, err := s.chain(rec)
	if err != nil {
		return nil, err
	}
	if len(chain) != len(c.RootFS.DiffIDs) {
		return nil, engine.Claimf("image %s: its config lists %d layers, podman's storage %d", rec.ID, len(c.RootFS.DiffIDs), len(chain))
	}
	for i, l := range chain {
		if l.DiffDigest != c.RootFS.DiffIDs[i] {
			return nil, engine.Claimf("image %s: layer %d is %s in its config, %q (layer %s) in podman's storage", rec.ID, i, c.RootFS.DiffIDs[i], l.DiffDigest, l.ID)
		}
		if h, ok := strings.CutPrefix(l.DiffDigest, "sha256:"); !ok || !fullID.MatchString(h) {
			return nil, engine.Claimf("image %s: layer %d has diff_id %q, not sha256:<64 hex digits>", rec.ID, i, l.DiffDigest)
		}
	}
	return &image{rec: rec, config: cfg, layers: chain, diffIDs: c.RootFS.DiffIDs}, nil
}

// SaveImage streams the image as docker save does: its config, a
// manifest.json, and each layer under blobs/sha256/<diff_id>, rebuilt
// byte for byte from its files in <graphroot>/overlay/<layer>/diff and the
// tar headers containers/storage kept when it unpacked the layer
// (overlay-layers/<layer>.tar-split.gz). The capture checks each layer
// against its diff_id as it stores it.
func (s *Storage) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	img, err := s.image(ref)
	if err != nil {
		return nil, err
	}
	type layer struct {
		name, dir string
		size      int64
	}
	var ls []layer
	for _, l := range img.layers {
		d, err := dir(s.root, s.driver, l.ID, "diff")
		if err != nil {
			return nil, engine.Wrap(storageFault(err, "layer "+l.ID), "image "+ref)
		}
		size, err := s.tarSplit(l.ID, func(*storage.Entry) error { return nil })
		if err != nil {
			return nil, engine.Wrap(err, "image "+ref+", layer "+l.ID)
		}
		ls = append(ls, layer{name: "blobs/sha256/" + strings.TrimPrefix(l.DiffDigest, "sha256:"), dir: d, size: size})
	}
	mf := []map[string]any{{"Config": img.rec.ID + ".json", "RepoTags": img.rec.Names, "Layers": func() []string {
		var n []string
		for _, l := range ls {
			n = append(n, l.name)
		}
		return n
	}()}}
	mb, err := json.Marshal(mf)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := func() error {
			for _, f := range []struct {
				name string
				b    []byte
			}{{img.rec.ID + ".json", img.config}, {"manifest.json", mb}} {
				if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.b)), Typeflag: tar.TypeReg}); err != nil {
					return err
				}
				if _, err := tw.Write(f.b); err != nil {
					return err
				}
			}
			for i, l := range ls {
				if err := tw.WriteHeader(&tar.Header{Name: l.name, Mode: 0o644, Size: l.size, Typeflag: tar.TypeReg}); err != nil {
					return err
				}
				if err := s.assemble(ctx, img.layers[i].ID, l.dir, tw); err != nil {
					return fmt.Errorf("layer %s: %w", img.layers[i].ID, err)
				}
			}
			return tw.Close()
		}()
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// tarSplit reads the layer's tar-split record, calling fn for each entry
// in order, and returns the size of the tar it describes.
func (s *Storage) tarSplit(layer string, fn func(*storage.Entry) error) (int64, error) {
	rel := filepath.Join(s.driver+"-layers", layer+".tar-split.gz")
	f, err := openBeneath(s.root, rel, true)
	if err != nil {
		return 0, storageFault(err, "its tar-split record (podman cannot rebuild the layer either without it)")
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return 0, engine.Claimf("%s is not gzip: %v", f.Name(), err)
	}
	sc := bufio.NewScanner(io.LimitReader(zr, maxTarSplit))
	sc.Buffer(make([]byte, 64<<10), maxTarSplitLine)
	var size int64
	for pos := 0; sc.Scan(); pos++ {
		var e storage.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return 0, engine.Claimf("%s: entry %d is not one: %v", f.Name(), pos, err)
		}
		switch {
		case e.Position != pos:
			return 0, engine.Claimf("%s: entry %d says it is at position %d", f.Name(), pos, e.Position)
		case e.Type == storage.SegmentType:
			size += int64(len(e.Payload))
		case e.Type == storage.FileType && e.Size >= 0 && e.Size <= 1<<50:
			size += e.Size
		default:
			return 0, engine.Claimf("%s: entry %d is of type %d, size %d", f.Name(), pos, e.Type, e.Size)
		}
		if err := fn(&e); err != nil {
			return 0, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, engine.Claimf("%s: %v", f.Name(), err)
	}
	return size, nil
}

// assemble writes the layer's tar: the kept headers and padding as they
// were, each file's bytes read from the layer's directory, beneath it and
// through no symbolic link, with exactly the size its header gives.
func (s *Storage) assemble(ctx context.Context, layer, dir string, w io.Writer) error {
	buf := make([]byte, 1<<20)
	_, err := s.tarSplit(layer, func(e *storage.Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Type == storage.SegmentType {
			_, err := w.Write(e.Payload)
			return err
		}
		if e.Size == 0 {
			return nil
		}
		// containers/storage refuses ".." when it unpacks a layer: a
		// record that names one is not its own.
		for _, part := range strings.Split(e.GetName(), "/") {
			if part == ".." {
				return engine.Claimf("the layer's tar-split record names %q, outside the layer", e.GetName())
			}
		}
		name := filepath.Clean("/" + e.GetName())[1:]
		f, err := openBeneath(dir, name, true)
		if err != nil {
			return fmt.Errorf("%s: %w", e.GetName(), err)
		}
		defer f.Close()
		n, err := io.CopyBuffer(w, io.LimitReader(engine.ContextReader(ctx, f), e.Size), buf)
		if err == nil && n != e.Size {
			err = fmt.Errorf("%w: %s has %d bytes in podman's layer directory, %d in the layer", engine.ErrEngine, e.GetName(), n, e.Size)
		}
		return err
	})
	return err
}

// LayerFindings lists the layers of ref that SaveImage found changed on
// disk (none before SaveImage was asked).
func (s *Storage) LayerFindings(ref string) []engine.LayerFinding {
	rec, err := s.findImage(ref)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findings[rec.ID]
}
