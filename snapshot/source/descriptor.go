package source

import (
	"encoding/json"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/hashing"
)

// descriptor is a v1.Descriptor as a source wrote it. go-containerregistry
// refuses a whole document when one descriptor's digest is not
// algorithm:hex, or its data or platform fields are malformed; amber reads
// a source descriptor by descriptor and records what it cannot capture as
// an anomaly (an index entry of a type it does not know, whatever its
// digest). So a descriptor is read as v1.Descriptor and, when that
// refuses it, as the fields amber has always read; digest keeps the digest
// as written, for lookups and messages.
type descriptor struct {
	v1.Descriptor
	digest string
}

func (d *descriptor) UnmarshalJSON(b []byte) error {
	var strict v1.Descriptor
	if err := json.Unmarshal(b, &strict); err == nil {
		d.Descriptor = strict
		if strict.Digest != (v1.Hash{}) {
			d.digest = strict.Digest.String()
		}
		return nil
	}
	var loose struct {
		MediaType    types.MediaType   `json:"mediaType"`
		Digest       string            `json:"digest"`
		Size         int64             `json:"size"`
		URLs         []string          `json:"urls"`
		Annotations  map[string]string `json:"annotations"`
		Platform     *looseHalf        `json:"platform"`
		ArtifactType string            `json:"artifactType"`
	}
	if err := json.Unmarshal(b, &loose); err != nil {
		return err
	}
	d.Descriptor = v1.Descriptor{MediaType: loose.MediaType, Size: loose.Size, URLs: loose.URLs, Annotations: loose.Annotations, ArtifactType: loose.ArtifactType}
	if loose.Platform != nil {
		d.Platform = &v1.Platform{OS: loose.Platform.OS, Architecture: loose.Platform.Architecture, Variant: loose.Platform.Variant}
	}
	d.Digest, _ = v1.NewHash(loose.Digest) // zero when not algorithm:hex
	d.digest = loose.Digest
	return nil
}

// looseHalf is the part of a platform amber names images by.
type looseHalf struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant"`
}

// indexDoc is an image index read for its descriptors (v1.IndexManifest's
// fields amber reads; its descriptors read as above).
type indexDoc struct {
	SchemaVersion int64           `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType"`
	Manifests     []descriptor    `json:"manifests"`
}

// manifestDoc is an image manifest read for its descriptors (v1.Manifest's
// fields amber reads; its descriptors read as above).
type manifestDoc struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Subject       *descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// V1Hash is d as go-containerregistry's hash.
func V1Hash(d hashing.Digest) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: d.Hex()} }

// Digest is h as amber's typed digest; zero unless h is a sha256.
func Digest(h v1.Hash) hashing.Digest {
	if h.Algorithm != "sha256" {
		return hashing.Digest{}
	}
	d, _ := hashing.Parse(h.String())
	return d
}
