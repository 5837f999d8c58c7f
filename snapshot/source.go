package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
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
	// Artifacts are the OCI artifacts found (not images).
	Artifacts []*Artifact
	// Anomalies are odd things about the source: descriptors not captured,
	// a config whose name is not its digest.
	Anomalies []manifest.Anomaly
	store     store
	closer    io.Closer
}

// Image is one image found in a source, not yet read.
type Image struct {
	Refs           []string
	Config         []byte
	ConfigDigest   hashing.Digest
	DiffIDs        []hashing.Digest
	SourceManifest hashing.Digest
	Layers         []LayerSource
	// Platform is os/architecture[/variant], from the index that listed
	// the image, else its config.
	Platform string
	name     string
}

// LayerSource locates one layer in the source.
type LayerSource struct {
	Name      string
	Size      int64
	Digest    hashing.Digest // of the bytes as stored, when the source says
	MediaType string
	// URLs and SourceSize describe a foreign layer, as its descriptor says.
	URLs       []string
	SourceSize int64
	// Missing: the source does not hold the layer's bytes (a foreign
	// layer that docker save leaves out).
	Missing bool
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
		img.Platform = (&platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant}).String()
	}
	return nil
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
