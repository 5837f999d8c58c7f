package snapshot_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
)

// TestVerifyChecksClaimedDiffIDs: verify checks every stored layer
// against its config's diff_id: a layer kept as found (claimed_diff_id)
// passes; the same archive re-sealed with the claim removed — a layer
// standing for a diff_id it is not, recorded as if it were — is named.
func TestVerifyChecksClaimedDiffIDs(t *testing.T) {
	dir := t.TempDir()
	img := sampleImage()
	img.BadDiffID = 2
	src := filepath.Join(dir, "bad")
	if err := fixture.OCILayout(src, fixture.None, img); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(dir, "kept.tar.zst")
	if _, err := capture(t, src, kept, snapshot.Options{KeepMismatched: true}); err != nil {
		t.Fatal(err)
	}
	if rep, err := archive.Verify(kept, archive.VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("the archive as captured: %v %+v", err, rep)
	}
	forged := filepath.Join(dir, "forged.tar.zst")
	reseal(t, kept, forged, func(m *manifest.Manifest) { m.Artifacts[0].Layers[1].DiffID = hashing.Digest{} })
	rep, err := archive.Verify(forged, archive.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range rep.Problems {
		found = found || strings.Contains(p.Where, "/layers/1") && strings.Contains(p.Detail, "records no difference")
	}
	if !found {
		t.Errorf("verify of a layer standing for a diff_id it is not: %+v", rep.Problems)
	}
}

// reseal writes the members of the archive at from into a new archive at
// to, sealed with its manifest as edit leaves it.
func reseal(t *testing.T, from, to string, edit func(*manifest.Manifest)) {
	t.Helper()
	a, err := archive.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w, err := archive.Create(to, archive.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range a.Manifest.Entries {
		if strings.HasPrefix(e.Name, "amber/custody") || e.Name == archive.FrameDigestsName || e.Name == archive.TrailerName || e.Name == "amber/manifest.json" {
			continue
		}
		b, err := a.ReadEntry(e.Name, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Add(e.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	m := *a.Manifest
	m.Entries = nil
	edit(&m)
	c := manifest.NewChain(hashing.Digest{}, 0)
	c.Append(manifest.Event{Action: "acquisition-started", Time: time.Now()})
	if _, err := w.Seal(&m, c); err != nil {
		t.Fatal(err)
	}
}
