package fileindex

import (
	"archive/tar"
	"bytes"
	"testing"

	"github.com/amber-forensics/amber/hashing"
)

func FuzzParseIndex(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{{Name: "a/", Typeflag: tar.TypeDir}, {Name: "a/b", Typeflag: tar.TypeReg, Size: 1}, {Name: "a/.wh.c", Typeflag: tar.TypeReg}, {Name: "l", Typeflag: tar.TypeLink, Linkname: "a/b"}} {
		tw.WriteHeader(&h)
		if h.Size > 0 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	b := &IndexBuilder{}
	ScanLayer(bytes.NewReader(buf.Bytes()), b, nil)
	ib, _ := b.Build(int64(buf.Len()))
	f.Add(ib)
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ParseIndex(b)
		if err != nil {
			return
		}
		ix.Check()
		ix.MerkleRoot()
		for i := uint32(0); i < ix.Len() && i < 256; i++ {
			ix.Record(i)
			ix.Children(i)
		}
		ix.Lookup("a/b")
		ix.Lookup("a/x/y")
	})
}

func FuzzScanLayer(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{{Name: "../../etc/passwd", Typeflag: tar.TypeReg, Size: 1}, {Name: "/abs/.wh..wh..opq", Typeflag: tar.TypeReg}, {Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}, {Name: "s", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}} {
		tw.WriteHeader(&h)
		if h.Size > 0 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	f.Add(buf.Bytes())
	f.Add(append(append(buf.Bytes(), make([]byte, 700)...), "hidden"...))
	f.Fuzz(func(t *testing.T, layer []byte) {
		b := &IndexBuilder{}
		n, err := ScanLayer(bytes.NewReader(layer), b, func(int64) {})
		if err != nil {
			return
		}
		if n != int64(len(layer)) {
			t.Fatalf("scanned %d of %d bytes", n, len(layer))
		}
		// Trailing data runs to the end from a block holding a non-zero
		// byte, after two or more zero blocks (the marker, padding), and
		// is what the record says.
		if tr := b.Trailing; tr != nil {
			if tr.Offset < 1024 || tr.Offset%512 != 0 || tr.Size <= 0 || tr.Offset+tr.Size != n ||
				hashing.Sum(layer[tr.Offset:]) != tr.SHA256 || firstNonZero(layer[tr.Offset:min(tr.Offset+512, n)]) < 0 ||
				firstNonZero(layer[tr.Offset-1024:tr.Offset]) >= 0 {
				t.Fatalf("trailing data %+v in a layer of %d bytes", tr, n)
			}
		}
		ib, root, files, err := b.BuildWithRoot(n)
		if err != nil {
			return
		}
		ix, err := ParseIndex(ib)
		if err != nil {
			t.Fatalf("built index does not parse: %v", err)
		}
		if r2, f2, err := ix.MerkleRoot(); err != nil || r2 != root || f2 != files {
			t.Fatalf("Merkle root of the built records %s (%d) differs from the encoded index's %s (%d): %v", root, files, r2, f2, err)
		}
		if err := ix.Check(); err != nil {
			t.Fatalf("built index fails its check: %v", err)
		}
		for i := uint32(0); i < ix.Len(); i++ {
			r, err := ix.Record(i)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Path) > 0 && (r.Path[0] == '/' || bytes.Contains([]byte("/"+r.Path+"/"), []byte("/../"))) {
				t.Fatalf("index path %q escapes the layer", r.Path)
			}
		}
	})
}
