package archive

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// appendOnly fails a test that would seek or re-read: it is only an
// io.Writer, and it records the bytes.
type appendOnly struct{ b bytes.Buffer }

func (a *appendOnly) Write(p []byte) (int, error) { return a.b.Write(p) }

// TestCreateStream: an archive written to a stream is byte for byte the
// one written to a file with the same clock, its SHA-256 and size the
// stream's, and it opens and verifies.
func TestCreateStream(t *testing.T) {
	fixed := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	payload := bytes.Repeat([]byte("amber stream "), 300_000) // ~4 MB: several frames
	write := func(w *Writer) *Sealed {
		t.Helper()
		if _, err := w.Add("blobs/a", payload); err != nil {
			t.Fatal(err)
		}
		m := &manifest.Manifest{}
		m.Acquisition.Started, m.Acquisition.Finished = fixed(), fixed()
		s, err := w.Seal(m, manifest.NewChain(hashing.Digest{}, 0))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dir := t.TempDir()
	fs := write(mustCreate(t, filepath.Join(dir, "file.tar.zst"), WriterOptions{Now: fixed}))
	var out appendOnly
	sw, err := CreateStream(filepath.Join(dir, "stream.tar.zst"), &out, WriterOptions{Now: fixed})
	if err != nil {
		t.Fatal(err)
	}
	ss := write(sw)
	sw.Abort() // after Seal: nothing
	if _, err := os.Lstat(filepath.Join(dir, "stream.tar.zst")); !os.IsNotExist(err) {
		t.Fatalf("a stream left a file: %v", err)
	}
	file, err := os.ReadFile(fs.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, out.b.Bytes()) {
		t.Fatalf("stream (%d bytes) differs from file (%d bytes)", out.b.Len(), len(file))
	}
	if ss.SHA256 != hashing.Digest(sha256.Sum256(file)) || ss.Size != int64(len(file)) || ss.SHA256 != fs.SHA256 {
		t.Fatalf("stream sealed %s %d, bytes %x %d", ss.SHA256, ss.Size, sha256.Sum256(file), len(file))
	}
	a, err := Open(fs.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := a.ReadEntry("blobs/a", 1<<30); err != nil || !bytes.Equal(b, payload) {
		t.Fatalf("reading the member back: %v", err)
	}
}

// TestCreateStreamAbort: an aborted stream stops, and nothing is left.
func TestCreateStreamAbort(t *testing.T) {
	var out appendOnly
	w, err := CreateStream(filepath.Join(t.TempDir(), "x.tar.zst"), &out, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add("blobs/a", bytes.Repeat([]byte{1}, 3<<20)); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if _, err := w.Seal(&manifest.Manifest{}, manifest.NewChain(hashing.Digest{}, 0)); err == nil {
		t.Fatal("sealed after abort")
	}
}

func mustCreate(t *testing.T, p string, o WriterOptions) *Writer {
	t.Helper()
	w, err := Create(p, o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}
