package registry

// The evidence artifact: an OCI image manifest (schema 2,
// application/vnd.oci.image.manifest.v1+json) with an artifactType and a
// config of amber's own media type, not an OCI 1.1 artifact manifest
// (application/vnd.oci.artifact.manifest.v1+json): that manifest type was
// dropped from the final OCI 1.1 specification and distribution 2.8
// (Debian's docker-registry) refuses it, while every registry stores an
// image manifest whose config and layers are of types it does not know.
// The first layer is the archive file byte for byte, so the registry's
// digest of that blob is the archive's SHA-256 (its .sha256 sidecar);
// each sidecar follows as a layer of its own type, titled with its file
// name.
const (
	// ArtifactType marks a manifest as amber evidence.
	ArtifactType = "application/vnd.amber.evidence.v1"
	// MediaTypeConfig is the config blob: a small JSON object naming the
	// archive (its file name, size, SHA-256, amber version).
	MediaTypeConfig = "application/vnd.amber.evidence.config.v1+json"
	// MediaTypeArchive is the sealed archive, byte for byte.
	MediaTypeArchive = "application/vnd.amber.evidence.v1.tar+zstd"
	// MediaTypeCustody is the custody log sidecar (NAME.custody.jsonl).
	MediaTypeCustody = "application/vnd.amber.custody.v1+jsonl"
	// MediaTypeDigests is a digest sidecar (NAME.sha256, .md5, .sha1).
	MediaTypeDigests = "application/vnd.amber.digests.v1+text"
	// MediaTypeSignature is a signature sidecar, when there is one.
	MediaTypeSignature = "application/vnd.amber.signature.v1"
	// MediaTypeAttestation is NAME.intoto.jsonl: DSSE envelopes over
	// in-toto statements, one a line (amber sign).
	MediaTypeAttestation = "application/vnd.amber.intoto.v1+jsonl"
	// MediaTypeTimestamp is an RFC 3161 reply (NAME.tsr,
	// NAME.<keyid16>.tsr), the type RFC 3161 registers for it.
	MediaTypeTimestamp = "application/timestamp-reply"
)

// Annotations on the evidence manifest (and, with the OCI title, on each
// layer: the file name it is restored to).
const (
	AnnotationTitle    = "org.opencontainers.image.title"
	AnnotationCreated  = "org.opencontainers.image.created"
	AnnotationCase     = "vnd.amber.case"
	AnnotationExhibit  = "vnd.amber.exhibit"
	AnnotationExaminer = "vnd.amber.examiner"
	AnnotationVersion  = "vnd.amber.version"
	// AnnotationArchiveSHA256 repeats the archive's SHA-256 (the first
	// layer's digest) for listings that show annotations only.
	AnnotationArchiveSHA256 = "vnd.amber.archive.sha256"
)
