package manifest

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// Fuzz targets for every parser of archive bytes. Each must return an error
// or a value, never panic, and never read outside what it was given.

func sampleArchive(f *testing.F) []byte {
	f.Helper()
	p := f.TempDir() + "/s.tar.zst"
	w, err := Create(p, WriterOptions{})
	if err != nil {
		f.Fatal(err)
	}
	w.Add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	w.Add("index.json", bytes.Repeat([]byte("{}"), 1000))
	c := NewChain(hashing.Digest{}, 0)
	c.Append(Event{Action: "acquisition-started", Time: time.Unix(1, 0)})
	m := &Manifest{}
	m.Acquisition.Finished = time.Unix(2, 0)
	if _, err := w.Seal(m, c); err != nil {
		f.Fatal(err)
	}
	b, err := readFile(p)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func FuzzSeekTable(f *testing.F) {
	f.Add(sampleArchive(f))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb1, 0xea, 0x92, 0x8f})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ReadSeekTable(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for i := int64(0); i < st.NumFrames() && i < 64; i++ {
			fr, _ := st.EntryByID(i)
			if int64(fr.CompressedOffset)+int64(fr.CompressedSize) > st.Offset {
				t.Fatalf("frame %d runs past the seek table", i)
			}
			DecodeFrame(bytes.NewReader(b), fr, nil)
		}
	})
}

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

func FuzzParseManifest(f *testing.F) {
	m := &Manifest{Format: FormatName, FormatVersion: FormatVersion, Artifacts: []Artifact{{Kind: KindImage, Name: "x"}}, Entries: []Entry{{Name: "a", HeaderOffset: 0, Offset: 512, Size: 3}}}
	b, _ := m.Marshal()
	f.Add(b)
	f.Add([]byte(`{"format":"amber-evidence","format_version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		if _, err := m.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseTrailer(f *testing.F) {
	tr := Trailer{Version: 1, ManifestOffset: 1, ManifestSize: 2, TarOffset: 1024}
	b, _ := tr.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { ParseTrailer(b) })
}

func FuzzParseCustody(f *testing.F) {
	c := NewChain(hashing.Digest{}, 0)
	c.Append(Event{Action: "a", Details: map[string]string{"k": "v"}})
	c.Append(Event{Action: "b"})
	f.Add(c.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) { ParseCustody(bytes.NewReader(b), hashing.Digest{}, 0) })
}
