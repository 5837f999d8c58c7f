package archive_test

import (
	"testing"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/fixture"
)

// TestDefaultLevel: with no level asked for, both encoders (libzstd in the
// shipped build, klauspost's with -tags amber_purego or CGO_ENABLED=0;
// make unit runs this package both ways) write at the one default level,
// and the manifest records it. Before, libzstd wrote level 2 and the pure
// Go encoder level 3.
func TestDefaultLevel(t *testing.T) {
	a := fixture.Open(t, fixture.Capture(t, t.TempDir(), "level", fixture.WhiteoutImage()))
	if want := fixture.EncoderName() + " level 2"; a.Manifest.Tool.Compression != want || archive.DefaultLevel != 2 {
		t.Errorf("default: %q (DefaultLevel %d), want %q", a.Manifest.Tool.Compression, archive.DefaultLevel, want)
	}
}
