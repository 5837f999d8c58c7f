package source_test

import (
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/snapshot/source"
)

// TestOddDescriptorsKept: go-containerregistry's v1.Descriptor refuses a
// digest that is not algorithm:hex and data that is not base64, which
// would refuse the whole index; amber reads an index descriptor by
// descriptor, so a descriptor of a type it does not capture is a
// not-captured anomaly whatever its digest, and an image whose descriptor
// carries odd data is still read.
func TestOddDescriptorsKept(t *testing.T) {
	l := fixture.NewLayout()
	img := l.Image(fixture.Image{Layers: [][]byte{fixture.Layer(fixture.File("a", "a\n"))}})
	dir := t.TempDir()
	odd := fixture.Desc{"mediaType": "application/vnd.example.thing+json", "digest": "md5:not-hex", "size": 3}
	if err := l.Write(dir, img.With("data", "!! not base64 !!"), odd); err != nil {
		t.Fatal(err)
	}
	s, err := source.Open(dir)
	if err != nil {
		t.Fatalf("opening a layout with odd descriptors: %v", err)
	}
	defer s.Close()
	if len(s.Images) != 1 {
		t.Errorf("images: %d, want 1", len(s.Images))
	}
	var found bool
	for _, a := range s.Anomalies {
		found = found || a.Kind == "not-captured" && strings.Contains(a.Detail, "md5:not-hex") && strings.Contains(a.Detail, "does not know this media type")
	}
	if !found {
		t.Errorf("anomalies %+v: want the odd descriptor not captured, by its digest as written", s.Anomalies)
	}
}
