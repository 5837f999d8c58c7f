package snapshot_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/view"
)

func sampleImage() fixture.Image {
	return fixture.Image{Tags: []string{"registry.example:5000/team/app:v1", "app:latest"}, Layers: [][]byte{
		fixture.Layer(fixture.Dir("etc/"), fixture.File("etc/passwd", "root:x:0:0\n"), fixture.File("etc/hosts", "127.0.0.1 localhost\n"),
			fixture.Entry{Name: "usr/bin/sudo", Body: "#!suid", Mode: 0o4755}, fixture.Symlink("usr/bin/s", "sudo"),
			fixture.Hardlink("usr/bin/sudo2", "usr/bin/sudo"), fixture.File("name with space", "sp"), fixture.File("new\nline", "nl"),
			fixture.File("bad\xffutf8", "b")),
		fixture.Layer(fixture.Whiteout("etc", "hosts"), fixture.File("etc/motd", "welcome\n")),
	}}
}

func capture(t *testing.T, src, out string, opts snapshot.Options) (*snapshot.Result, error) {
	t.Helper()
	if opts.MaxExpansion == 0 {
		opts.MaxExpansion = snapshot.DefaultMaxExpansion
	}
	return snapshot.CaptureImageFiles(context.Background(), snapshot.Request{Sources: []string{src}, Output: out,
		CommandLine: []string{"amber", "test"}, Tool: manifest.Tool{Name: "amber", Version: "test"}, Options: opts})
}

func noOutput(t *testing.T, out string) {
	t.Helper()
	for _, p := range []string{out, out + ".partial", out + ".sha256", out + ".custody.jsonl"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after a failed capture", filepath.Base(p))
		}
	}
}

// TestSourceKinds captures the same image from every kind of source and
// compression: all must yield the same layers, indexes and Merkle roots.
func TestSourceKinds(t *testing.T) {
	dir := t.TempDir()
	img := sampleImage()
	srcs := map[string]func(string) error{
		"docker-save":          func(p string) error { return fixture.DockerSave(p, img) },
		"docker-save-oci":      func(p string) error { return fixture.DockerSaveOCI(p, fixture.None, img) },
		"docker-save-oci-gzip": func(p string) error { return fixture.DockerSaveOCI(p, fixture.Gzip, img) },
		"oci-layout":           func(p string) error { return fixture.OCILayout(p, fixture.None, img) },
		"oci-layout-gzip":      func(p string) error { return fixture.OCILayout(p, fixture.Gzip, img) },
		"oci-layout-zstd":      func(p string) error { return fixture.OCILayout(p, fixture.Zstd, img) },
	}
	var want *manifest.Artifact
	for name, mk := range srcs {
		src := filepath.Join(dir, name)
		if err := mk(src); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name+".tar.zst")
		res, err := capture(t, src, out, snapshot.Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r, err := archive.Verify(out, archive.VerifyOptions{})
		if err != nil || !r.OK() {
			t.Fatalf("%s: verify: %v %v", name, err, r.Problems)
		}
		art := res.Manifest.Artifacts[0]
		if len(res.Manifest.Artifacts) != 1 || art.Name != "team_app_v1" || len(art.Refs) != 2 {
			t.Errorf("%s: artifacts %+v", name, res.Manifest.Artifacts)
		}
		if want == nil {
			want = &art
			continue
		}
		if art.MerkleRoot != want.MerkleRoot || art.ImageID != want.ImageID || art.Files != want.Files {
			t.Errorf("%s: merkle %s files %d, other sources gave %s %d", name, art.MerkleRoot, art.Files, want.MerkleRoot, want.Files)
		}
		for i := range art.Layers {
			if art.Layers[i].Digest != want.Layers[i].Digest || art.Layers[i].Index.Digest != want.Layers[i].Index.Digest {
				t.Errorf("%s: layer %d differs", name, i)
			}
		}
		if strings.Contains(name, "gzip") && art.Layers[0].SourceMediaType == "" {
			t.Errorf("%s: source media type not recorded", name)
		}
	}
}

func TestTwoImagesShareLayers(t *testing.T) {
	dir := t.TempDir()
	base := fixture.Layer(fixture.File("etc/os-release", "ID=test\n"))
	a := fixture.Image{Tags: []string{"a:1"}, Layers: [][]byte{base, fixture.Layer(fixture.File("a", "a"))}}
	b := fixture.Image{Tags: []string{"b:1"}, Layers: [][]byte{base, fixture.Layer(fixture.File("b", "b"))}}
	src := filepath.Join(dir, "two.tar")
	if err := fixture.DockerSave(src, a, b); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "two.tar.zst")
	if _, err := capture(t, src, out, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	ar := fixture.Open(t, out)
	n := 0
	for _, e := range ar.Manifest.Entries {
		if strings.HasPrefix(e.Name, "amber/index/") {
			n++
		}
	}
	if len(ar.Manifest.Artifacts) != 2 || n != 3 {
		t.Errorf("%d artifacts, %d layers stored; want 2 and 3", len(ar.Manifest.Artifacts), n)
	}
}

func TestDigestMismatchNamesLayer(t *testing.T) {
	dir := t.TempDir()
	img := sampleImage()
	img.BadDiffID = 2
	for _, c := range []fixture.Compression{fixture.None, fixture.Gzip} {
		src := filepath.Join(dir, "bad-"+string(c))
		if err := fixture.OCILayout(src, c, img); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "bad.tar.zst")
		_, err := capture(t, src, out, snapshot.Options{})
		if !errors.Is(err, snapshot.ErrDigestMismatch) || !strings.Contains(err.Error(), "layer 1") {
			t.Errorf("%q: %v", c, err)
		}
		noOutput(t, out)
	}
}

func writeTar(t *testing.T, path string, members map[string][]byte, order []string) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range order {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(members[n])), Typeflag: tar.TypeReg})
		tw.Write(members[n])
	}
	tw.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestHostileSources(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	if err := fixture.DockerSave(good, sampleImage()); err != nil {
		t.Fatal(err)
	}
	goodBytes, _ := os.ReadFile(good)
	outside := filepath.Join(dir, "outside-secret")
	os.WriteFile(outside, []byte("do not read me"), 0o600)
	cases := map[string]struct {
		make func(p string) string // returns the source path
		want error
		msg  string
	}{
		"truncated tarball": {func(p string) string {
			os.WriteFile(p, goodBytes[:len(goodBytes)/2], 0o644)
			return p
		}, snapshot.ErrSource, ""},
		"manifest names a missing layer": {func(p string) string {
			writeTar(t, p, map[string][]byte{"manifest.json": []byte(`[{"Config":"c.json","RepoTags":["x:1"],"Layers":["nope/layer.tar"]}]`), "c.json": []byte(`{"rootfs":{"diff_ids":["sha256:` + strings.Repeat("0", 64) + `"]}}`)}, []string{"c.json", "manifest.json"})
			return p
		}, snapshot.ErrSource, "nope/layer.tar"},
		"member claims 1 TiB": {func(p string) string {
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			tw.WriteHeader(&tar.Header{Name: "manifest.json", Size: 1 << 40, Typeflag: tar.TypeReg, Mode: 0o644})
			b.WriteString("[]")
			os.WriteFile(p, b.Bytes(), 0o644)
			return p
		}, snapshot.ErrSource, "1099511627776"},
		"malformed manifest.json": {func(p string) string {
			writeTar(t, p, map[string][]byte{"manifest.json": []byte(`[{"Config": 7`)}, []string{"manifest.json"})
			return p
		}, snapshot.ErrSource, "manifest.json"},
		"diff_ids do not match layers": {func(p string) string {
			writeTar(t, p, map[string][]byte{"manifest.json": []byte(`[{"Config":"c.json","Layers":["l.tar"]}]`), "c.json": []byte(`{"rootfs":{"diff_ids":[]}}`), "l.tar": fixture.Layer(fixture.File("a", "b"))}, []string{"c.json", "l.tar", "manifest.json"})
			return p
		}, snapshot.ErrSource, "0 diff_ids for 1 layers"},
		"dotdot names in the source tar": {func(p string) string {
			// Names in a source are only looked up; "../" can never reach a file.
			writeTar(t, p, map[string][]byte{"manifest.json": []byte(`[{"Config":"../../../` + outside + `","Layers":[]}]`)}, []string{"manifest.json"})
			return p
		}, snapshot.ErrSource, "no member"},
		"blob symlinked out of an OCI layout": {func(p string) string {
			fixture.OCILayout(p, fixture.None, sampleImage())
			blobs, _ := filepath.Glob(filepath.Join(p, "blobs/sha256/*"))
			for _, b := range blobs {
				os.Remove(b)
				os.Symlink(outside, b)
			}
			return p
		}, snapshot.ErrSource, ""},
		"gzip-compressed docker save": {func(p string) string {
			os.WriteFile(p, fixture.Compress(goodBytes, fixture.Gzip), 0o644)
			return p
		}, snapshot.ErrSource, "gunzip"},
		"not a tarball": {func(p string) string {
			os.WriteFile(p, []byte("hello, I am not a tar file at all, not even close........"), 0o644)
			return p
		}, snapshot.ErrSource, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			src := c.make(filepath.Join(t.TempDir(), "src"))
			out := filepath.Join(t.TempDir(), "out.tar.zst")
			_, err := capture(t, src, out, snapshot.Options{})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.want, c.msg)
			}
			noOutput(t, out)
		})
	}
}

// TestHostileLayers: layers are evidence, kept byte for byte; what is odd
// in them is recorded as an anomaly and shown safely.
func TestHostileLayers(t *testing.T) {
	dir := t.TempDir()
	evil := fixture.Layer(
		fixture.File("../../../../tmp/amber-escape", "escaped?"),
		fixture.File("/etc/abs", "absolute"),
		fixture.Hardlink("hl", "../../../etc/shadow"),
		fixture.Symlink("sl", "../../../../etc/shadow"),
		fixture.File("dup", "first"), fixture.File("dup", "second"),
	)
	liar := fixture.Layer(fixture.Entry{Name: "huge", Body: "only this", Size: 1 << 40})
	img := fixture.Image{Tags: []string{"evil:1"}, Layers: [][]byte{evil, liar}}
	src := filepath.Join(dir, "evil.tar")
	if err := fixture.DockerSave(src, img); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "evil.tar.zst")
	res, err := capture(t, src, out, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat("/tmp/amber-escape"); err == nil {
		t.Fatal("a file was written outside")
	}
	kinds := map[string]bool{}
	for _, a := range res.Manifest.Anomalies {
		kinds[a.Kind] = true
	}
	for _, k := range []string{"unsafe-name", "dangling-hardlink", "duplicate-entry", "tar-broken"} {
		if !kinds[k] {
			t.Errorf("anomaly %s not recorded: %+v", k, res.Manifest.Anomalies)
		}
	}
	r, err := archive.Verify(out, archive.VerifyOptions{})
	if err != nil || !r.OK() {
		t.Fatalf("verify: %v %v", err, r.Problems)
	}
	v := &view.View{A: fixture.Open(t, out)}
	for p, want := range map[string]string{"images/evil_1/layers/0/tmp/amber-escape": "escaped?", "images/evil_1/layers/0/etc/abs": "absolute", "images/evil_1/rootfs/dup": "second"} {
		e, err := v.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		rd, _ := v.Open(e)
		var b bytes.Buffer
		b.ReadFrom(rd)
		if b.String() != want {
			t.Errorf("%s = %q, want %q", p, b.String(), want)
		}
	}
	if e, err := v.Stat("images/evil_1/rootfs/sl"); err != nil || e.Node.Rec.Linkname != "../../../../etc/shadow" {
		t.Errorf("symlink not kept as is: %v", err)
	}
}

func TestDecompressionBomb(t *testing.T) {
	dir := t.TempDir()
	zeros := make([]byte, 200<<20)
	layer := fixture.Layer(fixture.File("zeros", string(zeros)))
	src := filepath.Join(dir, "bomb")
	if err := fixture.OCILayout(src, fixture.Zstd, fixture.Image{Tags: []string{"bomb:1"}, Layers: [][]byte{layer}}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bomb.tar.zst")
	_, err := capture(t, src, out, snapshot.Options{})
	if !errors.Is(err, snapshot.ErrBomb) {
		t.Fatalf("bomb: %v", err)
	}
	noOutput(t, out)
}

func TestCancelLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	src := filepath.Join(dir, "big.tar")
	if err := fixture.DockerSave(src, fixture.Image{Tags: []string{"big:1"}, Layers: [][]byte{fixture.Layer(fixture.File("big", string(big)))}}); err != nil {
		t.Fatal(err)
	}
	for _, delay := range []time.Duration{0, time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond} {
		out := filepath.Join(dir, fmt.Sprintf("c%d.tar.zst", delay))
		ctx, cancel := context.WithTimeout(context.Background(), delay)
		_, err := snapshot.CaptureImageFiles(ctx, snapshot.Request{Sources: []string{src}, Output: out, Tool: manifest.Tool{Name: "amber"}})
		cancel()
		if err == nil {
			// Finished before the deadline: then it must be whole.
			if r, err := archive.Verify(out, archive.VerifyOptions{}); err != nil || !r.OK() {
				t.Errorf("delay %v: finished archive does not verify", delay)
			}
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("delay %v: %v", delay, err)
		}
		noOutput(t, out)
	}
}

func TestNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "s.tar")
	fixture.DockerSave(src, sampleImage())
	out := filepath.Join(dir, "o.tar.zst")
	os.WriteFile(out, []byte("existing evidence"), 0o644)
	if _, err := capture(t, src, out, snapshot.Options{}); err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Fatalf("overwrote: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "existing evidence" {
		t.Fatal("existing file changed")
	}
}

// TestStreamedIndex: an image captured with its layers' indexes streamed
// into the archive (as a layer of a million files is) holds the same
// indexes as one captured with them kept whole, and verifies.
func TestStreamedIndex(t *testing.T) {
	dir := t.TempDir()
	kept := fixture.Capture(t, dir, "kept", fixture.BigImage(), fixture.WhiteoutImage())
	defer func(old int64) { *snapshot.KeepIndexMax = old }(*snapshot.KeepIndexMax)
	*snapshot.KeepIndexMax = 0
	streamed := fixture.Capture(t, dir, "streamed", fixture.BigImage(), fixture.WhiteoutImage())
	a, b := fixture.Open(t, kept), fixture.Open(t, streamed)
	n := 0
	for i, art := range a.Manifest.Artifacts {
		for j, l := range art.Layers {
			s := b.Manifest.Artifacts[i].Layers[j]
			if l.Index != s.Index || l.MerkleRoot != s.MerkleRoot || l.Files != s.Files {
				t.Errorf("%s layer %d: index %v / %v, root %v / %v", art.Name, j, l.Index, s.Index, l.MerkleRoot, s.MerkleRoot)
			}
			n++
		}
	}
	if n < 3 {
		t.Fatalf("only %d layers compared", n)
	}
	if r, err := archive.Verify(streamed, archive.VerifyOptions{}); err != nil || !r.OK() {
		t.Fatalf("the archive with streamed indexes does not verify: %v %v", err, r.Problems)
	}
}

// TestKeepMismatched: with KeepMismatched a layer whose bytes are not its
// diff_id's is stored as found, under its own digest, and flagged; the
// archive verifies; without it the source is refused (above).
func TestKeepMismatched(t *testing.T) {
	dir := t.TempDir()
	img := sampleImage()
	img.BadDiffID = 2
	src := filepath.Join(dir, "bad")
	if err := fixture.OCILayout(src, fixture.Gzip, img); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kept.tar.zst")
	res, err := capture(t, src, out, snapshot.Options{KeepMismatched: true})
	if err != nil {
		t.Fatal(err)
	}
	l := res.Manifest.Artifacts[0].Layers[1]
	want := hashing.Sum(img.Layers[1])
	if l.Digest != want || l.DiffID.IsZero() || l.DiffID == want {
		t.Errorf("layer 1 stored as %s claimed %s; want the found digest %s and the config's claim", l.Digest, l.DiffID, want)
	}
	if ok := res.Manifest.Artifacts[0].Layers[0].DiffID; !ok.IsZero() {
		t.Errorf("layer 0 matches, yet has a claimed diff_id %s", ok)
	}
	var flagged []manifest.Anomaly
	for _, a := range res.Manifest.Anomalies {
		if a.Kind == "layer-digest-mismatch" {
			flagged = append(flagged, a)
		}
	}
	if len(flagged) != 1 || flagged[0].Layer != 1 || !strings.Contains(flagged[0].Detail, l.DiffID.String()) {
		t.Errorf("anomalies %+v; want one layer-digest-mismatch on layer 1 naming the claimed diff_id", flagged)
	}
	rep, err := archive.Verify(out, archive.VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}
