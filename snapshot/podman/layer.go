//go:build linux

package podman

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/internal/layerstore"
)

// A layer is rebuilt from its overlay directory with the tar-split
// containers/storage kept when it unpacked it
// (overlay-layers/<id>.tar-split.gz), and checked, by package layerstore;
// layers.json's diff-size bounds what its tar-split may claim.

// layer is the layer id of the storage, of the given diff_id, as
// layerstore checks it.
func (s *Storage) layer(diffID, id string, diffSize *int64) (layerstore.Layer, error) {
	if !fullID.MatchString(id) {
		return layerstore.Layer{}, engine.Claimf("podman's storage names a layer %q, not 64 hex digits", id)
	}
	limit := int64(-1)
	if diffSize != nil && *diffSize >= 0 {
		limit = *diffSize
	}
	return layerstore.Layer{DiffID: diffID, Limit: limit, Who: "containers/storage's",
		Dir: func() (*os.File, error) { return s.diffDir(id) },
		Split: func() (*os.File, error) {
			f, err := openBeneath(s.root, path.Join(s.driver+"-layers", id+".tar-split.gz"), true)
			if err != nil {
				return nil, storageFault(err, "the tar-split record of layer "+id+" (podman cannot rebuild the layer either without it)")
			}
			return f, nil
		}}, nil
}

// diffDir opens a layer's diff directory beneath the graph root.
func (s *Storage) diffDir(id string) (*os.File, error) {
	fd, err := unix.Open(s.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: s.root, Err: err}
	}
	defer unix.Close(fd)
	f, err := layerstore.OpenAt(fd, s.root, path.Join(s.driver, id, "diff"), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, storageFault(err, "layer "+id)
	}
	return f, nil
}

// SaveImage checks every layer of the image, then streams it as docker
// save does: its config, a manifest.json, and each layer under
// blobs/sha256/<digest>, rebuilt byte for byte from its files in
// <graphroot>/overlay/<layer>/diff and the tar headers containers/storage
// kept when it unpacked the layer. A layer found changed on disk is
// streamed as found, under its own digest, and listed by LayerFindings.
func (s *Storage) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	img, err := s.image(ref)
	if err != nil {
		return nil, err
	}
	checked := make([]*layerstore.Checked, len(img.layers))
	var findings []engine.LayerFinding
	names := make([]string, len(img.layers))
	for i, lr := range img.layers {
		// Each position is checked on its own, by its layer ID: one
		// diff_id twice in an image (the empty layer) is two layers of
		// the storage, each with its own directory, either one changed.
		spec, err := s.layer(lr.DiffDigest, lr.ID, lr.DiffSize)
		if err == nil {
			checked[i], err = layerstore.Check(ctx, spec)
		}
		if err != nil {
			return nil, wrap(err, fmt.Sprintf("image %s, layer %d (%s)", ref, i, lr.ID))
		}
		if f, ok := checked[i].Finding(); ok {
			findings = append(findings, f)
		}
		names[i] = checked[i].Blob()
	}
	s.mu.Lock()
	s.findings[img.rec.ID] = findings
	s.mu.Unlock()
	man, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{img.rec.ID + ".json", img.rec.Names, names}})
	if err != nil {
		return nil, err
	}
	return layerstore.Save(ctx, []layerstore.Member{{Name: img.rec.ID + ".json", Body: img.config}, {Name: "manifest.json", Body: man}}, checked, nil), nil
}

// wrap gives err the context of what was asked, as engine.Wrap does, but
// keeps a claim refused one (engine.Wrap keeps only the class).
func wrap(err error, what string) error {
	var f *engine.Fault
	if errors.Is(err, engine.ErrEngineClaim) && !errors.As(err, &f) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return engine.Wrap(err, what)
}
