package manifest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// sparseLayer makes, with GNU tar, a 30 KB layer of eight sparse files of
// 1 TiB each (PAX sparse format 1.0).
func sparseLayer(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		f, err := os.Create(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(1 << 40); err != nil {
			t.Fatalf("a sparse file of 1 TiB: %v", err)
		}
		f.WriteAt([]byte("x"), 1<<40)
		f.Close()
	}
	out, err := exec.Command("tar", "--sparse", "--format=posix", "-C", src, "-cf", "-", ".").Output()
	if err != nil {
		t.Fatalf("tar --sparse: %v", err)
	}
	if len(out) > 64<<10 {
		t.Fatalf("the sparse layer is %d bytes", len(out))
	}
	return out
}

// TestSparseBounded: eight 1 TiB sparse files in a 30 KB layer hashed 8 TiB
// of zeros, deaf to signals. Their logical bytes now count against a
// bound, and the expansion stops when the context is done.
func TestSparseBounded(t *testing.T) {
	layer := sparseLayer(t)
	start := time.Now()
	b := &IndexBuilder{}
	defer b.Close()
	_, err := ScanLayerWith(bytes.NewReader(layer), b, nil, ScanOptions{MaxExpanded: 64 << 20})
	if !errors.Is(err, ErrTooSparse) {
		t.Errorf("bounded scan: %v, want ErrTooSparse", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	b2 := &IndexBuilder{}
	defer b2.Close()
	_, err = ScanLayerWith(bytes.NewReader(layer), b2, nil, ScanOptions{Ctx: ctx})
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
	w, err := Create(p, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add("x", bytes.Repeat([]byte("x"), 4<<20)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Seal(&Manifest{Format: FormatName, FormatVersion: FormatVersion}, NewChain(hashing.Digest{}, 0)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(p, VerifyOptions{Ctx: ctx}); !errors.Is(err, context.Canceled) {
		t.Errorf("verify with its context done: %v", err)
	}
}
