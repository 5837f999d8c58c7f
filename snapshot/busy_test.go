//go:build linux

package snapshot

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// readLayer runs upperRoute over dir and returns the layer's entries
// (name -> content) after checking that the digest upperRoute's layer
// file reports is the digest of its bytes.
func readLayer(t *testing.T, dir string) (map[string][]byte, []manifest.Anomaly) {
	t.Helper()
	files, _, anomalies := readLayerRaw(t, dir)
	return files, anomalies
}

// readLayerRaw is readLayer that also returns the layer's bytes.
func readLayerRaw(t *testing.T, dir string) (map[string][]byte, []byte, []manifest.Anomaly) {
	t.Helper()
	lf, err := newLayerFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer lf.remove()
	var anomalies []manifest.Anomaly
	if err := upperRoute([]string{dir}, false, lf, &anomalies); err != nil {
		t.Fatal(err)
	}
	size, sum, err := lf.finish()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(lf.path())
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size || hashing.Digest(sha256.Sum256(b)) != sum {
		t.Fatalf("the layer file is %d bytes, %x; upperRoute reports %d, %s", len(b), sha256.Sum256(b), size, sum)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the layer is not a tar: %v", err)
		}
		c, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Size != int64(len(c)) {
			t.Fatalf("%s: header %d bytes, %d read", h.Name, h.Size, len(c))
		}
		out[h.Name] = c
	}
	return out, b, anomalies
}

// whole reports whether b is one whole version: n bytes, all one letter.
func whole(b []byte, n int) bool {
	return len(b) == n && len(b) > 0 && bytes.Count(b, b[:1]) == n
}

func changedAnomaly(anomalies []manifest.Anomaly, p string) *manifest.Anomaly {
	for i, a := range anomalies {
		if a.Kind == "changed-during-capture" && a.Path == p {
			return &anomalies[i]
		}
	}
	return nil
}

// TestUpperRouteRereadsOnce: a writer goroutine rewrites a file just
// after amber has read it (readHook puts the race where it matters, every
// time). Changed once, the file is read again and that version is stored
// with nothing flagged; changed again, the second read is stored and the
// anomaly gives the states before and after each read. Small files (read
// into memory) and large ones (streamed into the layer, then taken back
// out) alike; the entries around it are intact and the layer's digest is
// that of its bytes.
func TestUpperRouteRereadsOnce(t *testing.T) {
	for _, size := range []int{5 << 20, 1000} {
		for _, times := range []int{1, 2} {
			dir := t.TempDir()
			p := filepath.Join(dir, "m-busy")
			os.WriteFile(filepath.Join(dir, "a-before"), bytes.Repeat([]byte("x"), 3<<20), 0o644)
			os.WriteFile(p, bytes.Repeat([]byte("a"), size), 0o644)
			os.WriteFile(filepath.Join(dir, "z-after"), []byte("after\n"), 0o644)
			old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
			os.Chtimes(p, old, old)
			// The writer: each request rewrites the file in place with the
			// next version (another letter, one byte longer, another
			// mtime) and answers when done.
			rewrite, done := make(chan int), make(chan error)
			go func() {
				for v := range rewrite {
					f, err := os.OpenFile(p, os.O_WRONLY, 0)
					if err == nil {
						_, err = f.WriteAt(bytes.Repeat([]byte{"bcd"[v]}, size+1+v), 0)
						f.Close()
					}
					ts := old.Add(time.Duration(v+1) * time.Hour)
					if err == nil {
						err = os.Chtimes(p, ts, ts)
					}
					done <- err
				}
			}()
			reads := 0
			readHook = func(path string, pass int) {
				if filepath.Base(path) != "m-busy" {
					return
				}
				reads++
				if pass < times {
					rewrite <- pass
					if err := <-done; err != nil {
						t.Error(err)
					}
				}
			}
			files, anomalies := readLayer(t, dir)
			readHook = nil
			close(rewrite)
			if !whole(files["a-before"], 3<<20) || string(files["z-after"]) != "after\n" {
				t.Errorf("%d bytes, %d changes: the entries around the busy file are damaged", size, times)
			}
			got, a := files["m-busy"], changedAnomaly(anomalies, "m-busy")
			if reads != 2 {
				t.Errorf("%d bytes, changed %d times: read %d times, want 2", size, times, reads)
			}
			if !whole(got, size+1) || got[0] != 'b' {
				t.Errorf("%d bytes, changed %d times: stored %d bytes of %q, want the second read: %d bytes of b", size, times, len(got), got[:1], size+1)
			}
			switch {
			case times == 1 && a != nil:
				t.Errorf("%d bytes: the second read was quiet, yet flagged: %+v", size, a)
			case times == 2 && a == nil:
				t.Errorf("%d bytes: changed during both reads, not flagged: %+v", size, anomalies)
			case times == 2:
				for _, want := range []string{"size", "mtime", "ctime", "2020-01-01T01:00:00Z", "2020-01-01T02:00:00Z"} {
					if !strings.Contains(a.Detail, want) {
						t.Errorf("%d bytes: the anomaly lacks %s: %s", size, want, a.Detail)
					}
				}
			}
		}
	}
}
