package registry_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/registry"
)

// TestUpload: 40 MB written to an Upload in 1 MiB writes (several
// chunks, sent while the next fills) is committed as the blob of its
// SHA-256, of its size; a second Upload, aborted after 40 MB, leaves no
// bytes in the registry's upload area and no such blob.
func TestUpload(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	loginEnv(t, reg)
	// The registry's certificate trusted by a transport of this test's
	// own: Go reads SSL_CERT_FILE once per process, and another test of
	// the package set it to another registry's.
	opts := registry.Options{Transport: trusting(t, reg.CAFile)}
	ref, err := registry.ParseTag("docker://"+reg.Host+"/case/up:v1", opts)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 40<<20)
	rand.New(rand.NewSource(18)).Read(data)
	write := func(u *registry.Upload) {
		t.Helper()
		for b := data; len(b) > 0; b = b[min(len(b), 1<<20):] {
			if _, err := u.Write(b[:min(len(b), 1<<20)]); err != nil {
				t.Fatal(err)
			}
		}
	}
	u, err := registry.StartUpload(context.Background(), ref, opts, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	write(u)
	d := hashing.Digest(sha256.Sum256(data))
	if err := u.Commit(d); err != nil {
		t.Fatal(err)
	}
	u.Abort() // after Commit: nothing
	l, err := remote.Layer(ref.Context().Digest("sha256:"+d.Hex()), opts.Remote()...)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := l.Size(); err != nil || n != int64(len(data)) {
		t.Fatalf("the committed blob: %d bytes, %v", n, err)
	}

	data[0] ^= 1
	u, err = registry.StartUpload(context.Background(), ref, opts, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	write(u)
	u.Abort()
	ms, _ := filepath.Glob(filepath.Join(reg.Dir, "storage", "docker", "registry", "v2", "repositories", "case", "up", "_uploads", "*", "data"))
	for _, m := range ms {
		if st, err := os.Stat(m); err == nil && st.Size() > 0 {
			t.Errorf("an aborted upload left %d bytes at %s", st.Size(), m)
		}
	}
	d = hashing.Digest(sha256.Sum256(data))
	if l, err := remote.Layer(ref.Context().Digest("sha256:"+d.Hex()), opts.Remote()...); err == nil {
		if _, err := l.Size(); err == nil {
			t.Error("an aborted upload's blob is in the registry")
		}
	}
}

// trusting is an HTTP transport that trusts the certificate in caFile.
func trusting(t *testing.T, caFile string) http.RoundTripper {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return tr
}
