package archive_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/manifest"
)

// TestSparseBounded: eight 1 TiB sparse files in a 30 KB layer hashed 8 TiB
// of zeros, deaf to signals. Their logical bytes now count against a
// bound, and the expansion stops when the context is done.
func TestSparseBounded(t *testing.T) {
	layer, err := fixture.SparseLayer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b := &fileindex.IndexBuilder{}
	defer b.Close()
	_, err = fileindex.ScanLayerWith(bytes.NewReader(layer), b, nil, fileindex.ScanOptions{MaxExpanded: 64 << 20})
	if !errors.Is(err, fileindex.ErrTooSparse) {
		t.Errorf("bounded scan: %v, want fileindex.ErrTooSparse", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	b2 := &fileindex.IndexBuilder{}
	defer b2.Close()
	_, err = fileindex.ScanLayerWith(bytes.NewReader(layer), b2, nil, fileindex.ScanOptions{Ctx: ctx})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unbounded scan, cancelled: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the cancelled scan went on for %v", d)
	}
}

// TestVerifyStopsWhenCancelled: verify honours its context (it went on to
// the end, deaf to Ctrl-C).
func TestVerifyStopsWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.tar.zst")
	w, err := archive.Create(p, archive.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add("x", bytes.Repeat([]byte("x"), 4<<20)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Seal(&manifest.Manifest{Format: manifest.FormatName, FormatVersion: manifest.FormatVersion}, manifest.NewChain(hashing.Digest{}, 0)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := archive.Verify(p, archive.VerifyOptions{Ctx: ctx}); !errors.Is(err, context.Canceled) {
		t.Errorf("verify with its context done: %v", err)
	}
}
