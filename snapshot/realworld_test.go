package snapshot_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/view"
)

// TestLayoutWithArtifacts: a layout holding OCI artifacts and attestations
// is captured whole: every image once, named by platform, with all its
// refs; artifacts kept byte for byte under artifacts/, linked to the image
// they describe; what was not captured is an anomaly.
func TestLayoutWithArtifacts(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "layout")
	sbom, chart, err := fixture.RegclientLike(src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.tar.zst")
	res, err := capture(t, src, out, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Verify(out, archive.VerifyOptions{})
	if err != nil || !r.OK() {
		t.Fatalf("verify: %v %v", err, r.Problems)
	}
	m := res.Manifest
	imgs := map[string]manifest.Artifact{}
	arts := map[string]manifest.Artifact{}
	for _, a := range m.Artifacts {
		switch a.Kind {
		case manifest.KindImage:
			imgs[a.Name] = a
		case manifest.KindArtifact:
			arts[a.Name] = a
		}
	}
	if len(imgs) != 2 {
		t.Fatalf("images %v, want b1_linux-amd64 and b1_linux-arm64-v8", keys(imgs))
	}
	amd, ok := imgs["b1_linux-amd64"]
	if !ok || amd.Platform != "linux/amd64" || !slices.Equal(amd.Refs, []string{"b1", "b1-amd64"}) {
		t.Errorf("amd64 image: %+v (images %v)", amd, keys(imgs))
	}
	if arm, ok := imgs["b1_linux-arm64-v8"]; !ok || arm.Platform != "linux/arm64/v8" {
		t.Errorf("arm64 image missing or wrong platform: %v", keys(imgs))
	}
	for _, p := range []string{"b1_linux-amd64", "b1_linux-arm64-v8"} {
		att, ok := arts[p+"_attestation"]
		if !ok || att.ArtifactType != "attestation" || att.Describes != "images/"+p || att.Subject != imgs[p].SourceManifest {
			t.Errorf("attestation of %s: %+v (artifacts %v)", p, att, keys(arts))
		}
	}
	var sbomArt manifest.Artifact
	for _, a := range arts {
		if a.ArtifactType == "application/spdx+json" {
			sbomArt = a
		}
	}
	if sbomArt.Describes != "images/b1_linux-amd64" || len(sbomArt.Blobs) != 1 || sbomArt.Blobs[0].Title != "sbom.spdx.json" {
		t.Errorf("sbom artifact: %+v", sbomArt)
	}
	if _, ok := arts["charts_web_1.2.3"]; !ok {
		t.Errorf("helm chart not captured as artifacts/charts_web_1.2.3: %v", keys(arts))
	}
	for _, a := range m.Anomalies {
		if strings.Contains(a.Detail, "tar-broken") || a.Kind == "tar-broken" {
			t.Errorf("false anomaly: %+v", a)
		}
	}
	var kinds []string
	for _, a := range m.Anomalies {
		if a.Kind == "not-captured" {
			kinds = append(kinds, a.Detail)
		}
	}
	if len(kinds) != 2 || !strings.Contains(strings.Join(kinds, "\n"), "application/vnd.example.unknown+json") || !strings.Contains(strings.Join(kinds, "\n"), "not in the source") {
		t.Errorf("not-captured anomalies: %q", kinds)
	}

	// The views: artifacts byte for byte; images' trees as before.
	a := fixture.Open(t, out)
	v := &view.View{A: a}
	for p, want := range map[string][]byte{
		"artifacts/" + sbomArt.Name + "/blobs/0": sbom,
		"artifacts/charts_web_1.2.3/blobs/0":     chart,
		"artifacts/charts_web_1.2.3/config":      []byte(`{"name":"web","version":"1.2.3"}`),
		"images/b1_linux-arm64-v8/rootfs/arch":   []byte("arm64\n"),
		"images/b1_linux-amd64/layers/0/arch":    []byte("amd64\n"),
		"artifacts/" + sbomArt.Name + "/config":  []byte("{}"),
	} {
		e, err := v.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		rd, err := v.Open(e)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rd)
		if !bytes.Equal(got, want) {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	mb, err := v.Stat("artifacts/charts_web_1.2.3/manifest.json")
	if err != nil || mb.SHA256() != arts["charts_web_1.2.3"].Manifest.Digest {
		t.Errorf("artifact manifest: %v", err)
	}
	top, err := v.ReadDir("")
	if err != nil || !slices.ContainsFunc(top, func(e *view.Entry) bool { return e.Name == "artifacts" }) {
		t.Errorf("root lists no artifacts/: %v", err)
	}
	// The archive is still an OCI layout that lists every manifest.
	var idx struct{ Manifests []struct{ Digest string } }
	ib, err := a.ReadEntry("index.json", 1<<20)
	if err != nil || json.Unmarshal(ib, &idx) != nil || len(idx.Manifests) != len(m.Artifacts) {
		t.Errorf("index.json lists %d manifests for %d artifacts: %v", len(idx.Manifests), len(m.Artifacts), err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestZeroLayerImage: an image of a config alone shows the layout with an
// empty rootfs.
func TestZeroLayerImage(t *testing.T) {
	dir := t.TempDir()
	out := fixture.Capture(t, dir, "zero", fixture.Image{Tags: []string{"scratch:empty"}})
	v := &view.View{A: fixture.Open(t, out)}
	for _, p := range []string{"images/scratch_empty", "images/scratch_empty/rootfs", "images/scratch_empty/layers", "images/scratch_empty/stages"} {
		e, err := v.Stat(p)
		if err != nil || !e.IsDir() {
			t.Errorf("%s: %v", p, err)
			continue
		}
		kids, err := v.ReadDir(p)
		if err != nil {
			t.Errorf("readdir %s: %v", p, err)
		}
		if p != "images/scratch_empty" && len(kids) != 0 {
			t.Errorf("%s lists %d entries", p, len(kids))
		}
	}
	if kids, _ := v.ReadDir("images/scratch_empty"); len(kids) != 6 {
		t.Errorf("images/scratch_empty lists %d entries, want 6", len(kids))
	}
}

// dockerSaveWith writes a legacy docker-save tarball with a hand-made
// manifest.json: what Docker writes for foreign layers and odd names.
func dockerSaveWith(t *testing.T, path string, files map[string][]byte, man any) {
	t.Helper()
	mb, _ := json.Marshal(man)
	files["manifest.json"] = mb
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	names := keys(files)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: fixture.Epoch})
		tw.Write(files[n])
	}
	tw.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestForeignLayers: docker save leaves a foreign layer's bytes out and
// describes it in LayerSources; amber keeps that provenance, records the
// layer as not present, and captures the rest. A config named for another
// digest is an anomaly; a missing ordinary layer is a bad source.
func TestForeignLayers(t *testing.T) {
	dir := t.TempDir()
	base := fixture.Layer(fixture.File("Windows/System32/kernel32.dll", "MZ"))
	app := fixture.Layer(fixture.File("app/app.exe", "MZ app"))
	img := fixture.Image{Tags: []string{"win:1"}, Layers: [][]byte{base, app}}
	cfg := img.Config()
	sum := func(b []byte) string { return hashing.Sum(b).Hex() }
	foreign := "sha256:" + strings.Repeat("ab", 32)
	man := []map[string]any{{"Config": sum([]byte("not the config")) + ".json", "RepoTags": img.Tags, "Layers": []string{"aaa/layer.tar", "bbb/layer.tar"},
		"LayerSources": map[string]any{"sha256:" + sum(base): map[string]any{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
			"size": 12345, "digest": foreign, "urls": []string{"https://mcr.example/blob/x"}}}}}
	files := map[string][]byte{sum([]byte("not the config")) + ".json": cfg, "bbb/layer.tar": app}
	src := filepath.Join(dir, "win.tar")
	dockerSaveWith(t, src, files, man)
	out := filepath.Join(dir, "win.tar.zst")
	res, err := capture(t, src, out, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := archive.Verify(out, archive.VerifyOptions{}); err != nil || !r.OK() {
		t.Fatalf("verify: %v %v", err, r.Problems)
	}
	art := res.Manifest.Artifacts[0]
	l0, l1 := art.Layers[0], art.Layers[1]
	if !l0.Missing || l0.SourceDigest.String() != foreign || l0.SourceSize != 12345 || len(l0.SourceURLs) != 1 || !strings.Contains(l0.SourceMediaType, "foreign") {
		t.Errorf("foreign layer: %+v", l0)
	}
	if l1.Missing || l1.SourceDigest != l1.Digest {
		t.Errorf("legacy layer's source digest: %+v", l1)
	}
	var got []string
	for _, a := range res.Manifest.Anomalies {
		got = append(got, a.Kind)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"config-name-mismatch", "layer-not-present"}) {
		t.Errorf("anomalies %v", got)
	}
	v := &view.View{A: fixture.Open(t, out)}
	if _, err := v.Stat("images/win_1/rootfs/app/app.exe"); err != nil {
		t.Errorf("the present layer's file: %v", err)
	}
	if _, err := v.Stat("images/win_1/rootfs/Windows"); !errors.Is(err, view.ErrNotFound) {
		t.Errorf("the absent layer's file: %v", err)
	}
	if kids, err := v.ReadDir("images/win_1/layers/0"); err != nil || len(kids) != 0 {
		t.Errorf("layers/0 of a layer not present: %d entries, %v", len(kids), err)
	}

	// An ordinary layer missing: a bad source, not "not found".
	delete(files, "bbb/layer.tar")
	dockerSaveWith(t, src, files, man)
	_, err = capture(t, src, filepath.Join(dir, "bad.tar.zst"), snapshot.Options{})
	if !errors.Is(err, snapshot.ErrSource) || errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing member: %v", err)
	}
}
