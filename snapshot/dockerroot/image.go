//go:build linux

package dockerroot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// imageConfig is what amber reads of an image config.
type imageConfig struct {
	Created time.Time
	RootFS  struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// imageDir is the image store of the data root's driver.
func (s *Store) imageDir() (string, error) {
	if s.driver == "" {
		return "", &engine.Unavailable{Why: "the Docker data root " + s.real + " has no graph driver image store (image/<driver>): containerd's image store is not read here"}
	}
	return path.Join("image", s.driver), nil
}

// readConfig reads an image's config from the image store, bounded, and
// checks its digest is its ID.
func (s *Store) readConfig(id string) (*imageConfig, []byte, error) {
	dir, err := s.imageDir()
	if err != nil {
		return nil, nil, err
	}
	rel := path.Join(dir, "imagedb/content/sha256", id)
	b, err := s.readFile(rel, maxJSON)
	if err != nil {
		return nil, nil, err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != id {
		return nil, nil, engine.Claimf("%s/%s has SHA-256 %x, not its name: refused", s.real, rel, sum)
	}
	var c imageConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w", s.real, rel, err)
	}
	for _, d := range c.RootFS.DiffIDs {
		if h, ok := strings.CutPrefix(d, "sha256:"); !ok || !hex64.MatchString(h) {
			return nil, nil, fmt.Errorf("%s/%s lists layer %q, not sha256:<64 hex digits>", s.real, rel, trunc(d))
		}
	}
	return &c, b, nil
}

// imageIDs lists the image store's configs.
func (s *Store) imageIDs() ([]string, error) {
	dir, err := s.imageDir()
	if err != nil {
		return nil, err
	}
	return s.hexNames(path.Join(dir, "imagedb/content/sha256"), "images")
}

// repositories reads repositories.json: each image ID's references.
func (s *Store) repositories() (map[string][]string, map[string]string, error) {
	dir, err := s.imageDir()
	if err != nil {
		return nil, nil, err
	}
	rel := path.Join(dir, "repositories.json")
	b, err := s.readFile(rel, maxJSON)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]string{}, map[string]string{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var rs struct{ Repositories map[string]map[string]string }
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w", s.real, rel, err)
	}
	byID, byRef := map[string][]string{}, map[string]string{}
	for _, refs := range rs.Repositories {
		for ref, id := range refs {
			h, ok := strings.CutPrefix(id, "sha256:")
			if !ok || !hex64.MatchString(h) {
				continue
			}
			byID[h] = append(byID[h], ref)
			byRef[ref] = h
		}
	}
	for _, refs := range byID {
		sort.Strings(refs)
	}
	return byID, byRef, nil
}

// normalRef is a reference as repositories.json keeps it: Docker Hub's
// names without docker.io/ (and library/), ":latest" when no tag or
// digest is given.
func normalRef(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/")
	ref = strings.TrimPrefix(ref, "index.docker.io/")
	ref = strings.TrimPrefix(ref, "library/")
	if strings.Contains(ref, "@") {
		return ref
	}
	if i := strings.LastIndexByte(ref, ':'); i < 0 || strings.Contains(ref[i:], "/") {
		ref += ":latest"
	}
	return ref
}

// findImage finds an image by ID, "sha256:"ID, reference or unique ID
// prefix.
func (s *Store) findImage(ref string) (string, error) {
	h := strings.TrimPrefix(ref, "sha256:")
	dir, err := s.imageDir()
	if err != nil {
		return "", err
	}
	if hex64.MatchString(h) {
		if f, err := s.open(path.Join(dir, "imagedb/content/sha256", h)); err == nil {
			f.Close()
			return h, nil
		}
	}
	_, byRef, err := s.repositories()
	if err != nil {
		return "", err
	}
	if id, ok := byRef[normalRef(ref)]; ok {
		return id, nil
	}
	var cands []string
	if h != "" && strings.Trim(h, "0123456789abcdef") == "" {
		ids, err := s.imageIDs()
		if err != nil {
			return "", err
		}
		for _, id := range ids {
			if strings.HasPrefix(id, h) {
				cands = append(cands, id)
			}
		}
	}
	switch len(cands) {
	case 1:
		return cands[0], nil
	case 0:
		return "", &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("no image %q in the Docker data root %s", ref, s.real)}
	}
	return "", fmt.Errorf("image %q is ambiguous in %s: %s", ref, s.real, strings.Join(cands, ", "))
}

// chainIDs are the layer store's IDs of an image's layers (the OCI image
// spec's ChainID: chain(n) = sha256(chain(n-1) + " " + diffID(n))).
func chainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = strings.TrimPrefix(d, "sha256:")
			continue
		}
		sum := sha256.Sum256([]byte("sha256:" + out[i-1] + " " + d))
		out[i] = hex.EncodeToString(sum[:])
	}
	return out
}

// layerSize is a layer's size as the layer store records it.
func (s *Store) layerSize(chain string) (int64, error) {
	s.mu.Lock()
	n, ok := s.sizes[chain]
	s.mu.Unlock()
	if ok {
		return n, nil
	}
	rel := path.Join("image", s.driver, "layerdb/sha256", chain, "size")
	b, err := s.readFile(rel, maxSmall)
	if err != nil {
		return 0, err
	}
	n, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s/%s holds %q, not a size", s.real, rel, trunc(string(b)))
	}
	s.mu.Lock()
	s.sizes[chain] = n
	s.mu.Unlock()
	return n, nil
}

// checkChain checks the layer store's record of an image's layers: each
// chain ID has a directory whose diff file names its layer, and whose
// parent file names the layer below (the chain read down from the top,
// bounded and without loops, is the one the config's diff_ids make).
func (s *Store) checkChain(diffIDs []string) error {
	chains := chainIDs(diffIDs)
	base := path.Join("image", s.driver, "layerdb/sha256")
	for i, c := range chains {
		d, err := s.readID(path.Join(base, c, "diff"), true)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, diffIDs[i], err)
		}
		if "sha256:"+d != diffIDs[i] {
			return engine.Claimf("the layer store's %s/%s/%s/diff names layer sha256:%s, not %s: refused", s.real, base, c, d, diffIDs[i])
		}
	}
	if len(chains) == 0 {
		return nil
	}
	seen := map[string]bool{}
	cur, depth := chains[len(chains)-1], len(chains)-1
	for {
		if seen[cur] {
			return engine.Claimf("the layer store's parent chain from %s loops at %s: refused", chains[len(chains)-1], cur)
		}
		if len(seen) >= maxChain {
			return engine.Claimf("the layer store's parent chain from %s is more than %d deep: refused", chains[len(chains)-1], maxChain)
		}
		seen[cur] = true
		p, err := s.readID(path.Join(base, cur, "parent"), true)
		if errors.Is(err, os.ErrNotExist) {
			p = ""
		} else if err != nil {
			return err
		}
		if depth < 0 || depth >= len(chains) || cur != chains[depth] {
			return engine.Claimf("the layer store's parent chain from %s reaches %s, not the image's layer %d: refused", chains[len(chains)-1], cur, depth)
		}
		depth--
		if p == "" {
			if depth != -1 {
				return engine.Claimf("the layer store's parent chain from %s ends at %s, above the image's base layer: refused", chains[len(chains)-1], cur)
			}
			return nil
		}
		cur = p
	}
}

// Image reads an image's config: its ID and layers.
func (s *Store) Image(ctx context.Context, ref string) (*engine.Image, error) {
	id, err := s.findImage(ref)
	if err != nil {
		return nil, err
	}
	c, _, err := s.readConfig(id)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	if err := s.checkChain(c.RootFS.DiffIDs); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return &engine.Image{ID: "sha256:" + id, DiffIDs: c.RootFS.DiffIDs}, nil
}

// ListImages lists the image store: IDs, references, sizes (the layer
// store's record), creation times. No layer is read.
func (s *Store) ListImages(ctx context.Context) ([]engine.ImageSummary, error) {
	if s.driver == "" {
		return nil, nil
	}
	ids, err := s.imageIDs()
	if err != nil {
		return nil, err
	}
	byID, _, err := s.repositories()
	if err != nil {
		return nil, err
	}
	out := make([]engine.ImageSummary, 0, len(ids))
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		is := engine.ImageSummary{Runtime: "docker-root", ID: "sha256:" + id, Refs: byID[id]}
		if is.Refs == nil {
			is.Refs = []string{}
		}
		if c, _, err := s.readConfig(id); err == nil {
			is.Created = rfc3339(c.Created)
			for _, ch := range chainIDs(c.RootFS.DiffIDs) {
				if n, err := s.layerSize(ch); err == nil {
					is.Size += n
				}
			}
		}
		out = append(out, is)
	}
	return out, nil
}
