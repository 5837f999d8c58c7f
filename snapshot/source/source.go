package source

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// Source kinds, as recorded in the manifest.
const (
	KindDockerSave    = "docker-save"
	KindDockerSaveOCI = "docker-save-oci"
	KindOCIArchive    = "oci-archive"
	KindOCILayout     = "oci-layout"
	KindDockerEngine  = "docker-engine"
	// KindRegistry is an image in a registry (snapshot/registry).
	KindRegistry = "registry"
)

// MaxJSON bounds any JSON document read from a source.
const MaxJSON = 16 << 20

// Annotations amber reads from an index's descriptors.
const (
	AnnotationRefName     = "org.opencontainers.image.ref.name"
	AnnotationContainerdN = "io.containerd.image.name"
	AnnotationTitle       = "org.opencontainers.image.title"
)

// Source is an opened image source.
type Source struct {
	Kind   string
	Path   string
	Images []*Image
	// Artifacts are the OCI artifacts found (not images).
	Artifacts []*Artifact
	// Anomalies are odd things about the source: descriptors not captured,
	// a config whose name is not its digest.
	Anomalies []manifest.Anomaly
	store     Store
	closer    io.Closer
	// index is the top index.json as stored (OCI kinds), for ImageIndex.
	index []byte
}

// Image is one image found in a source, not yet read.
type Image struct {
	Refs           []string
	Config         []byte
	ConfigDigest   hashing.Digest
	DiffIDs        []hashing.Digest
	SourceManifest hashing.Digest
	// Manifest is the image manifest as stored (OCI kinds; a docker-save
	// manifest.json entry is not one).
	Manifest     []byte
	ManifestType types.MediaType
	Layers       []Layer
	// Platform is os/architecture[/variant], from the index that listed
	// the image, else its config.
	Platform string
	name     string
	store    Store
}

// Layer locates one layer of an image in its source.
type Layer struct {
	Name      string
	Size      int64
	Digest    hashing.Digest // of the bytes as stored, when the source says
	MediaType types.MediaType
	// URLs and SourceSize describe a foreign layer, as its descriptor says.
	URLs       []string
	SourceSize int64
	// Missing: the source does not hold the layer's bytes (a foreign
	// layer that docker save leaves out).
	Missing bool
}

// Close releases the source.
func (s *Source) Close() error { return s.closer.Close() }

// Store is the store the source reads, for the layers and blobs a capture
// copies.
func (s *Source) Store() Store { return s.store }

// Open opens a docker-save tarball (either layout), an OCI archive
// tarball, or an OCI layout directory.
func Open(p string) (*Source, error) {
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
		case t.Exists("manifest.json") && t.Exists("oci-layout"):
			src.Kind = KindDockerSaveOCI
		case t.Exists("manifest.json"):
			src.Kind = KindDockerSave
		case t.Exists("index.json"):
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
	if err == nil && src.Kind != KindOCILayout && src.Kind != KindOCIArchive {
		src.nameImages()
	}
	if err == nil && len(src.Images) == 0 && len(src.Artifacts) == 0 {
		err = fmt.Errorf("%w: %s holds no image", ErrSource, p)
	}
	if err != nil {
		src.Close()
		return nil, err
	}
	return src, nil
}

// FromStore reads the images of a store that holds a docker-save
// manifest.json or an OCI index.json (an engine's save stream); path names
// it in messages. Closing the source does not close the store.
func FromStore(st Store, kind, path string) (*Source, error) {
	src := &Source{Kind: kind, Path: path, store: st, closer: io.NopCloser(nil)}
	var err error
	switch {
	case st.Exists("manifest.json"):
		err = src.readDockerSave()
	case st.Exists("index.json"):
		err = src.readOCI()
	default:
		err = fmt.Errorf("%w: %s has neither manifest.json nor index.json", ErrSource, path)
	}
	if err != nil {
		return nil, err
	}
	return src, nil
}

// OpenStore reads the images of st, an OCI layout's files (index.json,
// blobs/sha256/...) served from elsewhere (a registry), as Open reads a
// layout directory; closing the source closes st through closer.
func OpenStore(st Store, closer io.Closer, kind, path string) (*Source, error) {
	src := &Source{Kind: kind, Path: path, store: st, closer: closer}
	err := src.readOCI()
	if err == nil && len(src.Images) == 0 && len(src.Artifacts) == 0 {
		err = fmt.Errorf("%w: %s holds no image", ErrSource, path)
	}
	if err != nil {
		closer.Close()
		return nil, err
	}
	return src, nil
}

func (s *Source) readJSON(name string, v any) ([]byte, error) {
	rc, size, err := s.store.Open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > MaxJSON {
		return nil, fmt.Errorf("%w: %s in %s is %d bytes; refusing JSON over %d", ErrSource, name, s.Path, size, MaxJSON)
	}
	b, err := io.ReadAll(io.LimitReader(rc, MaxJSON+1))
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

// imageConfig is the part of an image config amber reads. Not
// v1.ConfigFile: that refuses a config whose created times, health check
// or diff_ids it cannot parse, which Docker loads; amber needs the platform
// and the diff_ids, and checks the diff_ids itself.
type imageConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

func (img *Image) parseConfig(layers int) error {
	var c imageConfig
	dec := json.NewDecoder(bytes.NewReader(img.Config))
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("%w: config %s is not valid JSON: %v", ErrSource, img.ConfigDigest, err)
	}
	if len(c.RootFS.DiffIDs) != layers {
		return fmt.Errorf("%w: config %s lists %d diff_ids for %d layers", ErrSource, img.ConfigDigest, len(c.RootFS.DiffIDs), layers)
	}
	for i, s := range c.RootFS.DiffIDs {
		d, err := hashing.Parse(s)
		if err != nil || !strings.HasPrefix(s, "sha256:") {
			return fmt.Errorf("%w: config %s: diff_id %d %q is not a sha256 digest", ErrSource, img.ConfigDigest, i, s)
		}
		img.DiffIDs = append(img.DiffIDs, d)
	}
	if img.Platform == "" && c.OS != "" {
		img.Platform = PlatformString(&v1.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant})
	}
	return nil
}

// PlatformString is os/architecture[/variant], as amber names platforms
// (not v1.Platform.String, which adds the OS version and features: image
// names in the mount layout are made from this).
func PlatformString(p *v1.Platform) string {
	if p == nil || p.OS == "" && p.Architecture == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Name is the image's mount-layout name: its first reference made
// path-safe, else its short ID; images of one source that would share a
// name are told apart by platform (app_linux-arm64), else by short ID.
func (img *Image) Name() string {
	if img.name != "" {
		return img.name
	}
	for _, r := range img.Refs {
		if n := manifest.PathSafe(r); n != "" {
			return n
		}
	}
	return img.ConfigDigest.Short()
}
