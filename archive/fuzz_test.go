package archive

import (
	"bytes"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
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
	c := manifest.NewChain(hashing.Digest{}, 0)
	c.Append(manifest.Event{Action: "acquisition-started", Time: time.Unix(1, 0)})
	m := &manifest.Manifest{}
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

func FuzzParseTrailer(f *testing.F) {
	tr := Trailer{Version: 1, ManifestOffset: 1, ManifestSize: 2, TarOffset: 1024}
	b, _ := tr.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { ParseTrailer(b) })
}
