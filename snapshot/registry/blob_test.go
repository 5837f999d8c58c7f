package registry_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/registry"
	"github.com/amber-forensics/amber/snapshot/registry/registrytest"
)

// loginEnv points this process's registry clients at r's certificate and
// credentials, for r's host and the other hosts given (proxies).
func loginEnv(t *testing.T, r *testenv.Registry, hosts ...string) {
	t.Helper()
	dir := t.TempDir()
	auths := map[string]any{}
	for _, h := range append([]string{r.Host}, hosts...) {
		auths[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password))}
	}
	b := fmt.Sprintf(`{"auths":%s}`, mustJSON(auths))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("SSL_CERT_FILE", r.CAFile)
}

func mustJSON(v map[string]any) string {
	var parts []string
	for k, x := range v {
		a := x.(map[string]string)["auth"]
		parts = append(parts, fmt.Sprintf("%q:{\"auth\":%q}", k, a))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// readFile reads the file of the archive's first layer at name, checked
// against its index hash.
func readFile(t *testing.T, a *archive.Archive, name string) ([]byte, error) {
	t.Helper()
	l := a.Manifest.Artifacts[0].Layers[0]
	ix, err := a.Index(l.Digest)
	if err != nil {
		return nil, err
	}
	i, ok := ix.Lookup(name)
	if !ok {
		t.Fatalf("%s not in the layer", name)
	}
	rec, _ := ix.Record(i)
	rd, err := a.Content(l.Digest, &rec)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, err
	}
	if hashing.Sum(b) != rec.SHA256 {
		t.Fatalf("%s: content does not match its index hash", name)
	}
	return b, nil
}

// TestOpenEvidenceLazily reads an archive pushed to a registry (TLS,
// auth) through a counting proxy: opening fetches the blob's end, a
// file its frames, a second reader nothing (the cache); a flipped byte
// names its frame and is fetched afresh once the proxy behaves; a proxy
// that ignores Range gets one whole download, with a message.
func TestOpenEvidenceLazily(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	proxy := testenv.StartProxy(t, reg)
	loginEnv(t, reg, proxy.Host)
	p := fixture.Capture(t, t.TempDir(), "big", fixture.BigImage())
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	registrytest.Push(t, registrytest.Registry{Host: reg.Host, User: reg.User, Password: reg.Password, CAFile: reg.CAFile}, p, "case/e1:web")
	local := fixture.Open(t, p)
	want, err := readFile(t, local, "data/d04/f004")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ref := "docker://" + proxy.Host + "/case/e1:web"
	open := func(cacheDir string) (*registry.Blob, *archive.Archive) {
		t.Helper()
		b, err := registry.OpenEvidence(ctx, ref, registry.Options{}, registry.CacheOptions{Dir: cacheDir})
		if err != nil {
			t.Fatal(err)
		}
		a, err := archive.OpenReaderAt(b, b.Size, b.Name())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return b, a
	}

	cacheDir := t.TempDir()
	b, a := open(cacheDir)
	sum := sha256.Sum256(data)
	if b.Size != int64(len(data)) || b.Digest.Hex != hex.EncodeToString(sum[:]) {
		t.Fatalf("blob %s of %d bytes, the archive is %x of %d", b.Digest, b.Size, sum, len(data))
	}
	opened := b.Stats().BytesFetched
	for _, r := range proxy.Ranges() {
		var from int64
		if _, err := fmt.Sscanf(r, "bytes=%d-", &from); err != nil || (from != 0 && from < int64(len(data))*3/4) {
			t.Errorf("opening fetched %q: not the blob's end", r)
		}
	}
	got, err := readFile(t, a, "data/d04/f004")
	if err != nil || string(got) != string(want) {
		t.Fatalf("read from the registry: %v (%d bytes, want %d)", err, len(got), len(want))
	}
	if f := b.Stats().BytesFetched; f > int64(len(data))/3 {
		t.Errorf("opening and reading one file fetched %d of %d bytes", f, len(data))
	}
	t.Logf("open fetched %d bytes, one file %d more, of %d: %q", opened, b.Stats().BytesFetched-opened, len(data), proxy.Ranges())
	if st, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", b.Digest.Hex)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("cache dir: %v %v", st, err)
	}
	filepath.Walk(cacheDir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && info.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v", path, info.Mode())
		}
		return nil
	})

	// A second reader of the same cache fetches no blob byte.
	proxy.Reset()
	b2, a2 := open(cacheDir)
	if _, err := readFile(t, a2, "data/d04/f004"); err != nil || b2.Stats().BytesFetched != 0 || proxy.BlobBytes() != 0 {
		t.Errorf("cached read: %v, fetched %d (proxy %d)", err, b2.Stats().BytesFetched, proxy.BlobBytes())
	}

	// A flipped byte in the frame holding another file: named, never
	// served; the same reader reads it once the registry serves it right.
	l := local.Manifest.Artifacts[0].Layers[0]
	ix, _ := local.Index(l.Digest)
	i, _ := ix.Lookup("data/d12/f250")
	rec, _ := ix.Record(i)
	blobEntry, _ := local.Blob("blobs/sha256/" + l.Digest.Hex())
	fr, _ := local.Table.EntryByDecompressedOffset(uint64(blobEntry.Offset + rec.DataOffset))
	proxy.FlipAt.Store(int64(fr.CompressedOffset) + int64(fr.CompressedSize)/2)
	b3, a3 := open(t.TempDir())
	if _, err := readFile(t, a3, "data/d12/f250"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("frame %d", fr.ID)) {
		t.Errorf("a flipped byte in frame %d: %v", fr.ID, err)
	}
	proxy.FlipAt.Store(-1)
	if _, err := readFile(t, a3, "data/d12/f250"); err != nil {
		t.Errorf("once the registry serves the right bytes: %v", err)
	}
	_ = b3

	// A truncated blob: its end (the seek table) is missing, so nothing
	// of it opens, and the error says what could not be read.
	proxy.TruncateAt.Store(int64(fr.CompressedOffset) + 100)
	b5, err := registry.OpenEvidence(ctx, ref, registry.Options{}, registry.CacheOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.OpenReaderAt(b5, b5.Size, b5.Name()); err == nil || !strings.Contains(err.Error(), "seek table") || !strings.Contains(err.Error(), b5.Digest.String()) {
		t.Errorf("a truncated blob opened: %v", err)
	}
	proxy.TruncateAt.Store(0)

	// A server that ignores Range: one whole download, said so.
	proxy.IgnoreRange.Store(true)
	proxy.Reset()
	var said []string
	b4, err := registry.OpenEvidence(ctx, ref, registry.Options{}, registry.CacheOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b4.Warn = func(s string) { said = append(said, s) }
	a4, err := archive.OpenReaderAt(b4, b4.Size, b4.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer a4.Close()
	if got, err := readFile(t, a4, "data/d04/f004"); err != nil || string(got) != string(want) {
		t.Errorf("without Range: %v", err)
	}
	if len(said) != 1 || !strings.Contains(said[0], "ignores Range") || proxy.BlobBytes() > 2*int64(len(data)) || b4.Stats().BytesFetched != int64(len(data)) {
		t.Errorf("without Range: said %q, fetched %d (proxy %d) of %d", said, b4.Stats().BytesFetched, proxy.BlobBytes(), len(data))
	}
}
