package archive

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

func writeMinimal(t *testing.T, path string) {
	t.Helper()
	w, err := Create(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		t.Fatal(err)
	}
	c := manifest.NewChain(hashing.Digest{}, 0)
	c.Append(manifest.Event{Action: "acquisition-started", Time: time.Now()})
	m := &manifest.Manifest{Tool: manifest.Tool{Name: "amber", Version: "test"}}
	m.Acquisition.Finished = time.Now().UTC()
	if _, err := w.Seal(m, c); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownVersionRefused(t *testing.T) {
	dir := t.TempDir()
	writeVersion = 2
	writeMinimal(t, filepath.Join(dir, "v2.tar.zst"))
	writeVersion = manifest.FormatVersion
	_, err := Open(filepath.Join(dir, "v2.tar.zst"))
	if !errors.Is(err, manifest.ErrUnsupportedVersion) || !strings.Contains(err.Error(), "format version 2") {
		t.Fatalf("opening a v2 archive: %v", err)
	}
	if _, err := Verify(filepath.Join(dir, "v2.tar.zst"), VerifyOptions{}); !errors.Is(err, manifest.ErrUnsupportedVersion) {
		t.Fatalf("verifying a v2 archive: %v", err)
	}
	writeMinimal(t, filepath.Join(dir, "v1.tar.zst"))
	if a, err := Open(filepath.Join(dir, "v1.tar.zst")); err != nil {
		t.Fatal(err)
	} else {
		a.Close()
	}
}

func TestTrailerRoundTrip(t *testing.T) {
	tr := Trailer{Version: 1, Sealed: time.Unix(1700000000, 0).UTC(), ManifestOffset: 1024, ManifestSize: 77, ManifestSHA256: hashing.Sum([]byte("m")), StructureSHA256: hashing.Sum([]byte("s")), TarOffset: 2048}
	b, err := tr.Marshal()
	if err != nil || len(b) != TrailerSize {
		t.Fatalf("marshal: %v, %d bytes", err, len(b))
	}
	back, err := ParseTrailer(b)
	if err != nil || *back != tr {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	bad := bytes.Replace(b, []byte("manifest-size 77"), []byte("manifest-size -7"), 1)
	if _, err := ParseTrailer(bad); !errors.Is(err, manifest.ErrCorrupt) {
		t.Errorf("negative size accepted: %v", err)
	}
	bad = bytes.Replace(b, []byte("trailer-offset 2048"), []byte("trailer-offset 1000"), 1)
	if _, err := ParseTrailer(bad); err == nil {
		t.Errorf("manifest past the trailer accepted")
	}
}

func TestCustodyChain(t *testing.T) {
	c := manifest.NewChain(hashing.Digest{}, 0)
	for _, a := range []string{"acquisition-started", "captured", "sealing"} {
		if _, err := c.Append(manifest.Event{Action: a, Actor: "x", Host: "h", Time: time.Unix(1, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	log := c.Bytes()
	evs, head, err := manifest.ParseCustody(bytes.NewReader(log), hashing.Digest{}, 0)
	if err != nil || len(evs) != 3 || head != c.Head() {
		t.Fatalf("parse: %v, %d events", err, len(evs))
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	edited := strings.Replace(lines[1], `"actor":"x"`, `"actor":"y"`, 1)
	for name, bad := range map[string]string{
		"edited":    lines[0] + "\n" + edited + "\n" + lines[2] + "\n",
		"dropped":   lines[0] + "\n" + lines[2] + "\n",
		"reordered": lines[1] + "\n" + lines[0] + "\n" + lines[2] + "\n",
	} {
		_, _, err := manifest.ParseCustody(strings.NewReader(bad), hashing.Digest{}, 0)
		if !errors.Is(err, manifest.ErrChainBroken) {
			t.Errorf("%s log accepted: %v", name, err)
		}
	}
	// The last line edited: only the head reveals it.
	editedLast := lines[0] + "\n" + lines[1] + "\n" + strings.Replace(lines[2], "sealing", "sealinG", 1) + "\n"
	_, h, err := manifest.ParseCustody(strings.NewReader(editedLast), hashing.Digest{}, 0)
	if err != nil || h == c.Head() {
		t.Errorf("editing the last line kept the head")
	}
}

func TestCustodySidecarAppend(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.custody.jsonl")
	head := hashing.Sum([]byte("sealed head"))
	for i := 0; i < 3; i++ {
		if err := manifest.AppendCustody(p, head, 5, manifest.Event{Action: "verified", Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	evs, _, err := manifest.ParseCustodyFile(p, head, 5)
	if err != nil || len(evs) != 3 || evs[2].Seq != 7 {
		t.Fatalf("sidecar: %v, %d events", err, len(evs))
	}
	if _, _, err := manifest.ParseCustodyFile(p, hashing.Sum([]byte("other")), 5); !errors.Is(err, manifest.ErrChainBroken) {
		t.Fatalf("sidecar chained from the wrong head accepted: %v", err)
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

// TestSealedFrames: every frame before amber/frames.sha256 is sealed; a
// frame whose bytes do not match its sealed digest is refused when it is
// decoded, naming the frame, while the others still read.
// sealedBlob writes an archive holding data as blobs/sha256/big and opens
// it (closed when the test ends).
func sealedBlob(t *testing.T, data []byte) (string, *Archive) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.tar.zst")
	w, err := Create(p, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add("blobs/sha256/big", data); err != nil {
		t.Fatal(err)
	}
	c := manifest.NewChain(hashing.Digest{}, 0)
	c.Append(manifest.Event{Action: "acquisition-started", Time: time.Now()})
	m := &manifest.Manifest{Tool: manifest.Tool{Name: "amber", Version: "test"}}
	m.Acquisition.Finished = time.Now().UTC()
	if _, err := w.Seal(m, c); err != nil {
		t.Fatal(err)
	}
	a, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return p, a
}

func TestSealedFrames(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB: several frames
	p, a := sealedBlob(t, big)
	if !a.FramesSealed() || len(a.frameDigests) < 3 || a.sealErr != nil {
		t.Fatalf("frames sealed: %v, %d digests, %v", a.FramesSealed(), len(a.frameDigests), a.sealErr)
	}
	if b, err := a.ReadEntry("blobs/sha256/big", 4<<20); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("reading: %v", err)
	}
	// A wrong digest for frame 1 (as a replaced frame would have).
	a.SetCache(1, 0)
	a.frameDigests[1] = hashing.Sum([]byte("not it"))
	e, _ := a.Blob("blobs/sha256/big")
	fr1, _ := a.Table.EntryByID(1)
	buf := make([]byte, 100)
	_, err := a.ReadAt(buf, int64(fr1.DecompressedOffset))
	var fe *FrameError
	if !errors.As(err, &fe) || fe.Frame.ID != 1 || !strings.Contains(err.Error(), "sealed frame digest") {
		t.Fatalf("a frame not matching its digest: %v", err)
	}
	if _, err := a.ReadAt(buf, e.Offset); err != nil {
		t.Errorf("frame 0 should still read: %v", err)
	}
	if _, err := Verify(p, VerifyOptions{}); err != nil {
		t.Errorf("the archive itself verifies: %v", err)
	}
}
