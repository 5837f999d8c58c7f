package archive_test

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/fixture"
)

// memBlob is a blob held in memory, as a remote one would be read: it
// counts the bytes read and notes what the archive tells it to forget.
type memBlob struct {
	b      []byte
	mu     sync.Mutex
	read   int64
	forgot [][2]int64
	closed bool
}

func (m *memBlob) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	m.read += int64(n)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memBlob) Forget(off, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgot = append(m.forgot, [2]int64{off, n})
}

func (m *memBlob) Close() error { m.closed = true; return nil }

// TestOpenReaderAt opens and verifies an archive through a ReaderAt that
// is no file: opening reads its end only, a file reads its frames, a
// frame that fails its sealed digest is named and forgotten by the
// reader, and Verify over the reader finds what Verify of the file finds.
func TestOpenReaderAt(t *testing.T) {
	p := captureBig(t)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m := &memBlob{b: data}
	a, err := archive.OpenReaderAt(m, int64(len(data)), "docker://example/case:e1")
	if err != nil {
		t.Fatal(err)
	}
	if a.Path != "docker://example/case:e1" || a.Manifest == nil {
		t.Fatalf("opened %q", a.Path)
	}
	if m.read > int64(len(data))/4 {
		t.Errorf("opening read %d of %d bytes", m.read, len(data))
	}
	want, err := fixture.Open(t, p).ReadEntry("amber/manifest.json", 1<<30)
	if err == nil && !bytes.Equal(want, a.ManifestBytes) {
		t.Errorf("manifest differs")
	}
	if err := a.Close(); err != nil || !m.closed {
		t.Errorf("Close: %v, closed %v", err, m.closed)
	}

	r, err := archive.VerifyReaderAt(&memBlob{b: data}, int64(len(data)), "remote", archive.VerifyOptions{})
	if err != nil || !r.OK() {
		t.Fatalf("verify over a reader: %v %v", err, r.Problems)
	}
	rf, err := archive.Verify(p, archive.VerifyOptions{})
	if err != nil || r.SHA256 != rf.SHA256 || r.Files != rf.Files || r.Members != rf.Members || r.SealedEvents != rf.SealedEvents || len(r.Sidecars) != 0 {
		t.Errorf("verify over a reader: %+v, of the file: %+v (%v)", r, rf, err)
	}

	// Sidecars looked for where asked.
	rs, err := archive.VerifyReaderAt(&memBlob{b: data}, int64(len(data)), "remote", archive.VerifyOptions{SidecarPath: p})
	if err != nil || !rs.OK() || rs.CustodyHead != rf.CustodyHead || len(rs.Sidecars) != 2 {
		t.Errorf("verify with sidecars: %v %+v", err, rs)
	}

	// A byte of the first frame flipped: reading it names frame 0 and the
	// reader is told to forget those bytes; verify names it too.
	bad := bytes.Clone(data)
	a0 := fixture.Open(t, p)
	fr, _ := a0.Table.EntryByID(0)
	bad[fr.CompressedOffset+uint64(fr.CompressedSize)/2] ^= 0x40
	mb := &memBlob{b: bad}
	ab, err := archive.OpenReaderAt(mb, int64(len(bad)), "remote")
	if err != nil {
		t.Fatal(err)
	}
	defer ab.Close()
	if _, err := ab.ReadAt(make([]byte, 10), 0); err == nil || !strings.Contains(err.Error(), "frame 0") {
		t.Errorf("reading a damaged frame: %v", err)
	}
	if len(mb.forgot) == 0 || mb.forgot[0] != [2]int64{int64(fr.CompressedOffset), int64(fr.CompressedSize)} {
		t.Errorf("forgot %v, want frame 0 (%d+%d)", mb.forgot, fr.CompressedOffset, fr.CompressedSize)
	}
	rb, err := archive.VerifyReaderAt(&memBlob{b: bad}, int64(len(bad)), "remote", archive.VerifyOptions{})
	if err != nil || rb.OK() || !strings.Contains(rb.Problems[0].Where, "frame 0") {
		t.Errorf("verify of a damaged blob: %v %+v", err, rb)
	}
}
