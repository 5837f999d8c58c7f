package fileindex

import (
	"archive/tar"
	"bytes"
	"fmt"
	"testing"

	"github.com/amber-forensics/amber/hashing"
)

// TestV7Typeflag: a pre-POSIX tar marks a regular file with typeflag NUL
// (tar.TypeRegA) and a directory by a trailing slash. archive/tar's reader
// turns both into TypeReg and TypeDir before amber sees a header, which is
// why no amber code tests for TypeRegA (deprecated): such a layer is
// indexed as the same layer written by a modern tar would be.
func TestV7Typeflag(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatUSTAR},
		{Name: "dir/file", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5, Format: tar.FormatUSTAR},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Write([]byte("hello"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer := buf.Bytes()
	// Both headers (at 0 and 512: a directory has no content) get
	// typeflag NUL and their checksum again.
	for _, off := range []int{0, 512} {
		h := layer[off : off+512]
		h[156] = 0
		copy(h[148:156], "        ")
		sum := 0
		for _, c := range h {
			sum += int(c)
		}
		copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	}
	if hdr, err := tar.NewReader(bytes.NewReader(layer[512:])).Next(); err != nil || hdr.Name != "dir/file" {
		t.Fatalf("the crafted header: %v %v", hdr, err)
	}
	if layer[156] != 0 || layer[512+156] != 0 {
		t.Fatal("typeflags not NUL")
	}

	b := &IndexBuilder{}
	n, err := ScanLayer(bytes.NewReader(layer), b, nil)
	if err != nil || n != int64(len(layer)) {
		t.Fatalf("scanned %d of %d bytes: %v", n, len(layer), err)
	}
	built, err := b.Resolve(n)
	if err != nil {
		t.Fatal(err)
	}
	defer built.Close()
	ib, err := built.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ParseIndex(ib)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		path string
		typ  byte
		sum  hashing.Digest
	}{
		{"dir", TypeDir, hashing.Digest{}},
		{"dir/file", TypeReg, hashing.Sum([]byte("hello"))},
	} {
		i, ok := ix.Lookup(want.path)
		if !ok {
			t.Errorf("%s: not indexed", want.path)
			continue
		}
		r, err := ix.Record(i)
		if err != nil {
			t.Fatal(err)
		}
		if r.Type != want.typ || (want.typ == TypeReg && (r.SHA256 != want.sum || r.Size != 5)) {
			t.Errorf("%s: type %q, size %d, SHA-256 %s; want type %q", want.path, r.Type, r.Size, r.SHA256, want.typ)
		}
	}
	for _, a := range b.Anomalies {
		t.Errorf("anomaly %+v", a)
	}
}
