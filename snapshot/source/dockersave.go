package source

import (
	"fmt"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// A docker-save tarball's manifest.json (either layout): its images, their
// configs and layers, and what LayerSources says of foreign layers.

type dockerSaveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
	// LayerSources describes layers by diff_id as their registry had them
	// (foreign layers: media type, compressed digest and size, URLs).
	// Keyed by string, not v1.Hash: a key that is no digest never matched
	// a diff_id and is no reason to refuse the tarball.
	LayerSources map[string]descriptor
}

func (s *Source) readDockerSave() error {
	var entries []dockerSaveEntry
	if _, err := s.readJSON("manifest.json", &entries); err != nil {
		return err
	}
	// A crafted manifest.json can list one large config, or one image,
	// thousands of times: each file is read once, each image kept once.
	configs := map[string][]byte{}
	seen := map[string]*Image{}
	for i, e := range entries {
		ik := s.store.Key(e.Config) + "\x00" + strings.Join(e.Layers, "\x00")
		if img, ok := seen[ik]; ok {
			img.addRefs(e.RepoTags)
			continue
		}
		if len(s.Images) >= MaxImages {
			return fmt.Errorf("%w: manifest.json lists more than %d images; refusing (a source this large is best split)", ErrSource, MaxImages)
		}
		img := &Image{Refs: e.RepoTags, store: s.store}
		cfg, ok := configs[s.store.Key(e.Config)]
		if !ok {
			var err error
			if cfg, err = s.readJSON(e.Config, nil); err != nil {
				return fmt.Errorf("image %d of manifest.json: config: %w", i, err)
			}
			configs[s.store.Key(e.Config)] = cfg
		}
		img.Config = cfg
		img.ConfigDigest = hashing.Sum(cfg)
		if want, ok := digestFromName(e.Config); ok && want != img.ConfigDigest {
			// Docker and skopeo load such a tarball: the config is what
			// the image is, whatever its name says.
			s.anomaly(manifest.Anomaly{Kind: "config-name-mismatch",
				Detail: fmt.Sprintf("config %s has SHA-256 %s, not the digest its name says", e.Config, img.ConfigDigest.Hex())})
		}
		if err := img.parseConfig(len(e.Layers)); err != nil {
			return fmt.Errorf("image %d of manifest.json (%s): %w", i, strings.Join(e.RepoTags, ", "), err)
		}
		for j, l := range e.Layers {
			ls := Layer{Name: l}
			if d, ok := digestFromName(l); ok && strings.HasPrefix(l, "blobs/") {
				ls.Digest = d
			}
			if src, ok := e.LayerSources[img.DiffIDs[j].String()]; ok {
				ls.MediaType, ls.URLs, ls.SourceSize = src.MediaType, src.URLs, src.Size
				if d, err := hashing.Parse(src.digest); err == nil {
					ls.Digest = d
				}
			}
			rc, size, err := s.store.Open(l)
			if err != nil {
				if !isForeign(ls.MediaType) || s.store.Exists(l) {
					return fmt.Errorf("image %d of manifest.json: layer %s: %w", i, l, err)
				}
				// docker save leaves a foreign layer's bytes out: they
				// are the registry's to serve, at its URLs.
				ls.Missing = true
			} else {
				rc.Close()
				ls.Size = size
			}
			img.Layers = append(img.Layers, ls)
		}
		seen[ik] = img
		s.Images = append(s.Images, img)
	}
	return nil
}

// MaxImages caps the images and artifacts one source may hold (a real
// multi-platform layout holds a few dozen).
const MaxImages = 1000

// isForeign reports a foreign (non-distributable) layer media type, whose
// bytes a tarball may leave out.
func isForeign(mt types.MediaType) bool {
	return strings.Contains(string(mt), ".foreign.") || strings.Contains(string(mt), ".nondistributable.")
}

// digestFromName takes a digest from "blobs/sha256/<hex>" or "<hex>.json".
func digestFromName(name string) (hashing.Digest, bool) {
	b := path.Base(name)
	b = strings.TrimSuffix(b, ".json")
	d, err := hashing.Parse(b)
	return d, err == nil
}
