package main

import (
	"archive/tar"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/internal/testenv"
)

// The capture of images from a registry (amber capture image docker://...)
// against a registry of the test's own: Debian's docker-registry with TLS
// (a certificate the test makes, trusted through SSL_CERT_FILE) and
// htpasswd auth (a login in a Docker config, through DOCKER_CONFIG).

// regEnv is the environment of an amber process that talks to r with
// password pass.
func regEnv(t *testing.T, r *testenv.Registry, pass string) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.Host, base64.StdEncoding.EncodeToString([]byte(r.User+":"+pass)))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "DOCKER_CONFIG="+dir, "SSL_CERT_FILE="+r.CAFile)
}

func amberIn(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(amberBin, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, o.String(), e.String()}
}

// pushOpts reach r as its user, trusting its certificate.
func pushOpts(t *testing.T, r *testenv.Registry) []remote.Option {
	t.Helper()
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}), remote.WithTransport(tr)}
}

// captured is the part of capture --json these tests read.
type captured struct {
	Artifacts []struct {
		Name           string `json:"name"`
		ImageID        string `json:"image_id"`
		SourceManifest string `json:"source_manifest"`
		Platform       string `json:"platform"`
		MerkleRoot     string `json:"merkle_root"`
		Layers         []struct {
			Digest     string `json:"digest"`
			MerkleRoot string `json:"merkle_root"`
			Files      int    `json:"files"`
		} `json:"layers"`
	} `json:"artifacts"`
	Anomalies []struct {
		Kind   string `json:"kind"`
		Detail string `json:"detail"`
	} `json:"anomalies"`
}

func captureJSON(t *testing.T, env []string, args ...string) captured {
	t.Helper()
	res := amberIn(t, env, append([]string{"capture", "image", "--json"}, args...)...)
	if res.code != 0 {
		t.Fatalf("amber capture image %s: exit %d\n%s%s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	var c captured
	if err := json.Unmarshal([]byte(res.stdout), &c); err != nil {
		t.Fatalf("capture --json: %v\n%s", err, res.stdout)
	}
	return c
}

// registryImage starts a registry and puts the test image in it (from
// its docker save tarball: its layers gzip-compressed as a registry
// holds them), returning the registry and the reference.
func registryImage(t *testing.T) (*testenv.Registry, string, v1.Image) {
	t.Helper()
	src := dockerImage(t)
	r := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	img, err := tarball.ImageFromPath(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.Host + "/case/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, pushOpts(t, r)...); err != nil {
		t.Fatalf("pushing the test image: %v", err)
	}
	return r, "docker://" + r.Host + "/case/app:v1", img
}

// TestCaptureFromRegistry: an image captured from a registry is the image
// captured from its docker save tarball: the same layers (digests, each
// layer's Merkle root), and umoci unpacks the same tree from both; the
// reference and the digest it resolved to are recorded.
func TestCaptureFromRegistry(t *testing.T) {
	testenv.Tool(t, "umoci")
	r, ref, img := registryImage(t)
	env := regEnv(t, r, r.Password)
	dir := t.TempDir()
	fromReg, fromTar := filepath.Join(dir, "reg.tar.zst"), filepath.Join(dir, "tar.tar.zst")
	a := captureJSON(t, env, ref, "-o", fromReg)
	b := captureJSON(t, env, dockerImage(t), "-o", fromTar)
	if len(a.Artifacts) != 1 || len(b.Artifacts) != 1 {
		t.Fatalf("artifacts: %d from the registry, %d from the tarball", len(a.Artifacts), len(b.Artifacts))
	}
	ra, ta := a.Artifacts[0], b.Artifacts[0]
	if ra.ImageID != ta.ImageID || ra.MerkleRoot != ta.MerkleRoot || len(ra.Layers) != len(ta.Layers) || len(ra.Layers) == 0 {
		t.Fatalf("registry: image %s merkle %s, %d layers; tarball: image %s merkle %s, %d layers", ra.ImageID, ra.MerkleRoot, len(ra.Layers), ta.ImageID, ta.MerkleRoot, len(ta.Layers))
	}
	for i := range ra.Layers {
		if ra.Layers[i] != ta.Layers[i] {
			t.Errorf("layer %d: registry %+v, tarball %+v", i, ra.Layers[i], ta.Layers[i])
		}
	}
	md, _ := img.Digest()
	if ra.SourceManifest != md.String() {
		t.Errorf("source_manifest %s, the registry's manifest is %s", ra.SourceManifest, md)
	}
	if len(a.Anomalies) != 0 {
		t.Errorf("anomalies: %+v", a.Anomalies)
	}
	// The same layers under OCI media types (an OCI manifest, config and
	// layers, as BuildKit pushes them) are the same layers captured.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	oci := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		if oci, err = mutate.Append(oci, mutate.Addendum{Layer: l, MediaType: types.OCILayer}); err != nil {
			t.Fatal(err)
		}
	}
	ociRef, _ := name.ParseReference(r.Host + "/case/app-oci:v1")
	if err := remote.Write(ociRef, oci, pushOpts(t, r)...); err != nil {
		t.Fatal(err)
	}
	o := captureJSON(t, env, "docker://"+ociRef.String(), "-o", filepath.Join(dir, "oci.tar.zst"))
	if len(o.Artifacts) != 1 || len(o.Artifacts[0].Layers) != len(ta.Layers) {
		t.Fatalf("OCI image: %+v", o.Artifacts)
	}
	for i, l := range o.Artifacts[0].Layers {
		if l != ta.Layers[i] {
			t.Errorf("OCI image, layer %d: %+v, tarball %+v", i, l, ta.Layers[i])
		}
	}
	// The acquisition record names the reference and its digest.
	m := mustAmber(t, "cat", fromReg, "manifest.json")
	if want := fmt.Sprintf(`"path": "%s@%s"`, ref, md); !strings.Contains(m, want) || !strings.Contains(m, `"kind": "registry"`) {
		t.Errorf("manifest.json lacks %s and kind registry:\n%s", want, m)
	}
	// umoci unpacks the same tree from both archives.
	var roots []string
	for i, arch := range []string{fromReg, fromTar} {
		x := filepath.Join(dir, fmt.Sprintf("x%d", i))
		os.Mkdir(x, 0o755)
		testenv.Shell(t, fmt.Sprintf("zstd -dc %q | tar -x -C %q", arch, x))
		tag := strings.TrimSpace(testenv.Run(t, "umoci", "ls", "--layout", x))
		bundle := filepath.Join(dir, fmt.Sprintf("bundle%d", i))
		testenv.Run(t, "umoci", "unpack", "--image", x+":"+tag, bundle)
		roots = append(roots, filepath.Join(bundle, "rootfs"))
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", roots[0], roots[1]).CombinedOutput(); err != nil {
		t.Errorf("diff -r of the unpacked trees: %v\n%s", err, out)
	}
}

// TestCaptureRegistryPlatforms: of a two-platform index, --platform takes
// the one named, the default this host's, --all-platforms both; a
// platform the index lacks is not found, naming what it has.
func TestCaptureRegistryPlatforms(t *testing.T) {
	r, _, img := registryImage(t)
	env := regEnv(t, r, r.Password)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	var imgs []v1.Image
	var ids []string
	for _, arch := range []string{runtime.GOARCH, other} {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		pi, err := mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := pi.ConfigName()
		imgs, ids = append(imgs, pi), append(ids, id.String())
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: imgs[0], Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
		mutate.IndexAddendum{Add: imgs[1], Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}})
	ref, _ := name.ParseReference(r.Host + "/case/multi:v1")
	if err := remote.WriteIndex(ref, idx, pushOpts(t, r)...); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	dir := t.TempDir()
	multi := "docker://" + r.Host + "/case/multi:v1"
	for i, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--platform", "linux/" + other}, []string{ids[1]}},
		{nil, []string{ids[0]}},
		{[]string{"--all-platforms"}, ids},
	} {
		out := filepath.Join(dir, fmt.Sprintf("p%d.tar.zst", i))
		c := captureJSON(t, env, append([]string{multi, "-o", out}, tc.args...)...)
		var got []string
		for _, a := range c.Artifacts {
			got = append(got, a.ImageID)
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%v: images %v, want %v", tc.args, got, tc.want)
		}
		if m := mustAmber(t, "cat", out, "manifest.json"); !strings.Contains(m, multi+"@"+idxDigest.String()) {
			t.Errorf("%v: the acquisition record lacks the index digest %s", tc.args, idxDigest)
		}
	}
	res := amberIn(t, env, "capture", "image", multi, "--platform", "linux/s390x", "-o", filepath.Join(dir, "none.tar.zst"))
	if res.code != exitNotFound || !strings.Contains(res.stderr, "linux/"+other) || !strings.Contains(res.stderr, r.Host) {
		t.Errorf("--platform linux/s390x: exit %d, want %d naming the registry and its platforms:\n%s", res.code, exitNotFound, res.stderr)
	}
}

// TestCaptureRegistryRefusals: a wrong password is the auth exit code,
// naming the registry; a short name is refused; a layer the registry
// serves changed (its bytes differ from its digest, still a valid gzip
// stream of the same content) is refused naming it, and kept flagged
// with --keep-mismatched; nothing is left at the output name.
func TestCaptureRegistryRefusals(t *testing.T) {
	r, ref, img := registryImage(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "case.tar.zst")
	res := amberIn(t, regEnv(t, r, "wrong-password"), "capture", "image", ref, "-o", out)
	if res.code != exitAuth || exitAuth != 16 || !strings.Contains(res.stderr, r.Host) {
		t.Errorf("wrong password: exit %d, want 16 naming %s:\n%s", res.code, r.Host, res.stderr)
	}
	env := regEnv(t, r, r.Password)
	// Without its CA the registry's certificate is refused; --insecure
	// takes it unverified.
	var noCA []string
	for _, e := range env {
		if !strings.HasPrefix(e, "SSL_CERT_FILE=") {
			noCA = append(noCA, e)
		}
	}
	if res := amberIn(t, noCA, "capture", "image", ref, "-o", out); res.code == 0 || !strings.Contains(res.stderr, "certificate") || !strings.Contains(res.stderr, r.Host) {
		t.Errorf("untrusted certificate: exit %d:\n%s", res.code, res.stderr)
	}
	if res := amberIn(t, noCA, "capture", "image", ref, "--insecure", "-o", out); res.code != 0 {
		t.Errorf("--insecure: exit %d:\n%s", res.code, res.stderr)
	}
	os.Remove(out)
	os.Remove(out + ".sha256")
	os.Remove(out + ".custody.jsonl")
	if res := amberIn(t, env, "capture", "image", "docker://alpine:3", "-o", out); res.code != exitUsage || !strings.Contains(res.stderr, "never guesses docker.io") {
		t.Errorf("short name: exit %d:\n%s", res.code, res.stderr)
	}
	// Change the first layer in the registry's storage: byte 4 of a gzip
	// stream is its MTIME, which decompression ignores.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := layers[0].Digest()
	blob := filepath.Join(r.Dir, "storage/docker/registry/v2/blobs/sha256", ld.Hex[:2], ld.Hex, "data")
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[4] ^= 0x55
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res = amberIn(t, env, "capture", "image", ref, "-o", out)
	if res.code != exitSource || !strings.Contains(res.stderr, ld.Hex) || !strings.Contains(res.stderr, r.Host) {
		t.Errorf("changed layer: exit %d, want %d naming the layer %s and the registry:\n%s", res.code, exitSource, ld, res.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("refused capture left %s: %v", out, err)
	}
	c := captureJSON(t, env, ref, "-o", out, "--keep-mismatched")
	found := false
	for _, a := range c.Anomalies {
		found = found || a.Kind == "layer-digest-mismatch" && strings.Contains(a.Detail, ld.Hex)
	}
	if !found {
		t.Errorf("--keep-mismatched: no layer-digest-mismatch anomaly naming %s: %+v", ld, c.Anomalies)
	}
	if v := mustAmber(t, "verify", out); !strings.HasPrefix(v, "OK ") {
		t.Errorf("verify of the kept capture:\n%s", v)
	}
}

// TestCaptureRegistryForeignLayer: a foreign (non-distributable) layer is
// recorded, not fetched (even where the registry holds it), as docker
// save's are:
// not_present with its URL, and a layer-not-present anomaly.
func TestCaptureRegistryForeignLayer(t *testing.T) {
	r, _, img := registryImage(t)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "foreign.txt", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("abc"))
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://foreign.example/layer.tar.gz"
	fimg, err := mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.DockerForeignLayer, URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	// distribution refuses a manifest with URLs unless its configuration
	// allows them.
	cfgPath := filepath.Join(r.Dir, "config.yml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, "validation:\n  manifests:\n    urls:\n      allow:\n        - ^https://\n"...)
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	r.Stop(syscall.SIGTERM)
	r.Start(t)
	ref, _ := name.ParseReference(r.Host + "/case/foreign:v1")
	// The layer's bytes are uploaded too (the layer object is an ordinary
	// one; only the manifest calls it foreign): amber must still not fetch
	// them, as docker pull does not.
	if err := remote.Write(ref, fimg, pushOpts(t, r)...); err != nil {
		t.Fatal(err)
	}
	c := captureJSON(t, regEnv(t, r, r.Password), "docker://"+ref.String(), "-o", filepath.Join(t.TempDir(), "f.tar.zst"))
	found := false
	for _, a := range c.Anomalies {
		found = found || a.Kind == "layer-not-present" && strings.Contains(a.Detail, url)
	}
	if !found || len(c.Artifacts) != 1 || len(c.Artifacts[0].Layers) != 4 {
		t.Errorf("foreign layer: anomalies %+v, artifacts %+v", c.Anomalies, c.Artifacts)
	}
}
