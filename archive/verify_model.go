package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// What ties an archive's members together: image and artifact manifests,
// Merkle roots, index.json, the sealed custody log.

// checkArtifact checks an OCI artifact: its manifest lists the config and
// blobs recorded, each stored one is there (its bytes are checked against
// its name with every blob), and the Merkle root binds their digests.
func (v *verifier) checkArtifact(a manifest.Artifact) {
	where := "artifacts/" + a.Name
	var om storedManifest
	if !v.ociManifest(a, where, "manifest", &om) {
		return
	}
	ok := om.Config.Digest == a.Config.Digest.String() && len(om.Layers) == len(a.Blobs)
	for i := 0; ok && i < len(om.Layers); i++ {
		ok = om.Layers[i].Digest == a.Blobs[i].Digest.String() && om.Layers[i].Size == a.Blobs[i].Size
	}
	if !ok {
		v.add(where, "manifest %s does not list the config and blobs the amber manifest records", a.Manifest.Digest)
	}
	for i, b := range a.Blobs {
		if _, stored := v.a.Blob(manifest.BlobName(b.Digest)); stored == b.Missing {
			v.add(fmt.Sprintf("%s blob %d", where, i), "blob %s is recorded as %s, and is %s", b.Digest, presence(!b.Missing), presence(stored))
		}
	}
	if got := ArtifactRoot(a); got != a.MerkleRoot {
		v.add(where, "Merkle root over its blobs is %s, the manifest says %s", got.Hex(), a.MerkleRoot.Hex())
	}
}

// storedManifest is what verify reads of an artifact's OCI manifest: the
// digests and sizes it lists, as strings. The artifact's manifest is the
// source's own bytes, which capture took through a tolerant reading (an
// odd descriptor is kept, flagged): a strict v1.Manifest would report a
// problem on an artifact captured correctly. Image manifests, which amber
// writes itself, are read as v1.Manifest.
type storedManifest struct {
	Config struct{ Digest string }
	Layers []struct {
		Digest string
		Size   int64
	}
}

// ociManifest reads artifact a's stored OCI manifest into om; a problem is
// reported under where, naming it what.
func (v *verifier) ociManifest(a manifest.Artifact, where, what string, om any) bool {
	mb, err := v.a.ReadEntry(manifest.BlobName(a.Manifest.Digest), 16<<20)
	if err != nil {
		v.add(where, "%s: %v", what, err)
		return false
	}
	if err := json.Unmarshal(mb, om); err != nil {
		v.add(where, "%s is not valid JSON: %v", what, err)
		return false
	}
	return true
}

func presence(stored bool) string {
	if stored {
		return "stored"
	}
	return "not present"
}

// ArtifactRoot is an OCI artifact's Merkle root: RFC 6962 over the
// digests of its config and blobs, in manifest order.
func ArtifactRoot(a manifest.Artifact) hashing.Digest {
	leaves := []hashing.Digest{hashing.LeafHash([]byte(a.Config.Digest.String()))}
	for _, b := range a.Blobs {
		leaves = append(leaves, hashing.LeafHash([]byte(b.Digest.String())))
	}
	return hashing.MerkleRoot(leaves)
}

// checkModel checks what ties the members together: Merkle roots, image
// manifests, index.json, the custody chain.
func (v *verifier) checkModel() {
	for _, a := range v.a.Manifest.Artifacts {
		if a.Kind == manifest.KindArtifact {
			v.checkArtifact(a)
			continue
		}
		if a.Kind == manifest.KindPod { // its sandbox's metadata: members only
			v.checkMembers(a)
			continue
		}
		v.checkLayers(a)
		v.checkMembers(a)
		if a.Kind != manifest.KindVolume { // a volume's contents: one layer, no image manifest
			v.checkImageManifest(a)
		}
	}
	v.checkIndexJSON()
	v.checkSealedLog()
}

// checkLayers checks each layer's index and Merkle root, and the root over
// them that binds the artifact.
func (v *verifier) checkLayers(a manifest.Artifact) {
	where := a.Kind + "s/" + a.Name
	var roots []hashing.Digest
	files := 0
	for i, l := range a.Layers {
		roots = append(roots, hashing.LeafHash([]byte(l.MerkleRoot.String())))
		if l.Missing {
			// Recorded, never stored: nothing to check but the image
			// manifest's descriptor (checkImageManifest).
			continue
		}
		lw := fmt.Sprintf("%s layer %d", where, i)
		ix, err := v.a.Index(l.Digest)
		if err == nil {
			err = ix.Check()
		}
		if err != nil {
			v.add(lw, "file index: %v", err)
			roots = roots[:len(roots)-1]
			continue
		}
		root, n, err := ix.MerkleRoot()
		if err != nil || root != l.MerkleRoot || n != l.Files {
			v.add(lw, "Merkle root over %d files is %s, the manifest says %s over %d", n, root.Hex(), l.MerkleRoot.Hex(), l.Files)
		}
		if _, ok := v.a.Blob(manifest.BlobName(l.Digest)); !ok {
			v.add(lw, "layer blob %s is missing", l.Digest)
		}
		files += l.Files
	}
	if got := hashing.MerkleRoot(roots); got != a.MerkleRoot || files != a.Files {
		v.add(where, "Merkle root over its layers is %s, the manifest says %s", got.Hex(), a.MerkleRoot.Hex())
	}
}

// checkMembers checks that a container's own files are the members the
// manifest records.
func (v *verifier) checkMembers(a manifest.Artifact) {
	members := a.Members()
	if members == nil {
		return
	}
	where := a.Kind + "s/" + a.Name
	for _, mem := range members {
		e, ok := v.a.Manifest.Entry(mem.Entry)
		if !ok || !strings.HasPrefix(mem.Entry, "amber/"+a.Kind+"s/"+a.Name+"/") {
			v.add(where+"/"+mem.Path, "member %s is missing", mem.Entry)
		} else if e.SHA256 != mem.SHA256 || e.Size != mem.Size {
			v.add(where+"/"+mem.Path, "member %s is recorded with a different digest or size", mem.Entry)
		}
	}
}

// checkImageManifest checks that an image's stored OCI manifest lists the
// config and layers the amber manifest records (a layer not present: the
// source's own descriptor).
func (v *verifier) checkImageManifest(a manifest.Artifact) {
	where := a.Kind + "s/" + a.Name
	var om v1.Manifest
	if !v.ociManifest(a, where, "image manifest", &om) {
		return
	}
	ok := om.Config.Digest.String() == a.Config.Digest.String() && len(om.Layers) == len(a.Layers)
	for i := 0; ok && i < len(om.Layers); i++ {
		l := a.Layers[i]
		if l.Missing {
			ok = om.Layers[i].Digest.String() == l.SourceDigest.String() && om.Layers[i].Size == l.SourceSize
			continue
		}
		ok = om.Layers[i].Digest.String() == l.Digest.String() && om.Layers[i].Size == l.Size
	}
	if !ok {
		v.add(where, "image manifest %s does not list the config and layers the amber manifest records", a.Manifest.Digest)
		return
	}
	v.checkDiffIDs(a, where)
}

// checkDiffIDs checks each layer against the config's diff_ids: a layer
// is its diff_id's, or records the diff_id it claims (claimed_diff_id: a
// layer found changed on disk, or kept mismatched), so that no stored
// layer stands for a config's layer it is not recorded as differing from.
func (v *verifier) checkDiffIDs(a manifest.Artifact, where string) {
	cb, err := v.a.ReadEntry(manifest.BlobName(a.Config.Digest), 16<<20)
	if err != nil {
		v.add(where, "config: %v", err)
		return
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cb, &cfg); err != nil {
		v.add(where, "config %s is not valid JSON: %v", a.Config.Digest, err)
		return
	}
	if len(cfg.RootFS.DiffIDs) != len(a.Layers) {
		v.add(where, "config %s lists %d diff_ids for %d layers", a.Config.Digest, len(cfg.RootFS.DiffIDs), len(a.Layers))
		return
	}
	for i, l := range a.Layers {
		want := l.Digest
		if !l.DiffID.IsZero() {
			want = l.DiffID
		}
		if cfg.RootFS.DiffIDs[i] != want.String() {
			v.add(fmt.Sprintf("%s/layers/%d", where, i), "layer %s stands for the config's diff_id %s and records no difference from it", l.Digest, cfg.RootFS.DiffIDs[i])
		}
	}
}

// refNameAnnotation names an image in index.json (OCI image spec,
// annotations.md, org.opencontainers.image.ref.name).
const refNameAnnotation = "org.opencontainers.image.ref.name"

// checkIndexJSON checks that index.json names every image, container and
// artifact.
func (v *verifier) checkIndexJSON() {
	ib, err := v.a.ReadEntry("index.json", 16<<20)
	if err != nil {
		v.add("index.json", "%v", err)
		return
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(ib, &idx); err != nil {
		v.add("index.json", "not valid JSON: %v", err)
	}
	listed := map[string]bool{}
	for _, d := range idx.Manifests {
		listed[d.Digest.String()+" "+d.Annotations[refNameAnnotation]] = true
	}
	for _, a := range v.a.Manifest.Artifacts {
		if a.Kind != manifest.KindVolume && a.Kind != manifest.KindPod && !listed[a.Manifest.Digest.String()+" "+a.Name] {
			v.add("index.json", "does not name %s/%s", a.Kind, a.Name)
		}
	}
}

// checkSealedLog checks the custody log sealed in the archive against the
// head and count the manifest records.
func (v *verifier) checkSealedLog() {
	m := v.a.Manifest
	cb, err := v.a.ReadEntry(m.Custody.Entry, manifest.MaxCustodySize)
	if err != nil {
		v.add("sealed custody log", "%v", err)
		return
	}
	evs, head, err := manifest.ParseCustody(bytes.NewReader(cb), hashing.Digest{}, 0)
	v.r.SealedEvents = len(evs)
	v.sealed = evs
	switch {
	case err != nil:
		v.add("sealed custody log", "%v", err)
	case head != m.Custody.Head || len(evs) != m.Custody.Events:
		v.add("sealed custody log", "ends at %s after %d events; the manifest says %s after %d", head.Hex(), len(evs), m.Custody.Head.Hex(), m.Custody.Events)
	default:
		v.sealedOK = true
	}
}
