package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// FormatName and FormatVersion identify the archive format. A reader refuses
// any version it does not know rather than guessing.
const (
	FormatName    = "amber-evidence"
	FormatVersion = 1
)

// Limits on metadata read from an archive, which is untrusted input.
const (
	MaxManifestSize = 256 << 20
	MaxCustodySize  = 64 << 20
)

// Sentinel errors. Callers test them with errors.Is.
var (
	ErrNotArchive         = errors.New("manifest: not an amber archive")
	ErrUnsupportedVersion = errors.New("manifest: unsupported archive format version")
	ErrCorrupt            = errors.New("manifest: archive is damaged")
	ErrNotFound           = errors.New("manifest: not found")
)

// Manifest is amber/manifest.json: what was captured, from where, by whom,
// and where each piece lies in the archive.
type Manifest struct {
	Format        string      `json:"format"`
	FormatVersion int         `json:"format_version"`
	Tool          Tool        `json:"tool"`
	Case          Case        `json:"case"`
	Acquisition   Acquisition `json:"acquisition"`
	Artifacts     []Artifact  `json:"artifacts"`
	// Entries lists every tar member before the manifest, in order, with
	// where its content lies in the tar stream and its SHA-256.
	Entries []Entry `json:"entries"`
	Custody Custody `json:"custody"`
	// Anomalies are facts about the evidence worth an examiner's attention
	// (unsafe names, duplicate entries, dangling hard links): recorded, not
	// "fixed".
	Anomalies []Anomaly `json:"anomalies,omitempty"`
}

// Tool names the program that wrote the archive.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Compression names the zstd encoder and level of the frames.
	Compression string `json:"compression,omitempty"`
}

// Case is the examiner's case metadata.
type Case struct {
	Case     string `json:"case,omitempty"`
	Exhibit  string `json:"exhibit,omitempty"`
	Examiner string `json:"examiner,omitempty"`
	Notes    string `json:"notes,omitempty"`
}

// Acquisition records how the evidence was taken.
type Acquisition struct {
	Host        string    `json:"host"`
	OS          string    `json:"os"`
	Kernel      string    `json:"kernel,omitempty"`
	User        string    `json:"user"`
	UID         int       `json:"uid"`
	CommandLine []string  `json:"command_line"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Sources     []Source  `json:"sources"`
	Engine      string    `json:"engine,omitempty"`
	// Docker identifies the engine evidence was taken from.
	Docker *Engine `json:"docker,omitempty"`
}

// Engine identifies a Docker engine.
type Engine struct {
	Host          string `json:"host"` // DOCKER_HOST, or the default socket
	ID            string `json:"id"`
	Name          string `json:"name"` // the engine host's hostname
	Version       string `json:"version"`
	APIVersion    string `json:"api_version"`
	OS            string `json:"os,omitempty"`
	Kernel        string `json:"kernel,omitempty"`
	StorageDriver string `json:"storage_driver,omitempty"`
	Local         bool   `json:"local"`
	// Runtime is the runtime's kind when it is not a Docker engine
	// ("containerd"); Namespace the runtime's namespace captured from.
	Runtime   string `json:"runtime,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Offline is set when the runtime was not running: its state was read
	// from its files on a disk (a dead host's image, mounted read-only).
	Offline *Offline `json:"offline,omitempty"`
}

// Offline says where a dead host's runtime state was read from: the
// directory given as the host's root, the runtime's data root inside it,
// and the filesystem that holds it as this host's mount table showed it.
type Offline struct {
	Root     string `json:"root"`      // the host's root as given (amber capture host ROOT)
	DataRoot string `json:"data_root"` // the runtime's root inside it ("/var/lib/docker")
	Device   string `json:"device,omitempty"`
	Mount    string `json:"mount,omitempty"` // the mount point holding DataRoot
	FSType   string `json:"fs_type,omitempty"`
	// Options are the mount's options ("ro,relatime"): "ro" shows the
	// source could not be written.
	Options string `json:"mount_options,omitempty"`
}

// Source is one input the capture read.
type Source struct {
	Kind string `json:"kind"` // docker-save, docker-save-oci, oci-layout, engine
	Path string `json:"path"`
	// SHA256 of the source file when it is a single file (a tarball).
	SHA256 hashing.Digest `json:"sha256,omitzero"`
	Size   int64          `json:"size,omitempty"`
}

// Artifact kinds.
const (
	KindImage     = "image"
	KindContainer = "container"
	KindVolume    = "volume" // a named volume's contents: one layer
	// KindArtifact is an OCI artifact (an SBOM, a signature, an
	// attestation, a Helm chart): its manifest, config and blobs kept
	// byte for byte, with no file index (its blobs are not filesystems).
	KindArtifact = "artifact"
	// KindPod is a Kubernetes pod: its sandbox's metadata as the CRI gave
	// it (members under pods/<namespace>_<name>/); its containers are
	// container artifacts of their own.
	KindPod = "pod"
)

// Artifact is one captured thing: an image, or a container (its image's
// layers plus one layer of its changes, and its metadata and memory).
type Artifact struct {
	Kind string `json:"kind"`
	// Name is path-safe and unique in the archive: the <name> of the mount layout.
	Name string `json:"name"`
	// Refs are the references it had at the source (tags).
	Refs     []string       `json:"refs,omitempty"`
	ImageID  hashing.Digest `json:"image_id,omitzero"`
	Manifest Descriptor     `json:"manifest"`
	Config   Descriptor     `json:"config"`
	Layers   []Layer        `json:"layers"`
	// SourceManifest is the digest of the manifest as the source had it
	// (with compressed layers, perhaps); amber's own manifest references
	// the uncompressed layers.
	SourceManifest hashing.Digest `json:"source_manifest,omitzero"`
	// MerkleRoot binds the per-file hashes of all layers: RFC 6962 over the
	// layers' roots, base first.
	MerkleRoot hashing.Digest `json:"merkle_root"`
	Files      int            `json:"files"`
	// Container is set for a container artifact.
	Container *Container `json:"container,omitempty"`
	// Pod is set for a pod artifact.
	Pod *Pod `json:"pod,omitempty"`
	// Platform is an image's os/architecture[/variant], as the index that
	// listed it (else its config) says.
	Platform string `json:"platform,omitempty"`
	// ArtifactType, Blobs and Describes are set for an OCI artifact:
	// its artifactType (else its config's media type), its manifest's
	// layers as stored, and the image it is about (images/NAME), when the
	// archive holds it.
	ArtifactType string         `json:"artifact_type,omitempty"`
	Blobs        []Blob         `json:"blobs,omitempty"`
	Subject      hashing.Digest `json:"subject,omitzero"`
	Describes    string         `json:"describes,omitempty"`
}

// Blob is one blob of an OCI artifact, stored as the source had it.
type Blob struct {
	Descriptor
	// Title is its org.opencontainers.image.title annotation.
	Title string `json:"title,omitempty"`
	// Missing: the source did not hold it (recorded, not stored).
	Missing bool `json:"not_present,omitempty"`
}

// Container describes a captured container. Its artifact's layers are its
// image's layers followed by one layer of the container's changes (OCI
// whiteouts for deletions).
type Container struct {
	ID string `json:"id"`
	// Image is the name of the image artifact in the same archive.
	Image string `json:"image"`
	// ImageRef is the image as the container was created from it.
	ImageRef string `json:"image_ref,omitempty"`
	State    string `json:"state"`
	Paused   bool   `json:"paused_by_amber,omitempty"`
	// Route is how the filesystem was read: "upperdir" (the overlay
	// upper directory, read directly), "export" (the engine's export
	// stream compared with the image by content) or "snapshot" (the
	// container's snapshot mounted read-only, compared likewise).
	Route  string `json:"route"`
	Driver string `json:"storage_driver,omitempty"`
	// Members are the container's other files in the archive, by their
	// path under containers/<name>/ (inspect.json, changes.txt, logs/...,
	// memory/<pid>-<comm>/...).
	Members []Member `json:"members"`
	// Changes counts the content-aware change list (changes.txt).
	Changes ChangeCounts `json:"changes"`
	// Processes are the container's processes whose memory was taken.
	Processes []Process `json:"processes,omitempty"`
	// MemorySkipped says why memory was not taken, when it was not.
	MemorySkipped string  `json:"memory_skipped,omitempty"`
	Mounts        []Mount `json:"mounts,omitempty"`
}

// Pod is a Kubernetes pod as the CRI described it at capture.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// SandboxID is the pod sandbox's (pause container's) ID; the sandbox
	// is recorded, not captured.
	SandboxID string `json:"sandbox_id"`
	// Containers are the pod's containers as container artifacts of the
	// archive (containers/<name>), by their Kubernetes names.
	Containers map[string]string `json:"containers"`
	// Members are the pod's files in the archive, by their path under
	// pods/<name>/ (sandbox.json: the CRI's status of the sandbox, its
	// labels and annotations; containers.json: its containers' statuses).
	Members []Member `json:"members"`
}

// Member is a file of an artifact stored as its own tar member.
type Member struct {
	Path   string         `json:"path"`
	Entry  string         `json:"entry"`
	Size   int64          `json:"size"`
	SHA256 hashing.Digest `json:"sha256"`
}

// ChangeCounts summarises a change list.
type ChangeCounts struct {
	Added    int `json:"added"`
	Changed  int `json:"changed"`
	Deleted  int `json:"deleted"`
	Disagree int `json:"engine_disagrees"`
}

// Process is one process whose memory was dumped.
type Process struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// Dir is the member directory: memory/<pid>-<comm>.
	Dir        string   `json:"dir"`
	Mappings   int      `json:"mappings"`
	Bytes      int64    `json:"bytes"`
	Unreadable []Region `json:"unreadable,omitempty"`
	// Lost says what could not be taken (the process exited mid-dump).
	Lost string `json:"lost,omitempty"`
}

// Region is a range of a process's address space.
type Region struct {
	Start  uint64 `json:"start"`
	End    uint64 `json:"end"`
	Reason string `json:"reason"`
}

// Mount is a volume or bind mount of a container, as recorded.
type Mount struct {
	Type        string `json:"type"`
	Name        string `json:"name,omitempty"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	RW          bool   `json:"rw"`
	// Captured names the volume artifact holding its contents, if any.
	Captured string `json:"captured,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType string         `json:"mediaType"`
	Digest    hashing.Digest `json:"digest"`
	Size      int64          `json:"size"`
}

// Layer is one layer of an artifact.
type Layer struct {
	Descriptor
	// Source describes the layer as read (compressed digest and media type),
	// when it differs from what is stored.
	SourceDigest    hashing.Digest `json:"source_digest,omitzero"`
	SourceMediaType string         `json:"source_media_type,omitempty"`
	// SourceURLs are a foreign (non-distributable) layer's URLs.
	SourceURLs []string `json:"source_urls,omitempty"`
	// SourceSize is the size of the layer as the source had it.
	SourceSize int64 `json:"source_size,omitempty"`
	// Missing: the source did not hold the layer's bytes (a foreign layer,
	// which docker save leaves out). Nothing is stored for it; its views
	// are empty, and an anomaly says so.
	Missing bool `json:"not_present,omitempty"`
	// DiffID is the image config's digest of the layer when the layer
	// stored differs from it: a layer the runtime's own store changed
	// after the pull (found on disk, anomaly layer-modified-on-disk), or
	// a mismatched layer kept with --keep-mismatched. The stored bytes
	// are the layer as found; Digest is theirs.
	DiffID     hashing.Digest `json:"claimed_diff_id,omitzero"`
	Index      Descriptor     `json:"index"`
	Files      int            `json:"files"`
	MerkleRoot hashing.Digest `json:"merkle_root"`
	// Trailing is set when bytes other than zero padding follow the layer
	// tar's end-of-archive marker (the view shows them as layers/N.trailing).
	Trailing *Trailing `json:"trailing,omitempty"`
}

// Trailing is data after a layer tar's end-of-archive marker (two zero
// blocks): no tar reader shows it, yet it is in the blob and the diff_id.
// eStargz keeps its table of contents there; so can an attacker hide data.
//
// Offset is where the first 512-byte block after the marker that holds a
// non-zero byte starts: tar writers pad with whole zero blocks (up to a
// record of 10 KiB), so what the padding cannot be starts there, leading
// zeros of that block included. The data runs to the end of the blob.
type Trailing struct {
	Offset int64          `json:"offset"` // in the layer blob
	Size   int64          `json:"size"`
	Type   string         `json:"type"` // sniffed from its first bytes: gzip, zstd, tar, json, text, binary, ...
	SHA256 hashing.Digest `json:"sha256"`
}

// Entry is a tar member of the archive.
type Entry struct {
	Name string `json:"name"`
	// Offset of the first header block (PAX headers included) in the tar stream.
	HeaderOffset int64 `json:"header_offset"`
	// Offset of the content.
	Offset int64          `json:"offset"`
	Size   int64          `json:"size"`
	SHA256 hashing.Digest `json:"sha256"`
}

// Custody points at the sealed custody log.
type Custody struct {
	Entry  string         `json:"entry"`
	Events int            `json:"events"`
	Head   hashing.Digest `json:"head"`
}

// Anomaly is something odd found in the evidence.
type Anomaly struct {
	Artifact string `json:"artifact,omitempty"`
	Layer    int    `json:"layer"`
	Path     string `json:"path,omitempty"`
	Kind     string `json:"kind"`
	Detail   string `json:"detail"`
}

// Marshal encodes m as amber stores it: indented, stable field order, no
// HTML escaping, trailing newline.
func (m *Manifest) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	return buf.Bytes(), nil
}

// ParseManifest decodes and checks a manifest read from an archive.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes exceeds %d", ErrCorrupt, len(b), MaxManifestSize)
	}
	// Look at the version before anything else, so a future format with
	// different fields gets "unsupported version", not a parse error.
	var head struct {
		Format        string `json:"format"`
		FormatVersion int    `json:"format_version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%w: manifest is not valid JSON: %v", ErrCorrupt, err)
	}
	if head.Format != FormatName {
		return nil, fmt.Errorf("%w: manifest format is %q, want %q", ErrNotArchive, head.Format, FormatName)
	}
	if head.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("%w: archive is format version %d; this amber reads version %d", ErrUnsupportedVersion, head.FormatVersion, FormatVersion)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// check enforces invariants the reader relies on, so a crafted manifest
// cannot steer reads to nonsense offsets.
func (m *Manifest) check() error {
	var prevEnd int64
	names := make(map[string]bool, len(m.Entries))
	for i, e := range m.Entries {
		if e.HeaderOffset < prevEnd || e.Offset < e.HeaderOffset || e.Size < 0 || e.Offset+e.Size < e.Offset {
			return fmt.Errorf("%w: manifest entry %d (%q) has impossible offsets", ErrCorrupt, i, e.Name)
		}
		if names[e.Name] {
			return fmt.Errorf("%w: manifest lists %q twice", ErrCorrupt, e.Name)
		}
		names[e.Name] = true
		prevEnd = e.Offset + e.Size
	}
	seen := make(map[string]bool)
	for _, a := range m.Artifacts {
		if a.Name == "" || !SafeName(a.Name) {
			return fmt.Errorf("%w: artifact name %q is not path-safe", ErrCorrupt, a.Name)
		}
		key := a.Kind + "/" + a.Name
		if seen[key] {
			return fmt.Errorf("%w: artifact %s listed twice", ErrCorrupt, key)
		}
		seen[key] = true
	}
	return nil
}

// Entry returns the tar member called name.
func (m *Manifest) Entry(name string) (Entry, bool) {
	for _, e := range m.Entries {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// BlobName is the tar member name of a blob in the OCI layout.
func BlobName(d hashing.Digest) string { return "blobs/sha256/" + d.Hex() }

// IndexName is the tar member name of a layer's file index.
func IndexName(layer hashing.Digest) string { return "amber/index/" + layer.Hex() }

// Artifact returns the artifact of kind and name.
func (m *Manifest) Artifact(kind, name string) (*Artifact, bool) {
	for i := range m.Artifacts {
		if m.Artifacts[i].Kind == kind && m.Artifacts[i].Name == name {
			return &m.Artifacts[i], true
		}
	}
	return nil, false
}

// Members are a container's or a pod's files stored as members (nil for
// other artifacts).
func (a *Artifact) Members() []Member {
	switch {
	case a.Container != nil:
		return a.Container.Members
	case a.Pod != nil:
		return a.Pod.Members
	}
	return nil
}
