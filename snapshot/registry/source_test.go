package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/snapshot/source"
)

// A registry's answers are hostile: a registry of the test's own (plain
// HTTP on loopback) answers a manifest past the bound, with no
// Content-Length; a manifest whose digest is not the one asked for; a
// redirect loop. Each is refused, bounded and naming the registry.
func TestOpenSourceHostileRegistry(t *testing.T) {
	good := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},"layers":[]}`)
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == "/v2/r/manifests/big":
			// 100 MiB, streamed with no length: amber stops past 4 MiB.
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			chunk := []byte(strings.Repeat(" ", 1<<20))
			for i := 0; i < 100; i++ {
				n, err := w.Write(chunk)
				served.Add(int64(n))
				if err != nil {
					return
				}
			}
		case r.URL.Path == "/v2/r/manifests/loop":
			http.Redirect(w, r, r.URL.Path, http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/v2/r/manifests/sha256:"):
			w.Write(good) // whatever digest is asked
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	opts := SourceOptions{Options: Options{Insecure: true, Keychain: authn.NewMultiKeychain()}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err := OpenSource(ctx, "docker://"+host+"/r:big", opts)
	if !errors.Is(err, source.ErrSource) || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), "4194304") {
		t.Errorf("100 MiB manifest: %v", err)
	}
	if n := served.Load(); n > 16<<20 {
		t.Errorf("the server sent %d bytes of the manifest before amber stopped", n)
	}

	other := hashing.Sum([]byte("another manifest"))
	_, err = OpenSource(ctx, "docker://"+host+"/r@"+other.String(), opts)
	if !errors.Is(err, source.ErrSource) || !strings.Contains(err.Error(), other.String()) || !strings.Contains(err.Error(), host) {
		t.Errorf("manifest of another digest: %v", err)
	}

	_, err = OpenSource(ctx, "docker://"+host+"/r:loop", opts)
	if err == nil || !strings.Contains(err.Error(), "redirects") || !strings.Contains(err.Error(), host) {
		t.Errorf("redirect loop: %v", err)
	}

	_, err = OpenSource(ctx, "docker://"+host+"/r:absent", opts)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), host) {
		t.Errorf("absent tag: %v", err)
	}
}

func TestParsePlatform(t *testing.T) {
	for in, ok := range map[string]bool{"linux/amd64": true, "linux/arm/v7": true, "linux": false, "/amd64": false, "linux/arm/v7/x": false} {
		if _, _, _, err := ParsePlatform(in); (err == nil) != ok {
			t.Errorf("ParsePlatform(%q): %v", in, err)
		}
	}
}
