package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// TestLayoutWithArtifactsEndToEnd: an OCI layout as regclient and BuildKit
// leave them (platforms, attestations, an SBOM, a Helm chart, an unknown
// descriptor, a platform not pulled) is captured whole; the artifacts are
// readable byte for byte on the mount; the archive stays an OCI layout
// that umoci and skopeo read.
func TestLayoutWithArtifactsEndToEnd(t *testing.T) {
	testenv.FUSE(t)
	umoci := testenv.Tool(t, "umoci")
	skopeo := testenv.Tool(t, "skopeo")
	dir := t.TempDir()
	src := filepath.Join(dir, "layout")
	sbom, chart, err := fixture.RegclientLike(src)
	if err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "case.tar.zst")
	out := mustAmber(t, "capture", "image", src, "-o", arch)
	for _, want := range []string{"images/b1_linux-amd64:", "images/b1_linux-arm64-v8:", "artifacts/b1_linux-amd64_attestation: attestation",
		"describes images/b1_linux-arm64-v8", "artifacts/charts_web_1.2.3: application/vnd.cncf.helm.config.v1+json", "anomaly: source: not-captured: index.json lists"} {
		if !strings.Contains(out, want) {
			t.Errorf("capture output lacks %q:\n%s", want, out)
		}
	}
	mustAmber(t, "verify", arch)
	ls := mustAmber(t, "ls", arch)
	for _, want := range []string{"platform linux/arm64/v8", "artifacts/charts_web_1.2.3  type application/vnd.cncf.helm.config.v1+json", "title sbom.spdx.json"} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls lacks %q:\n%s", want, ls)
		}
	}
	if strings.Contains(ls, "tar-broken") || strings.Contains(ls, "unknown/unknown") {
		t.Errorf("attestations shown as images:\n%s", ls)
	}

	mnt := mountArchive(t, arch, filepath.Join(dir, "mnt"))
	var sbomDir string
	ents, err := os.ReadDir(filepath.Join(mnt, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		if strings.HasSuffix(e.Name(), "_spdx_json") {
			sbomDir = e.Name()
		}
	}
	if len(names) != 4 || sbomDir == "" {
		t.Errorf("artifacts/ lists %v", names)
	}
	for p, want := range map[string][]byte{
		"artifacts/" + sbomDir + "/blobs/0":    sbom,
		"artifacts/charts_web_1.2.3/blobs/0":   chart,
		"images/b1_linux-arm64-v8/rootfs/arch": []byte("arm64\n"),
		"images/b1_linux-amd64/rootfs/arch":    []byte("amd64\n"),
		"artifacts/" + sbomDir + "/config":     []byte("{}"),
	} {
		if got, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s on the mount: %q %v, want %q", p, got, err, want)
		}
	}
	m := readManifest(t, arch)
	chartArt, ok := m.Artifact(manifest.KindArtifact, "charts_web_1.2.3")
	got, err := exec.Command("sha256sum", filepath.Join(mnt, "artifacts/charts_web_1.2.3/manifest.json")).Output()
	if !ok || err != nil || strings.Fields(string(got))[0] != chartArt.Manifest.Digest.Hex() {
		t.Errorf("sha256sum of the chart's manifest.json on the mount: %q %v, want its digest", got, err)
	}

	// Independent readers of the archive's OCI layout.
	x := filepath.Join(dir, "x")
	os.Mkdir(x, 0o755)
	if out, err := exec.Command("sh", "-c", "zstd -dc "+arch+" | tar -x -C "+x).CombinedOutput(); err != nil {
		t.Fatalf("unpacking: %v %s", err, out)
	}
	tags, err := exec.Command(umoci, "ls", "--layout", x).Output()
	if err != nil {
		t.Fatalf("umoci ls: %v", err)
	}
	for _, want := range []string{"b1_linux-amd64", "b1_linux-arm64-v8", "charts_web_1.2.3", "b1_linux-amd64_attestation"} {
		if !strings.Contains(string(tags), want+"\n") {
			t.Errorf("umoci ls lacks %s:\n%s", want, tags)
		}
	}
	raw, err := exec.Command(skopeo, "inspect", "--raw", "oci:"+x+":charts_web_1.2.3").Output()
	if err != nil || !strings.Contains(string(raw), "application/vnd.cncf.helm.chart.content.v1.tar+gzip") {
		t.Errorf("skopeo inspect of the chart: %s %v", raw, err)
	}
	cfg, err := exec.Command(skopeo, "inspect", "--config", "oci:"+x+":b1_linux-arm64-v8").Output()
	var c struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err != nil || json.Unmarshal(cfg, &c) != nil || len(c.RootFS.DiffIDs) != 1 {
		t.Errorf("skopeo inspect --config of an image: %s %v", cfg, err)
	}
}

// TestZeroLayerImageFromUmoci: a real image with no layer (made by umoci) mounts with an empty rootfs, and ls lists its layout.
func TestZeroLayerImageFromUmoci(t *testing.T) {
	testenv.FUSE(t)
	dir := t.TempDir()
	// The engine cannot save an image without layers ("empty export");
	// umoci makes one, as a registry would serve it.
	umoci := testenv.Tool(t, "umoci")
	tar := filepath.Join(dir, "scratch")
	script := umoci + " init --layout " + tar + " && " + umoci + " new --image " + tar + ":1 && " +
		umoci + " config --image " + tar + ":1 --config.label evidence=empty"
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("making a zero-layer image: %v\n%s", err, out)
	}
	arch := filepath.Join(dir, "scratch.tar.zst")
	mustAmber(t, "capture", "image", tar, "-o", arch)
	mustAmber(t, "verify", arch)
	ls := mustAmber(t, "ls", arch, "images/1")
	for _, want := range []string{"rootfs", "layers", "stages", "config.json"} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls images/1 lacks %s:\n%s", want, ls)
		}
	}
	if r := amber(t, "ls", arch, "images/1/rootfs"); r.code != 0 || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("ls of the empty rootfs: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	mnt := mountArchive(t, arch, filepath.Join(dir, "mnt"))
	ents, err := os.ReadDir(filepath.Join(mnt, "images/1/rootfs"))
	if err != nil || len(ents) != 0 {
		t.Errorf("rootfs of a zero-layer image on the mount: %v %v", ents, err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "images/1/config.json")); err != nil || !strings.Contains(string(b), `"evidence":"empty"`) {
		t.Errorf("config.json: %s %v", b, err)
	}
}

// TestMissingMemberIsBadSource: a tarball whose manifest names a layer it
// does not hold is a bad source (exit 6), not a path not found (5).
func TestMissingMemberIsBadSource(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "layout")
	l := fixture.NewLayout()
	img := l.Image(fixture.Image{Tags: []string{"x:1"}, Layers: [][]byte{fixture.Layer(fixture.File("a", "a"))}})
	var m struct{ Layers []fixture.Desc }
	json.Unmarshal(l.Bytes(img), &m)
	l.Drop(m.Layers[0])
	if err := l.Write(src, img); err != nil {
		t.Fatal(err)
	}
	r := amber(t, "capture", "image", src, "-o", filepath.Join(dir, "out.tar.zst"))
	if r.code != exitSource || !strings.Contains(r.stderr, "blobs/sha256/") {
		t.Errorf("exit %d, want %d naming the member:\n%s", r.code, exitSource, r.stderr)
	}
}
