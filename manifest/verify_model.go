package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/amber-forensics/amber/hashing"
)

// What ties an archive's members together: image and artifact manifests,
// Merkle roots, index.json, the sealed custody log.

// checkArtifact checks an OCI artifact: its manifest lists the config and
// blobs recorded, each stored one is there (its bytes are checked against
// its name with every blob), and the Merkle root binds their digests.
func (v *verifier) checkArtifact(a Artifact) {
	where := "artifacts/" + a.Name
	om, ok := v.ociManifest(a, where, "manifest")
	if !ok {
		return
	}
	ok = om.Config.Digest == a.Config.Digest.String() && len(om.Layers) == len(a.Blobs)
	for i := 0; ok && i < len(om.Layers); i++ {
		ok = om.Layers[i].Digest == a.Blobs[i].Digest.String() && om.Layers[i].Size == a.Blobs[i].Size
	}
	if !ok {
		v.add(where, "manifest %s does not list the config and blobs the amber manifest records", a.Manifest.Digest)
	}
	for i, b := range a.Blobs {
		if _, stored := v.a.Blob(BlobName(b.Digest)); stored == b.Missing {
			v.add(fmt.Sprintf("%s blob %d", where, i), "blob %s is recorded as %s, and is %s", b.Digest, presence(!b.Missing), presence(stored))
		}
	}
	if got := ArtifactRoot(a); got != a.MerkleRoot {
		v.add(where, "Merkle root over its blobs is %s, the manifest says %s", got.Hex(), a.MerkleRoot.Hex())
	}
}

// storedManifest is what verify reads of an OCI manifest stored in the
// archive: the digests and sizes it lists.
type storedManifest struct {
	Config struct{ Digest string }
	Layers []struct {
		Digest string
		Size   int64
	}
}

// ociManifest reads artifact a's stored OCI manifest; a problem is
// reported under where, naming it what.
func (v *verifier) ociManifest(a Artifact, where, what string) (storedManifest, bool) {
	var om storedManifest
	mb, err := v.a.ReadEntry(BlobName(a.Manifest.Digest), 16<<20)
	if err != nil {
		v.add(where, "%s: %v", what, err)
		return om, false
	}
	if err := json.Unmarshal(mb, &om); err != nil {
		v.add(where, "%s is not valid JSON: %v", what, err)
		return om, false
	}
	return om, true
}

func presence(stored bool) string {
	if stored {
		return "stored"
	}
	return "not present"
}

// ArtifactRoot is an OCI artifact's Merkle root: RFC 6962 over the
// digests of its config and blobs, in manifest order.
func ArtifactRoot(a Artifact) hashing.Digest {
	leaves := []hashing.Digest{hashing.LeafHash([]byte(a.Config.Digest.String()))}
	for _, b := range a.Blobs {
		leaves = append(leaves, hashing.LeafHash([]byte(b.Digest.String())))
	}
	return hashing.MerkleRoot(leaves)
}

// checkModel checks what ties the members together: Merkle roots, image
// manifests, index.json, the custody chain.
func (v *verifier) checkModel() {
	m := v.a.Manifest
	for _, a := range m.Artifacts {
		where := a.Kind + "s/" + a.Name
		if a.Kind == KindArtifact {
			v.checkArtifact(a)
			continue
		}
		var roots []hashing.Digest
		files := 0
		for i, l := range a.Layers {
			if l.Missing {
				// Recorded, never stored: nothing to check but the
				// image manifest's descriptor, below.
				roots = append(roots, hashing.LeafHash([]byte(l.MerkleRoot.String())))
				continue
			}
			ix, err := v.a.Index(l.Digest)
			if err != nil {
				v.add(fmt.Sprintf("%s layer %d", where, i), "file index: %v", err)
				continue
			}
			if err := ix.Check(); err != nil {
				v.add(fmt.Sprintf("%s layer %d", where, i), "file index: %v", err)
				continue
			}
			root, n, err := ix.MerkleRoot()
			if err != nil || root != l.MerkleRoot || n != l.Files {
				v.add(fmt.Sprintf("%s layer %d", where, i), "Merkle root over %d files is %s, the manifest says %s over %d", n, root.Hex(), l.MerkleRoot.Hex(), l.Files)
			}
			if _, ok := v.a.Blob(BlobName(l.Digest)); !ok {
				v.add(fmt.Sprintf("%s layer %d", where, i), "layer blob %s is missing", l.Digest)
			}
			roots = append(roots, hashing.LeafHash([]byte(l.MerkleRoot.String())))
			files += l.Files
		}
		if got := hashing.MerkleRoot(roots); got != a.MerkleRoot || files != a.Files {
			v.add(where, "Merkle root over its layers is %s, the manifest says %s", got.Hex(), a.MerkleRoot.Hex())
		}
		if a.Container != nil {
			for _, mem := range a.Container.Members {
				e, ok := m.Entry(mem.Entry)
				if !ok || !strings.HasPrefix(mem.Entry, "amber/containers/"+a.Name+"/") {
					v.add(where+"/"+mem.Path, "member %s is missing", mem.Entry)
				} else if e.SHA256 != mem.SHA256 || e.Size != mem.Size {
					v.add(where+"/"+mem.Path, "member %s is recorded with a different digest or size", mem.Entry)
				}
			}
		}
		if a.Kind == KindVolume {
			continue // a volume's contents: one layer, no image manifest
		}
		om, ok := v.ociManifest(a, where, "image manifest")
		if !ok {
			continue
		}
		ok = om.Config.Digest == a.Config.Digest.String() && len(om.Layers) == len(a.Layers)
		for i := 0; ok && i < len(om.Layers); i++ {
			l := a.Layers[i]
			if l.Missing {
				ok = om.Layers[i].Digest == l.SourceDigest.String() && om.Layers[i].Size == l.SourceSize
				continue
			}
			ok = om.Layers[i].Digest == l.Digest.String() && om.Layers[i].Size == l.Size
		}
		if !ok {
			v.add(where, "image manifest %s does not list the config and layers the amber manifest records", a.Manifest.Digest)
		}
	}
	ib, err := v.a.ReadEntry("index.json", 16<<20)
	if err != nil {
		v.add("index.json", "%v", err)
	} else {
		var idx struct {
			Manifests []struct {
				Digest      string
				Annotations map[string]string
			}
		}
		if err := json.Unmarshal(ib, &idx); err != nil {
			v.add("index.json", "not valid JSON: %v", err)
		}
		listed := map[string]bool{}
		for _, d := range idx.Manifests {
			listed[d.Digest+" "+d.Annotations["org.opencontainers.image.ref.name"]] = true
		}
		for _, a := range m.Artifacts {
			if a.Kind != KindVolume && !listed[a.Manifest.Digest.String()+" "+a.Name] {
				v.add("index.json", "does not name %s/%s", a.Kind, a.Name)
			}
		}
	}
	cb, err := v.a.ReadEntry(m.Custody.Entry, MaxCustodySize)
	if err != nil {
		v.add("sealed custody log", "%v", err)
		return
	}
	evs, head, err := ParseCustody(bytes.NewReader(cb), hashing.Digest{}, 0)
	v.r.SealedEvents = len(evs)
	v.sealed = evs
	if err != nil {
		v.add("sealed custody log", "%v", err)
	} else if head != m.Custody.Head || len(evs) != m.Custody.Events {
		v.add("sealed custody log", "ends at %s after %d events; the manifest says %s after %d", head.Hex(), len(evs), m.Custody.Head.Hex(), m.Custody.Events)
	} else {
		v.sealedOK = true
	}
}
