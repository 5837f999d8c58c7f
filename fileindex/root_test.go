package fileindex

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"
)

// TestKanikoRoot: kaniko's layers start with an entry named "/": the
// root, like "./" and ".", not an unsafe name; its metadata is the
// root's.
func TestKanikoRoot(t *testing.T) {
	mtime := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, root := range []string{"/", "./", ".", "//", "/./", "./."} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range []*tar.Header{
			{Name: root, Typeflag: tar.TypeDir, Mode: 0o750, Uid: 7, Gid: 8, ModTime: mtime, Format: tar.FormatPAX},
			{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
			{Name: "etc/hosts", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mtime},
		} {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
		}
		tw.Close()
		b := &IndexBuilder{}
		n, err := ScanLayer(bytes.NewReader(buf.Bytes()), b, nil)
		if err != nil {
			t.Fatal(err)
		}
		ib, err := b.Build(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Anomalies) != 0 {
			t.Errorf("%q: anomalies %+v", root, b.Anomalies)
		}
		ix, err := ParseIndex(ib)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ix.Record(0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Path != "" || r.Type != TypeDir || r.Mode != 0o750 || r.UID != 7 || r.GID != 8 || !r.ModTime.Equal(mtime) || r.Flags != 0 || r.EntryNo != 0 {
			t.Errorf("%q: root record %+v", root, r)
		}
		if ix.Len() != 3 {
			t.Errorf("%q: %d records, want 3", root, ix.Len())
		}
	}
	// A name that climbs stays unsafe, even when it lands on the root.
	for _, name := range []string{"/..", "../", "/etc/x", "/../etc"} {
		if _, unsafe := CleanName(name); !unsafe {
			t.Errorf("CleanName(%q) is not unsafe", name)
		}
	}
}
