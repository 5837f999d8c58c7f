package fileindex

import (
	"archive/tar"
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/hashing"
)

// TestMarkerAnomalies (issue 14): an opaque marker at a layer's root
// (which overlayfs ignores on a lower layer's root) and whiteouts of ".",
// ".." and of an empty name (which the engine refuses) are anomalies,
// raised alike by the builder and its reference; the markers stay in the
// index as whiteouts, shown in layers/N.
func TestMarkerAnomalies(t *testing.T) {
	names := []string{
		".wh..wh..opq",     // root-opaque
		"d/.wh..wh..opq",   // an ordinary opaque directory
		"./.wh..wh..opq",   // root-opaque
		".wh..",            // bad-whiteout of "."
		"d/.wh...",         // bad-whiteout of ".."
		"d/e/.wh.",         // bad-whiteout of ""
		"d/.wh.x",          // an ordinary whiteout
		"d/.wh..wh.x",      // a whiteout of ".wh.x": odd, not refused
		"/../.wh..wh..opq", // unsafe, and root-opaque where amber shows it
	}
	nb, rb := &IndexBuilder{TempDir: t.TempDir()}, &refBuilder{}
	for k, n := range names {
		h := &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644}
		nb.Add(h, int64(k)*1024, int64(k)*1024+512, hashing.Sum(nil), false)
		rb.Add(h, int64(k)*1024, int64(k)*1024+512, hashing.Sum(nil), false)
	}
	nix, nroot, _, err := nb.BuildWithRoot(int64(len(names)) * 1024)
	if err != nil {
		t.Fatal(err)
	}
	rix, rroot, _, err := rb.buildWithRoot(int64(len(names)) * 1024)
	if err != nil || !bytes.Equal(nix, rix) || nroot != rroot {
		t.Fatalf("the reference differs: %v", err)
	}
	if !reflect.DeepEqual(nb.Anomalies, rb.Anomalies) {
		t.Fatalf("anomalies differ:\n%v\n%v", nb.Anomalies, rb.Anomalies)
	}
	var got []string
	for _, a := range nb.Anomalies {
		switch a.Kind {
		case "root-opaque", "bad-whiteout":
			got = append(got, a.Kind+" "+a.Path)
			if !strings.Contains(a.Detail, "layers/N") {
				t.Errorf("%s %s: detail %q does not say where the marker is shown", a.Kind, a.Path, a.Detail)
			}
		case "duplicate-entry", "unsafe-name":
		default:
			t.Errorf("anomaly %+v", a)
		}
	}
	want := []string{"root-opaque .wh..wh..opq", "root-opaque .wh..wh..opq", "bad-whiteout .wh..", "bad-whiteout d/.wh...", "bad-whiteout d/e/.wh.", "root-opaque .wh..wh..opq"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("anomalies:\n%q\nwant\n%q", got, want)
	}
	for _, a := range nb.Anomalies {
		if a.Kind == "bad-whiteout" && a.Path == ".wh.." && !strings.Contains(a.Detail, `"."`) {
			t.Errorf("detail %q does not name what the marker whites out", a.Detail)
		}
		if a.Kind == "bad-whiteout" && !strings.Contains(a.Detail, "refuse") {
			t.Errorf("detail %q does not say the engine refuses the layer", a.Detail)
		}
	}
	ix, err := ParseIndex(nix)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".wh..", "d/.wh...", "d/e/.wh."} {
		i, ok := ix.Lookup(p)
		r, _ := ix.Record(i)
		if !ok || !r.Has(FlagWhiteout) {
			t.Errorf("%s: in the index %v, flags %#x", p, ok, r.Flags)
		}
	}
}
