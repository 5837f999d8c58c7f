package podman

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// Bounds of what is read from the storage into memory: its JSON files list
// every container, image and layer (a few hundred bytes each), a
// container's OCI spec and pidfile are small.
const (
	maxList   = 256 << 20
	maxConfig = 16 << 20
	maxPID    = 64
)

var fullID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ctrRecord is a container as containers/storage lists it.
type ctrRecord struct {
	ID       string   `json:"id"`
	Names    []string `json:"names"`
	Image    string   `json:"image"`
	Layer    string   `json:"layer"`
	Metadata string   `json:"metadata"`
	Created  string   `json:"created"`
	raw      json.RawMessage
}

// imgRecord is an image as containers/storage lists it.
type imgRecord struct {
	ID          string            `json:"id"`
	Names       []string          `json:"names"`
	Layer       string            `json:"layer"`
	BigDataKeys []string          `json:"big-data-names"`
	BigDataSums map[string]string `json:"big-data-digests"`
}

// layerRecord is a layer as containers/storage lists it: DiffDigest is
// the digest of its uncompressed tar (its diff_id).
type layerRecord struct {
	ID         string `json:"id"`
	Parent     string `json:"parent"`
	DiffDigest string `json:"diff-digest"`
	DiffSize   *int64 `json:"diff-size"`
}

// readFile reads rel under root, bounded, with no symbolic link on the way
// (openBeneath).
func readFile(root, rel string, max int64) ([]byte, error) {
	f, err := openBeneath(root, rel, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(root, rel), err)
	}
	if int64(len(b)) > max {
		return nil, engine.Claimf("%s is over %d MiB: refused", filepath.Join(root, rel), max>>20)
	}
	return b, nil
}

// list reads one of the storage's lists (<driver>-containers/containers.json,
// ...) into out; each element's raw JSON is kept by ctrRecord.
func (s *Storage) list(kind, file string, out any) error {
	rel := filepath.Join(s.driver+"-"+kind, file)
	b, err := readFile(s.root, rel, maxList)
	if errors.Is(err, os.ErrNotExist) {
		// No list yet: containers/storage creates it at the first object.
		b = []byte("[]")
	} else if err != nil {
		return storageFault(err, "reading "+rel)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return engine.Claimf("podman's %s is not a list of %s: %v", filepath.Join(s.root, rel), kind, err)
	}
	return nil
}

// containers lists the storage's containers, each with its raw record.
func (s *Storage) containers() ([]ctrRecord, error) {
	var raws []json.RawMessage
	if err := s.list("containers", "containers.json", &raws); err != nil {
		return nil, err
	}
	out := make([]ctrRecord, 0, len(raws))
	for _, r := range raws {
		var c ctrRecord
		if err := json.Unmarshal(r, &c); err != nil {
			return nil, engine.Claimf("podman's containers.json holds a container that is not one: %v", err)
		}
		c.raw = r
		out = append(out, c)
	}
	return out, nil
}

// findContainer finds a container by its ID, a unique prefix of it, or
// one of its names.
func (s *Storage) findContainer(ref string) (*ctrRecord, error) {
	all, err := s.containers()
	if err != nil {
		return nil, err
	}
	ref = strings.TrimPrefix(ref, "/")
	var found []*ctrRecord
	for i := range all {
		c := &all[i]
		if c.ID == ref {
			return c, nil
		}
		for _, n := range c.Names {
			if n == ref {
				return c, nil
			}
		}
		if len(ref) >= 4 && strings.HasPrefix(c.ID, ref) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("podman's storage %s has no container %q", s.root, ref)}
	case 1:
		return found[0], nil
	}
	return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("%q is the start of %d containers' IDs in podman's storage", ref, len(found))}
}

// findImage finds an image by its ID (with or without sha256:), a unique
// prefix of it, or a name as podman resolves a short one (localhost/,
// docker.io/library/ before it).
func (s *Storage) findImage(ref string) (*imgRecord, error) {
	var all []imgRecord
	if err := s.list("images", "images.json", &all); err != nil {
		return nil, err
	}
	id := strings.TrimPrefix(ref, "sha256:")
	names := []string{ref, "localhost/" + ref, "docker.io/library/" + ref, "docker.io/" + ref}
	if !strings.Contains(ref, ":") && !strings.Contains(ref, "@") {
		for _, n := range names[:4] {
			names = append(names, n+":latest")
		}
	}
	var found []*imgRecord
	for _, want := range names {
		for i := range all {
			for _, n := range all[i].Names {
				if n == want {
					return &all[i], nil
				}
			}
		}
	}
	for i := range all {
		if all[i].ID == id {
			return &all[i], nil
		}
		if len(id) >= 4 && strings.HasPrefix(all[i].ID, id) {
			found = append(found, &all[i])
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("podman's storage %s has no image %q", s.root, ref)}
}

// layers lists the storage's layers by ID.
func (s *Storage) layers() (map[string]*layerRecord, error) {
	var all []layerRecord
	if err := s.list("layers", "layers.json", &all); err != nil {
		return nil, err
	}
	out := make(map[string]*layerRecord, len(all))
	for i := range all {
		out[all[i].ID] = &all[i]
	}
	return out, nil
}

// chain is the image's layers, base first, from its top layer down the
// parents: each a real layer ID with its diff_id.
func (s *Storage) chain(img *imgRecord) ([]*layerRecord, error) {
	all, err := s.layers()
	if err != nil {
		return nil, err
	}
	var out []*layerRecord
	for id := img.Layer; id != ""; {
		l := all[id]
		switch {
		case !fullID.MatchString(id):
			return nil, engine.Claimf("podman's storage gives image %s a layer %q, not 64 hex digits", img.ID, id)
		case l == nil:
			return nil, engine.Claimf("podman's storage gives image %s a layer %s that layers.json does not list", img.ID, id)
		case len(out) > len(all):
			return nil, engine.Claimf("podman's layers.json makes the layers of image %s a cycle", img.ID)
		}
		out = append(out, l)
		id = l.Parent
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// dir checks that <root>/<rel...> is a real directory under root: no
// symbolic link on the way, checked by the kernel beneath root (the root
// itself was resolved when the storage was opened). It returns the path
// to read.
func dir(root string, rel ...string) (string, error) {
	for _, r := range rel {
		if r == "" || r == "." || r == ".." || strings.Contains(r, "/") {
			return "", engine.Claimf("%q is not a name under podman's storage %s", r, root)
		}
	}
	if err := dirBeneath(root, filepath.Join(rel...)); err != nil {
		return "", storageFault(err, "podman's storage")
	}
	return filepath.Join(append([]string{root}, rel...)...), nil
}

// storageFault classifies an error reading the storage: a missing file
// is a missing object, a refused path stays a claim.
func storageFault(err error, what string) error {
	var f *engine.Fault
	switch {
	case errors.Is(err, engine.ErrEngineClaim), errors.As(err, &f):
		return err
	case errors.Is(err, os.ErrNotExist):
		return &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return &engine.Fault{Kind: engine.ErrEngine, Err: fmt.Errorf("%s: %w", what, err)}
}
