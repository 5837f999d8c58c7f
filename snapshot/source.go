package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// Source kinds, as recorded in the manifest.
const (
	KindDockerSave    = "docker-save"
	KindDockerSaveOCI = "docker-save-oci"
	KindOCIArchive    = "oci-archive"
	KindOCILayout     = "oci-layout"
)

// maxJSON bounds any JSON document read from a source.
const maxJSON = 16 << 20

// OCI and Docker media types amber reads.
const (
	MediaTypeLayer        = "application/vnd.oci.image.layer.v1.tar"
	MediaTypeConfig       = "application/vnd.oci.image.config.v1+json"
	MediaTypeManifest     = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeIndex        = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerList   = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerManif  = "application/vnd.docker.distribution.manifest.v2+json"
	AnnotationRefName     = "org.opencontainers.image.ref.name"
	annotationContainerdN = "io.containerd.image.name"
)

// Source is an opened image source.
type Source struct {
	Kind   string
	Path   string
	Images []*Image
	store  store
	closer io.Closer
}

// Image is one image found in a source, not yet read.
type Image struct {
	Refs           []string
	Config         []byte
	ConfigDigest   hashing.Digest
	DiffIDs        []hashing.Digest
	SourceManifest hashing.Digest
	Layers         []LayerSource
}

// LayerSource locates one layer in the source.
type LayerSource struct {
	Name      string
	Size      int64
	Digest    hashing.Digest // of the bytes as stored, when the source says
	MediaType string
}

// Close releases the source.
func (s *Source) Close() error { return s.closer.Close() }

// OpenSource opens a docker-save tarball (either layout), an OCI archive
// tarball, or an OCI layout directory.
func OpenSource(p string) (*Source, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("opening source: %w", err)
	}
	src := &Source{Path: p}
	if st.IsDir() {
		d, err := openDirStore(p)
		if err != nil {
			return nil, err
		}
		src.store, src.closer, src.Kind = d, d, KindOCILayout
	} else {
		t, err := openTarStore(p)
		if err != nil {
			return nil, err
		}
		src.store, src.closer = t, t
		switch {
		case t.exists("manifest.json") && t.exists("oci-layout"):
			src.Kind = KindDockerSaveOCI
		case t.exists("manifest.json"):
			src.Kind = KindDockerSave
		case t.exists("index.json"):
			src.Kind = KindOCIArchive
		default:
			t.Close()
			return nil, fmt.Errorf("%w: %s has neither manifest.json (docker save) nor index.json (OCI)", ErrSource, p)
		}
	}
	if src.Kind == KindDockerSave || src.Kind == KindDockerSaveOCI {
		err = src.readDockerSave()
	} else {
		err = src.readOCI()
	}
	if err == nil && len(src.Images) == 0 {
		err = fmt.Errorf("%w: %s holds no image", ErrSource, p)
	}
	if err != nil {
		src.Close()
		return nil, err
	}
	return src, nil
}

func (s *Source) readJSON(name string, v any) ([]byte, error) {
	rc, size, err := s.store.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > maxJSON {
		return nil, fmt.Errorf("%w: %s in %s is %d bytes; refusing JSON over %d", ErrSource, name, s.Path, size, maxJSON)
	}
	b, err := io.ReadAll(io.LimitReader(rc, maxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("%w: %s in %s is not valid: %v", ErrSource, name, s.Path, err)
		}
	}
	return b, nil
}

type dockerSaveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *Source) readDockerSave() error {
	var entries []dockerSaveEntry
	if _, err := s.readJSON("manifest.json", &entries); err != nil {
		return err
	}
	for i, e := range entries {
		img := &Image{Refs: e.RepoTags}
		cfg, err := s.readJSON(e.Config, nil)
		if err != nil {
			return fmt.Errorf("image %d of manifest.json: config: %w", i, err)
		}
		img.Config = cfg
		img.ConfigDigest = hashing.Sum(cfg)
		if want, ok := digestFromName(e.Config); ok && want != img.ConfigDigest {
			return fmt.Errorf("%w: config %s has SHA-256 %s, not the one its name says", ErrSource, e.Config, img.ConfigDigest.Hex())
		}
		for _, l := range e.Layers {
			rc, size, err := s.store.open(l)
			if err != nil {
				return fmt.Errorf("image %d of manifest.json: layer %s: %w", i, l, err)
			}
			rc.Close()
			ls := LayerSource{Name: l, Size: size}
			if d, ok := digestFromName(l); ok && strings.HasPrefix(l, "blobs/") {
				ls.Digest = d
			}
			img.Layers = append(img.Layers, ls)
		}
		if err := img.parseConfig(); err != nil {
			return fmt.Errorf("image %d of manifest.json (%s): %w", i, strings.Join(e.RepoTags, ", "), err)
		}
		s.Images = append(s.Images, img)
	}
	return nil
}

// digestFromName takes a digest from "blobs/sha256/<hex>" or "<hex>.json".
func digestFromName(name string) (hashing.Digest, bool) {
	b := path.Base(name)
	b = strings.TrimSuffix(b, ".json")
	d, err := hashing.Parse(b)
	return d, err == nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Manifests     []descriptor `json:"manifests"`
}

type ociManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

func blobPath(d string) (string, hashing.Digest, error) {
	h, err := hashing.Parse(d)
	if err != nil || !strings.HasPrefix(d, "sha256:") {
		return "", h, fmt.Errorf("%w: digest %q is not sha256", ErrSource, d)
	}
	return "blobs/sha256/" + h.Hex(), h, nil
}

// readBlob reads a small blob and checks it against its descriptor.
func (s *Source) readBlob(d descriptor) ([]byte, hashing.Digest, error) {
	name, want, err := blobPath(d.Digest)
	if err != nil {
		return nil, want, err
	}
	if d.Size > maxJSON {
		return nil, want, fmt.Errorf("%w: %s is %d bytes; refusing JSON over %d", ErrSource, name, d.Size, maxJSON)
	}
	b, err := s.readJSON(name, nil)
	if err != nil {
		return nil, want, err
	}
	if got := hashing.Sum(b); got != want {
		return nil, want, fmt.Errorf("%w: %s has SHA-256 %s, not its name's", ErrSource, name, got.Hex())
	}
	if int64(len(b)) != d.Size {
		return nil, want, fmt.Errorf("%w: %s is %d bytes, its descriptor says %d", ErrSource, name, len(b), d.Size)
	}
	return b, want, nil
}

func (s *Source) readOCI() error {
	var idx ociIndex
	if _, err := s.readJSON("index.json", &idx); err != nil {
		return err
	}
	return s.walkIndex(idx, nil, 0)
}

func (s *Source) walkIndex(idx ociIndex, inherited []string, depth int) error {
	if depth > 4 {
		return fmt.Errorf("%w: image indexes nested too deep", ErrSource)
	}
	// One manifest may be listed under several names: one image, several refs.
	byDigest := map[string]*Image{}
	for _, d := range idx.Manifests {
		refs := append([]string(nil), inherited...)
		if n := d.Annotations[annotationContainerdN]; n != "" {
			refs = append(refs, n)
		} else if n := d.Annotations[AnnotationRefName]; n != "" {
			refs = append(refs, n)
		}
		if img, ok := byDigest[d.Digest]; ok {
			img.Refs = append(img.Refs, refs...)
			continue
		}
		switch d.MediaType {
		case MediaTypeIndex, mediaTypeDockerList:
			b, _, err := s.readBlob(d)
			if err != nil {
				return err
			}
			var sub ociIndex
			if err := json.Unmarshal(b, &sub); err != nil {
				return fmt.Errorf("%w: index %s: %v", ErrSource, d.Digest, err)
			}
			if err := s.walkIndex(sub, refs, depth+1); err != nil {
				return err
			}
		case MediaTypeManifest, mediaTypeDockerManif:
			img, err := s.readManifest(d)
			if err != nil {
				return err
			}
			img.Refs = refs
			byDigest[d.Digest] = img
			s.Images = append(s.Images, img)
		default:
			// Attestations, signatures and other artifacts are not images.
			continue
		}
	}
	return nil
}

func (s *Source) readManifest(d descriptor) (*Image, error) {
	b, md, err := s.readBlob(d)
	if err != nil {
		return nil, err
	}
	var m ociManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrSource, d.Digest, err)
	}
	img := &Image{SourceManifest: md}
	cfg, cd, err := s.readBlob(m.Config)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: config: %w", d.Digest, err)
	}
	img.Config, img.ConfigDigest = cfg, cd
	for _, l := range m.Layers {
		name, ld, err := blobPath(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		rc, size, err := s.store.open(name)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: layer %s: %w", d.Digest, l.Digest, err)
		}
		rc.Close()
		if size != l.Size {
			return nil, fmt.Errorf("%w: layer %s is %d bytes, its descriptor says %d", ErrSource, l.Digest, size, l.Size)
		}
		img.Layers = append(img.Layers, LayerSource{Name: name, Size: size, Digest: ld, MediaType: l.MediaType})
	}
	if err := img.parseConfig(); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	return img, nil
}

type imageConfig struct {
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

func (img *Image) parseConfig() error {
	var c imageConfig
	dec := json.NewDecoder(bytes.NewReader(img.Config))
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("%w: config %s is not valid JSON: %v", ErrSource, img.ConfigDigest, err)
	}
	if len(c.RootFS.DiffIDs) != len(img.Layers) {
		return fmt.Errorf("%w: config %s lists %d diff_ids for %d layers", ErrSource, img.ConfigDigest, len(c.RootFS.DiffIDs), len(img.Layers))
	}
	for i, s := range c.RootFS.DiffIDs {
		d, err := hashing.Parse(s)
		if err != nil || !strings.HasPrefix(s, "sha256:") {
			return fmt.Errorf("%w: config %s: diff_id %d %q is not a sha256 digest", ErrSource, img.ConfigDigest, i, s)
		}
		img.DiffIDs = append(img.DiffIDs, d)
	}
	return nil
}

// Name is the image's mount-layout name: its first reference made
// path-safe, else its short ID.
func (img *Image) Name() string {
	for _, r := range img.Refs {
		if n := manifest.PathSafe(r); n != "" {
			return n
		}
	}
	return img.ConfigDigest.Short()
}
