package snapshot

import (
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/snapshot/source"
)

// The OCI JSON amber writes into an archive: image and container manifests
// and index.json. Media types and annotations are go-containerregistry's
// and the source package's; the structs are amber's own because their
// field order is the archive format: v1.Descriptor marshals "size" before
// "digest" (amber writes mediaType, digest, size), so writing through it
// would change every manifest's bytes and every archive's digests
// (TestArchiveDigests). v1.Manifest and v1.IndexManifest marshal the
// fields amber sets in the same order, but hold v1.Descriptors.

// Media types and annotations amber writes.
const (
	MediaTypeLayer        = string(types.OCIUncompressedLayer)
	MediaTypeConfig       = string(types.OCIConfigJSON)
	MediaTypeManifest     = string(types.OCIManifestSchema1)
	MediaTypeIndex        = string(types.OCIImageIndex)
	AnnotationRefName     = source.AnnotationRefName
	annotationContainerdN = source.AnnotationContainerdN
)

// ErrSource reports a source that cannot be read as an image (the
// source package's error, here too so that a capture's callers classify
// its errors from one package).
var ErrSource = source.ErrSource

// descriptor is an OCI descriptor as amber writes it.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	URLs        []string          `json:"urls,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ociIndex is index.json as amber writes it.
type ociIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Manifests     []descriptor `json:"manifests"`
}

// ociManifest is an image manifest as amber writes it.
type ociManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}
