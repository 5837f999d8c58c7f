// Package registrytest pushes evidence artifacts to a test's registry
// the way the evidence artifact is laid out (snapshot/registry's
// artifact.go), so that readers are tested without amber push.
package registrytest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/snapshot/registry"
)

// Registry is what Push needs of a test registry (testenv.Registry).
type Registry struct {
	Host, User, Password, CAFile string
}

// Push pushes the archive at path to host/repo:tag as an evidence
// artifact (an OCI image manifest with artifactType, the archive as its
// first layer) and returns the manifest's digest.
func Push(t testing.TB, r Registry, path, repoTag string) v1.Hash {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	layer := static.NewLayer(data, types.MediaType(registry.MediaTypeArchive))
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType(registry.MediaTypeConfig))
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, Annotations: map[string]string{registry.AnnotationTitle: filepath.Base(path)}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m.ArtifactType = registry.ArtifactType
	m.Annotations = map[string]string{registry.AnnotationCase: "test-case"}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	w := withRaw{Image: img, raw: raw}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	opts := []remote.Option{remote.WithTransport(tr)}
	if r.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}))
	}
	if err := remote.Write(ref, w, opts...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, _ := w.Digest()
	return d
}

// withRaw is an image whose manifest is raw (with the artifactType that
// mutate cannot set).
type withRaw struct {
	v1.Image
	raw []byte
}

func (w withRaw) RawManifest() ([]byte, error) { return w.raw, nil }

func (w withRaw) Manifest() (*v1.Manifest, error) { return v1.ParseManifest(bytes.NewReader(w.raw)) }

func (w withRaw) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(w.raw))
	return h, err
}

func (w withRaw) Size() (int64, error) { return int64(len(w.raw)), nil }
