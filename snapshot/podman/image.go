package podman

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/amber-forensics/amber/snapshot/engine"
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
