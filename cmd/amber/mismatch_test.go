package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
)

// TestKeepMismatchedCLI: an image file whose layer is not its config's
// diff_id is refused (exit 6, naming --keep-mismatched); with the flag it
// is kept as found, the archive verifies, and amber diff shows the
// finding.
func TestKeepMismatchedCLI(t *testing.T) {
	dir := t.TempDir()
	img := fixture.Image{Tags: []string{"app:v1"}, Layers: [][]byte{
		fixture.Layer(fixture.File("etc/passwd", "root:x:0:0\n")),
		fixture.Layer(fixture.File("etc/motd", "welcome\n")),
	}}
	img.BadDiffID = 2
	src := filepath.Join(dir, "bad.tar")
	if err := fixture.DockerSave(src, img); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kept.tar.zst")
	r := amber(t, "capture", "image", src, "-o", out)
	if r.code != 6 || !strings.Contains(r.stderr, "--keep-mismatched") {
		t.Fatalf("without --keep-mismatched: exit %d, %s; want 6 naming the flag", r.code, r.stderr)
	}
	mustAmber(t, "capture", "image", "--keep-mismatched", src, "-o", out)
	mustAmber(t, "verify", out)
	name := fixture.Open(t, out).Manifest.Artifacts[0].Name
	d := mustAmber(t, "diff", out, "images/"+name+"/stages/0", "images/"+name+"/stages/1")
	if !strings.Contains(d, "A /etc/motd") || !strings.Contains(d, "layer-digest-mismatch") || !strings.Contains(d, "kept as found") {
		t.Errorf("amber diff does not show the layer and its finding:\n%s", d)
	}
}
