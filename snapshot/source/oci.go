package source

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// An OCI image layout or archive: its indexes walked once by digest, image
// manifests read as images, OCI artifacts and BuildKit attestations kept as
// artifacts, and the names of both in the mount layout.

// blobPath is where a layout keeps the blob of digest d (as written).
func blobPath(d string) (string, hashing.Digest, error) {
	h, err := hashing.Parse(d)
	if err != nil || !strings.HasPrefix(d, "sha256:") {
		return "", h, fmt.Errorf("%w: digest %q is not sha256", ErrSource, d)
	}
	return "blobs/sha256/" + h.Hex(), h, nil
}

// readBlob reads a small blob and checks it against its descriptor.
func (s *Source) readBlob(d descriptor) ([]byte, hashing.Digest, error) {
	name, want, err := blobPath(d.digest)
	if err != nil {
		return nil, want, err
	}
	if d.Size > MaxJSON {
		return nil, want, fmt.Errorf("%w: %s is %d bytes; refusing JSON over %d", ErrSource, name, d.Size, MaxJSON)
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

// anomaly records something odd about the source itself.
func (s *Source) anomaly(a manifest.Anomaly) {
	a.Layer = -1
	s.Anomalies = append(s.Anomalies, a)
}

// BuildKit marks the attestation manifests it adds to an image index.
const (
	annotationRefType   = "vnd.docker.reference.type"
	annotationRefDigest = "vnd.docker.reference.digest"
)

// ociWalk walks an OCI layout's indexes once: each index and manifest is
// read once by digest, however many indexes list it, and gathers every
// reference that reaches it.
type ociWalk struct {
	s       *Source
	reached map[string][]refHolder // index digest -> what it led to
	images  map[string]*Image      // manifest digest -> image
	arts    map[string]*Artifact   // manifest digest -> artifact
	configs map[string][]byte      // config digest -> config, read once
}

// refHolder is an image or an artifact: something refs are added to.
type refHolder interface{ addRefs(refs []string) }

func (img *Image) addRefs(refs []string)  { img.Refs = appendNew(img.Refs, refs...) }
func (a *Artifact) addRefs(refs []string) { a.Refs = appendNew(a.Refs, refs...) }

func appendNew(to []string, add ...string) []string {
	for _, r := range add {
		if !slices.Contains(to, r) {
			to = append(to, r)
		}
	}
	return to
}

func (s *Source) readOCI() error {
	var idx indexDoc
	b, err := s.readJSON("index.json", &idx)
	if err != nil {
		return err
	}
	s.index = b
	w := &ociWalk{s: s, reached: map[string][]refHolder{}, images: map[string]*Image{}, arts: map[string]*Artifact{}, configs: map[string][]byte{}}
	if _, err := w.index(idx, "index.json", nil, 0); err != nil {
		return err
	}
	s.nameImages()
	s.linkArtifacts()
	return nil
}

// index walks one index; where names the index for messages.
func (w *ociWalk) index(idx indexDoc, where string, inherited []string, depth int) ([]refHolder, error) {
	if depth > 4 {
		return nil, fmt.Errorf("%w: image indexes nested too deep", ErrSource)
	}
	s := w.s
	var out []refHolder
	have := map[refHolder]bool{}
	add := func(hs ...refHolder) {
		for _, h := range hs {
			if !have[h] {
				have[h] = true
				out = append(out, h)
			}
		}
	}
	for _, d := range idx.Manifests {
		if len(s.Images)+len(s.Artifacts) > MaxImages {
			return nil, fmt.Errorf("%w: the layout holds more than %d images and artifacts; refusing (a source this large is best split)", ErrSource, MaxImages)
		}
		refs := slices.Clone(inherited)
		if n := d.Annotations[AnnotationContainerdN]; n != "" {
			refs = appendNew(refs, n)
		} else if n := d.Annotations[AnnotationRefName]; n != "" {
			refs = appendNew(refs, n)
		}
		if h, ok := w.images[d.digest]; ok {
			h.addRefs(refs)
			add(h)
			continue
		}
		if h, ok := w.arts[d.digest]; ok {
			h.addRefs(refs)
			add(h)
			continue
		}
		if hs, ok := w.reached[d.digest]; ok {
			for _, h := range hs {
				h.addRefs(refs)
			}
			add(hs...)
			continue
		}
		notCaptured := func(why string) {
			s.anomaly(manifest.Anomaly{Kind: "not-captured",
				Detail: fmt.Sprintf("%s lists %s (%s, %d bytes): %s", where, d.digest, d.MediaType, d.Size, why)})
		}
		switch d.MediaType {
		case types.OCIImageIndex, types.DockerManifestList:
			b, _, err := s.readBlob(d)
			if err != nil {
				if !IsNotPresent(err) {
					return nil, err
				}
				notCaptured("the index is not in the source")
				continue
			}
			var sub indexDoc
			if err := json.Unmarshal(b, &sub); err != nil {
				return nil, fmt.Errorf("%w: index %s: %v", ErrSource, d.digest, err)
			}
			hs, err := w.index(sub, "index "+d.digest, refs, depth+1)
			if err != nil {
				return nil, err
			}
			w.reached[d.digest] = hs
			add(hs...)
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
			h, err := w.manifest(d, refs)
			if err != nil {
				if !IsNotPresent(err) {
					return nil, err
				}
				// An index often lists every platform while a pull or
				// an export keeps only some.
				notCaptured("the manifest is not in the source")
				continue
			}
			add(h)
		default:
			notCaptured("amber does not know this media type")
		}
	}
	return out, nil
}

// manifest reads one image manifest: an image, or an artifact.
func (w *ociWalk) manifest(d descriptor, refs []string) (refHolder, error) {
	s := w.s
	b, md, err := s.readBlob(d)
	if err != nil {
		return nil, err
	}
	var m manifestDoc
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrSource, d.digest, err)
	}
	if kind := artifactKind(d, &m); kind != "" {
		a, err := s.readArtifact(d, b, md, &m, kind)
		if err != nil {
			return nil, err
		}
		a.Refs = refs
		w.arts[d.digest] = a
		s.Artifacts = append(s.Artifacts, a)
		return a, nil
	}
	mt := d.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	img := &Image{SourceManifest: md, Manifest: b, ManifestType: mt, Refs: refs, Platform: PlatformString(d.Platform), store: s.store}
	// The manifest is here: what it names must be too (only the manifest
	// itself may be "not in the source"). A config shared by many
	// manifests is read once.
	cfg, ok := w.configs[m.Config.digest]
	cd, _ := hashing.Parse(m.Config.digest)
	if !ok {
		if cfg, cd, err = s.readBlob(m.Config); err != nil {
			return nil, fmt.Errorf("%w: manifest %s: config: %v", ErrSource, d.digest, err)
		}
		w.configs[m.Config.digest] = cfg
	} else if int64(len(cfg)) != m.Config.Size {
		return nil, fmt.Errorf("%w: manifest %s: config %s is %d bytes, its descriptor says %d", ErrSource, d.digest, m.Config.digest, len(cfg), m.Config.Size)
	}
	img.Config, img.ConfigDigest = cfg, cd
	if err := img.parseConfig(len(m.Layers)); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.digest, err)
	}
	for _, l := range m.Layers {
		name, ld, err := blobPath(l.digest)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d.digest, err)
		}
		ls := Layer{Name: name, Digest: ld, MediaType: l.MediaType, URLs: l.URLs, SourceSize: l.Size}
		rc, size, err := s.store.Open(name)
		switch {
		case err != nil && isForeign(l.MediaType) && IsNotPresent(err):
			ls.Missing = true
		case err != nil:
			return nil, fmt.Errorf("%w: manifest %s: layer %s: %v", ErrSource, d.digest, l.digest, err)
		default:
			rc.Close()
			if size != l.Size {
				return nil, fmt.Errorf("%w: layer %s is %d bytes, its descriptor says %d", ErrSource, l.digest, size, l.Size)
			}
			ls.Size = size
		}
		img.Layers = append(img.Layers, ls)
	}
	w.images[d.digest] = img
	s.Images = append(s.Images, img)
	return img, nil
}

// Image config media types; any other config makes a manifest an artifact.
var imageConfigTypes = map[types.MediaType]bool{types.OCIConfigJSON: true, types.DockerConfigJSON: true}

// artifactKind says what a manifest is when it is not an image (""):
// BuildKit's attestation manifests, and OCI artifacts (an artifactType, a
// config that is not an image config, or layers that are not layer tars).
func artifactKind(d descriptor, m *manifestDoc) string {
	if d.Annotations[annotationRefType] == "attestation-manifest" {
		return "attestation"
	}
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	if len(m.Layers) > 0 && !slices.ContainsFunc(m.Layers, func(l descriptor) bool { return l.MediaType != "application/vnd.in-toto+json" }) {
		return "attestation" // in-toto statements, as BuildKit writes them
	}
	if !imageConfigTypes[m.Config.MediaType] {
		return string(m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if !isLayerType(l.MediaType) {
			return "layers of " + string(l.MediaType)
		}
	}
	return ""
}

// dockerUncompressedForeign has no go-containerregistry constant.
const dockerUncompressedForeign types.MediaType = "application/vnd.docker.image.rootfs.foreign.diff.tar"

func isLayerType(mt types.MediaType) bool {
	switch types.MediaType(strings.TrimSuffix(strings.TrimSuffix(string(mt), "+gzip"), "+zstd")) {
	case types.OCIUncompressedLayer, types.OCIUncompressedRestrictedLayer,
		types.DockerUncompressedLayer, types.DockerLayer, dockerUncompressedForeign, types.DockerForeignLayer:
		return true
	}
	return false
}

// Artifact is an OCI artifact found in a source: not an image, kept byte
// for byte (manifest, config, blobs) with no file index.
type Artifact struct {
	Refs         []string
	Kind         string // "attestation", or its artifact type
	Manifest     []byte
	ManifestDesc v1.Descriptor
	Config       v1.Descriptor
	Blobs        []v1.Descriptor
	// Subject is the manifest it is about: its subject field, or the
	// digest BuildKit's annotation names.
	Subject hashing.Digest
	// Describes is the name of the image in the same source whose
	// manifest is Subject (set once images are named).
	Describes string
	name      string
}

func (s *Source) readArtifact(d descriptor, b []byte, md hashing.Digest, m *manifestDoc, kind string) (*Artifact, error) {
	a := &Artifact{Kind: kind, Manifest: b, ManifestDesc: v1.Descriptor{MediaType: d.MediaType, Digest: V1Hash(md), Size: int64(len(b))},
		Config: m.Config.Descriptor}
	if a.ManifestDesc.MediaType == "" {
		a.ManifestDesc.MediaType = types.OCIManifestSchema1
	}
	subj := d.Annotations[annotationRefDigest]
	if m.Subject != nil {
		subj = m.Subject.digest
	}
	if subj != "" {
		if sd, err := hashing.Parse(subj); err == nil && strings.HasPrefix(subj, "sha256:") {
			a.Subject = sd
		}
	}
	// Every blob's digest is sha256 (checked here), so the v1.Descriptors
	// handed on hold it whole.
	for _, bd := range append([]descriptor{m.Config}, m.Layers...) {
		if _, _, err := blobPath(bd.digest); err != nil {
			return nil, fmt.Errorf("artifact %s: %w", d.digest, err)
		}
	}
	for _, l := range m.Layers {
		a.Blobs = append(a.Blobs, l.Descriptor)
	}
	return a, nil
}

// nameImages gives each image its mount-layout name: its first reference
// made path-safe, else its short ID. Images that would share a name (the
// platforms of one index) are told apart by platform, else by short ID.
func (s *Source) nameImages() {
	groups := map[string][]*Image{}
	for _, img := range s.Images {
		base := img.ConfigDigest.Short()
		for _, r := range img.Refs {
			if n := manifest.PathSafe(r); n != "" {
				base = n
				break
			}
		}
		img.name = base
		groups[base] = append(groups[base], img)
	}
	taken := map[string]bool{}
	for _, img := range s.Images {
		g := groups[img.name]
		if len(g) == 1 {
			taken[img.name] = true
		}
	}
	for _, img := range s.Images {
		if len(groups[img.name]) == 1 {
			continue
		}
		base := img.name
		name := ""
		if p := manifest.PathSafe(strings.ReplaceAll(img.Platform, "/", "-")); p != "" {
			name = base + "_" + p
		}
		if name == "" || taken[name] {
			name = base + "_" + img.ConfigDigest.Short()
		}
		for i := 2; taken[name]; i++ {
			name = fmt.Sprintf("%s_%s_%d", base, img.ConfigDigest.Short(), i)
		}
		taken[name] = true
		img.name = name
	}
}

// linkArtifacts names each artifact and ties it to the image it is about.
func (s *Source) linkArtifacts() {
	bySubject := map[hashing.Digest]*Image{}
	for _, img := range s.Images {
		bySubject[img.SourceManifest] = img
	}
	taken := map[string]bool{}
	for _, a := range s.Artifacts {
		md := Digest(a.ManifestDesc.Digest)
		name := ""
		if img, ok := bySubject[a.Subject]; ok && !a.Subject.IsZero() {
			a.Describes = img.Name()
			name = img.Name() + "_" + manifest.PathSafe(lastWord(a.Kind))
		}
		for _, r := range a.Refs {
			if n := manifest.PathSafe(r); n != "" && name == "" {
				name = n
			}
		}
		if name == "" || taken[name] {
			name = strings.Trim(name+"_"+md.Short(), "_")
		}
		taken[name] = true
		a.name = name
	}
}

// lastWord shortens a media type to its last word: "attestation",
// "application/vnd.cyclonedx+json" -> "vnd.cyclonedx_json".
func lastWord(mt string) string {
	if i := strings.LastIndexByte(mt, '/'); i >= 0 {
		mt = mt[i+1:]
	}
	if mt == "" {
		return "artifact"
	}
	return mt
}

// Name is the artifact's mount-layout name.
func (a *Artifact) Name() string { return a.name }
