//go:build linux

package dockerroot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/internal/layerstore"
)

// A layer is rebuilt from its overlay2 directory (layerdb's cache-id) with
// the tar-split the layer store kept when it was pulled, and checked, by
// package layerstore; layerdb's size bounds what its tar-split may claim.

// layer is the layer of chain ID chain as layerstore checks it.
func (s *Store) layer(diffID, chain string) (layerstore.Layer, error) {
	db := path.Join("image", s.driver, "layerdb/sha256", chain)
	cache, err := s.readID(path.Join(db, "cache-id"), false)
	if err != nil {
		return layerstore.Layer{}, err
	}
	limit, err := s.claimLimit(chain)
	if err != nil {
		return layerstore.Layer{}, err
	}
	diff := path.Join("overlay2", cache, "diff")
	return layerstore.Layer{DiffID: diffID, Limit: limit, Who: "the layer store's",
		Dir: func() (*os.File, error) { return layerstore.OpenAt(s.dfd, s.real, diff, unix.O_PATH|unix.O_DIRECTORY) },
		Split: func() (*os.File, error) {
			f, err := s.open(path.Join(db, "tar-split.json.gz"))
			if err != nil {
				return nil, fmt.Errorf("the layer store's tar-split of layer %s: %w", chain, err)
			}
			return f, nil
		}}, nil
}

// claimLimit is the bound of the bytes of files a layer's tar-split may
// claim: the layer's size as the layer store records it (the sum of its
// files' sizes as Docker unpacked them), -1 where none is recorded.
func (s *Store) claimLimit(chain string) (int64, error) {
	n, err := s.layerSize(chain)
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("the layer store's size of layer %s: %w", chain, err)
	}
	return n, nil
}

// SaveImage checks every layer of the image, then streams it as docker
// save would (manifest.json, its config, its layers as
// blobs/sha256/<digest>). A layer found changed on disk is streamed as
// found, under its own digest, and listed by LayerFindings.
func (s *Store) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	if err := s.needOverlay2(); err != nil {
		return nil, err
	}
	id, err := s.findImage(ref)
	if err != nil {
		return nil, err
	}
	cfg, raw, err := s.readConfig(id)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	if err := s.checkChain(cfg.RootFS.DiffIDs); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	byID, _, err := s.repositories()
	if err != nil {
		return nil, err
	}
	chains := chainIDs(cfg.RootFS.DiffIDs)
	checked := make([]*layerstore.Checked, len(chains))
	var findings []engine.LayerFinding
	names := make([]string, len(chains))
	for i, c := range chains {
		// Each position is checked on its own, by its chain ID: one
		// diff_id twice in an image (the empty layer) is two layers of
		// the store, each with its own directory, either one changed.
		d := cfg.RootFS.DiffIDs[i]
		spec, err := s.layer(d, c)
		if err == nil {
			checked[i], err = layerstore.Check(ctx, spec)
		}
		if err != nil {
			return nil, fmt.Errorf("image %s, layer %d (%s): %w", ref, i, d, err)
		}
		if f, ok := checked[i].Finding(); ok {
			findings = append(findings, f)
		}
		names[i] = checked[i].Blob()
	}
	s.mu.Lock()
	s.findings[id] = findings
	s.mu.Unlock()
	var tags []string
	for _, r := range byID[id] {
		if !strings.Contains(r, "@") {
			tags = append(tags, r)
		}
	}
	man, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{"blobs/sha256/" + id, tags, names}})
	if err != nil {
		return nil, err
	}
	return layerstore.Save(ctx, []layerstore.Member{{Name: "blobs/sha256/" + id, Body: raw}}, checked,
		[]layerstore.Member{{Name: "manifest.json", Body: man}}), nil
}

// LayerFindings lists the layers of ref that SaveImage found changed on
// disk (none before SaveImage was asked).
func (s *Store) LayerFindings(ref string) []engine.LayerFinding {
	id, err := s.findImage(ref)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findings[id]
}
