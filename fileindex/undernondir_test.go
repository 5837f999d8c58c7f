package fileindex

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"
)

// TestUnderNonDirectory: entries under a symlink or a file of the same
// layer (esc -> /etc, then esc/planted) are in the index but in no
// listing, while a runtime extracting the layer writes them through the
// link: hidden evidence, now an anomaly of both builders.
func TestUnderNonDirectory(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "esc", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
		{Name: "esc/planted", Typeflag: tar.TypeReg, Size: 2},
		{Name: "esc/cron.d/job", Typeflag: tar.TypeReg, Size: 2},
		{Name: "f", Typeflag: tar.TypeReg, Size: 2},
		{Name: "f/x", Typeflag: tar.TypeReg, Size: 2},
		{Name: "ok/y", Typeflag: tar.TypeReg, Size: 2},
	} {
		h.Mode, h.ModTime, h.Format = 0o644, time.Unix(1700000000, 0), tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("x\n"))
		}
	}
	tw.Close()
	_, anomalies := indexLayer(t, buf.Bytes())
	var got []string
	for _, a := range anomalies {
		if a.Kind == "under-non-directory" {
			got = append(got, a.Path+": "+a.Detail)
		}
	}
	want := []string{
		`esc: 2 entries lie under "esc", which this layer makes a symlink: no listing of amber shows them, while a runtime extracting the layer writes them through it`,
		`f: 1 entries lie under "f", which this layer makes a regular file: no listing of amber shows them, while a runtime extracting the layer writes them through it`,
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("anomalies:\n%q\nwant\n%q", got, want)
	}
}
