package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
)

var updateDigests = flag.Bool("update", false, "rewrite testdata/golden/archive-digests.txt for this build's encoder")

const (
	imagesDir   = "../testdata/images"
	digestsFile = "../testdata/golden/archive-digests.txt"
)

// goldenHost and goldenTime stand for the capturing host and its clock:
// with them fixed, a capture depends on its sources and amber alone.
var (
	goldenTime = time.Date(2024, 3, 2, 9, 30, 0, 0, time.UTC)
	goldenHost = snapshot.Host{Name: "evidence-host", OS: "linux/amd64", Kernel: "Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1",
		User: "examiner", UID: 1000, Dir: "/evidence/snapshot"}
)

// reproducibleCapture captures src (a path relative to this package, so
// that with goldenHost.Dir it is recorded as the same absolute path in
// every checkout) into dir/run/name.tar.zst under the fixed clock and
// host (the archive's name is recorded, so a second run goes to another
// directory),
// with every optional record on (MD5, SHA-1, source hashes) so that the
// digests cover them too.
func reproducibleCapture(t *testing.T, src, dir, run, name string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, run), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, run, name+".tar.zst")
	_, err := snapshot.CaptureImageFiles(context.Background(), snapshot.Request{
		Sources: []string{src}, Output: out,
		Case:        manifest.Case{Case: "GOLDEN-1", Exhibit: "E1", Examiner: "amber test suite", Notes: "reproducible capture"},
		CommandLine: []string{"amber", "capture", "image", src, "-o", name + ".tar.zst", "--md5", "--sha1", "--hash-source"},
		Tool:        manifest.Tool{Name: "amber", Version: "golden"},
		MD5:         true, SHA1: true, HashSources: true,
		Options: snapshot.Options{MaxExpansion: snapshot.DefaultMaxExpansion, Encoder: fixture.Encoder()},
		Now:     func() time.Time { return goldenTime },
		Host:    &goldenHost,
	})
	if err != nil {
		t.Fatalf("capturing %s: %v", src, err)
	}
	return out
}

// captureFiles are the files a capture writes, by the name the digest
// file gives them.
var captureFiles = []struct{ name, ext string }{
	{"archive", ""}, {"sha256-sidecar", ".sha256"}, {"md5-sidecar", ".md5"}, {"sha1-sidecar", ".sha1"}, {"custody-sidecar", ".custody.jsonl"},
}

// captureBytes reads every file of the capture at out.
func captureBytes(t *testing.T, out string) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	for _, f := range captureFiles {
		b, err := os.ReadFile(out + f.ext)
		if err != nil {
			t.Fatal(err)
		}
		got[f.name] = b
	}
	return got
}

// sameCapture fails unless two captures wrote the same bytes, file by
// file.
func sameCapture(t *testing.T, what string, a, b map[string][]byte) {
	t.Helper()
	for _, f := range captureFiles {
		if !bytes.Equal(a[f.name], b[f.name]) {
			t.Errorf("%s: the %s differs between two captures of the same input (%d and %d bytes)", what, f.name, len(a[f.name]), len(b[f.name]))
		}
	}
}

func withProcs(n int, f func()) {
	old := runtime.GOMAXPROCS(n)
	defer runtime.GOMAXPROCS(old)
	f()
}

// TestReproducibleCapture: with the clock and the host fixed, capturing
// the same sources writes the same bytes, whatever the scheduling of the
// parallel frame compression (GOMAXPROCS 1 and 4), checked on an image of
// many frames.
func TestReproducibleCapture(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "big.src.tar")
	if err := fixture.DockerSave(src, fixture.BigImage()); err != nil {
		t.Fatal(err)
	}
	var one, four string
	withProcs(1, func() { one = reproducibleCapture(t, src, dir, "procs1", "big") })
	withProcs(4, func() { four = reproducibleCapture(t, src, dir, "procs4", "big") })
	a, err := archive.Open(one)
	if err != nil {
		t.Fatal(err)
	}
	frames := a.Trailer.TarOffset
	a.Close()
	if frames < 4*archive.FrameMax {
		t.Fatalf("the image is too small to test parallel compression: %d bytes of tar", frames)
	}
	sameCapture(t, "GOMAXPROCS 1 and 4", captureBytes(t, one), captureBytes(t, four))
}

// TestArchiveDigests pins the bytes of the capture of every committed
// fixture of testdata/images (with a fixed clock and host): the archive,
// its tar stream, its sidecars. A refactor must not change one byte;
// only a deliberate format change rewrites the file, with
// go test ./snapshot -run TestArchiveDigests -update (once per encoder:
// also with -tags amber_purego). testdata/README.md says what is covered.
func TestArchiveDigests(t *testing.T) {
	ents, err := os.ReadDir(imagesDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	got := map[string]string{} // "fixture file" -> sha256
	for _, e := range ents {
		src := filepath.Join(imagesDir, e.Name())
		var first, second string
		// Twice, under different scheduling: a digest pinned from a
		// capture that differs from run to run would only make the test
		// flaky, not strict.
		withProcs(1, func() { first = reproducibleCapture(t, src, dir, "procs1", e.Name()) })
		withProcs(2, func() { second = reproducibleCapture(t, src, dir, "procs2", e.Name()) })
		files := captureBytes(t, first)
		sameCapture(t, e.Name(), files, captureBytes(t, second))
		r, err := archive.Verify(first, archive.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() {
			t.Errorf("%s: the reproducible capture does not verify: %v", e.Name(), r.Problems)
		}
		for _, f := range captureFiles {
			got[e.Name()+" "+f.name] = hexSum(files[f.name])
		}
		got[e.Name()+" tar-stream"] = hexSum(tarStream(t, files["archive"]))
	}
	want, others := readDigests(t, fixture.EncoderName())
	if *updateDigests {
		writeDigests(t, got, others)
		return
	}
	if len(want) == 0 {
		t.Fatalf("%s has no digests for the %s encoder (run with -update to record them)", digestsFile, fixture.EncoderName())
	}
	for _, k := range sortedKeys(got, want) {
		switch g, w := got[k], want[k]; {
		case w == "":
			t.Errorf("%s %s: not in %s (a new fixture? run with -update)", fixture.EncoderName(), k, digestsFile)
		case g == "":
			t.Errorf("%s %s: in %s but not captured (a fixture removed?)", fixture.EncoderName(), k, digestsFile)
		case g != w:
			t.Errorf("%s %s: sha256 %s, want %s: the capture of the same input changed (update the digests only with a deliberate format change, never in a refactor)", fixture.EncoderName(), k, g, w)
		}
	}
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// tarStream decompresses an archive: its tar stream's digest tells, when
// the archive's changed, whether the tar changed or only its compression.
func tarStream(t *testing.T, archive []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := io.ReadAll(d)
	if err != nil {
		t.Fatalf("decompressing the archive: %v", err)
	}
	return b
}

// readDigests reads the digest file: lines "ENCODER FIXTURE FILE SHA256".
// It returns this encoder's digests by "FIXTURE FILE", and the other
// encoders' lines as they are.
func readDigests(t *testing.T, encoder string) (map[string]string, []string) {
	t.Helper()
	b, err := os.ReadFile(digestsFile)
	if os.IsNotExist(err) && *updateDigests {
		return nil, nil
	}
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	mine := map[string]string{}
	var others []string
	for i, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("%s:%d: want ENCODER FIXTURE FILE SHA256, got %q", digestsFile, i+1, l)
		}
		if f[0] != encoder {
			others = append(others, l)
			continue
		}
		mine[f[1]+" "+f[2]] = f[3]
	}
	return mine, others
}

func writeDigests(t *testing.T, mine map[string]string, others []string) {
	t.Helper()
	lines := append([]string(nil), others...)
	for k, v := range mine {
		lines = append(lines, fixture.EncoderName()+" "+k+" "+v)
	}
	sort.Strings(lines)
	var b strings.Builder
	b.WriteString("# SHA-256 of the capture of each fixture of testdata/images with a fixed clock and host\n")
	b.WriteString("# (snapshot/reproducible_test.go; what is covered and when to update: testdata/README.md).\n")
	b.WriteString("# ENCODER FIXTURE FILE SHA256\n")
	for _, l := range lines {
		fmt.Fprintln(&b, l)
	}
	if err := os.WriteFile(digestsFile, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(a, b map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}
