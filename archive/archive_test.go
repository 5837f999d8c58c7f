package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
)

func captureBig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	return fixture.Capture(t, dir, "big", fixture.BigImage())
}

func TestRoundTripAndFrames(t *testing.T) {
	p := captureBig(t)
	a := fixture.Open(t, p)
	r, err := archive.Verify(p, archive.VerifyOptions{})
	if err != nil || !r.OK() {
		t.Fatalf("fresh archive does not verify: %v %v", err, r.Problems)
	}
	if r.Files != a.Manifest.Artifacts[0].Files || r.Layers != 2 || r.SHA256 == (hashing.Digest{}) {
		t.Errorf("report: %+v", r)
	}
	// Frames: 256 KiB to 1 MiB, except the last ones, which end the stream.
	n := a.Table.NumFrames()
	if n < 8 {
		t.Fatalf("only %d frames", n)
	}
	for i := int64(0); i < n-3; i++ {
		fr, _ := a.Table.EntryByID(i)
		if fr.DecompressedSize < 256<<10 || fr.DecompressedSize > 1<<20 {
			t.Errorf("frame %d holds %d bytes", i, fr.DecompressedSize)
		}
	}
	// Sidecar: sha256sum format naming the archive's base name.
	side, err := os.ReadFile(p + ".sha256")
	if err != nil || string(side) != r.SHA256.Hex()+"  "+filepath.Base(p)+"\n" {
		t.Errorf("sidecar %q (%v)", side, err)
	}
}

// TestVerifySealed: push's check (frames against their sealed digests, none
// decompressed) passes a fresh archive with the full check's digest and
// counts, and says it was the sealed check.
func TestVerifySealed(t *testing.T) {
	p := captureBig(t)
	full, err := archive.Verify(p, archive.VerifyOptions{})
	if err != nil || !full.OK() {
		t.Fatalf("full: %v %v", err, full.Problems)
	}
	r, err := archive.Verify(p, archive.VerifyOptions{Sealed: true})
	if err != nil || !r.OK() {
		t.Fatalf("sealed: %v %v", err, r.Problems)
	}
	if !r.Sealed || full.Sealed {
		t.Errorf("sealed flag: sealed check %v, full check %v", r.Sealed, full.Sealed)
	}
	if r.SHA256 != full.SHA256 || r.Frames != full.Frames || r.Artifacts != full.Artifacts || len(r.Sidecars) != len(full.Sidecars) {
		t.Errorf("sealed report %+v differs from the full one %+v", r, full)
	}
}

func TestReadsOnlyWhatItNeeds(t *testing.T) {
	p := captureBig(t)
	a := fixture.Open(t, p)
	art := a.Manifest.Artifacts[0]
	layer := art.Layers[0]
	ix, err := a.Index(layer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := a.Blob(manifest.BlobName(layer.Digest))
	_, ids := a.FramesDecoded()
	for _, id := range ids {
		fr, _ := a.Table.EntryByID(id)
		start, end := int64(fr.DecompressedOffset), int64(fr.DecompressedOffset)+int64(fr.DecompressedSize)
		if start >= blob.Offset+int64(256<<10) && end <= blob.Offset+blob.Size-int64(256<<10) {
			t.Errorf("opening and reading the index decoded frame %d, inside layer data", id)
		}
	}
	i, ok := ix.Lookup("data/d04/f004")
	if !ok {
		t.Fatal("file missing")
	}
	rec, _ := ix.Record(i)
	before, _ := a.FramesDecoded()
	rd, err := a.Content(layer.Digest, &rec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rd)
	after, _ := a.FramesDecoded()
	if hashing.Sum(b) != rec.SHA256 {
		t.Fatal("content does not match its index hash")
	}
	if after-before > 2 {
		t.Errorf("reading a %d-byte file decoded %d frames", len(b), after-before)
	}
}

// TestTamperAnywhere flips one byte at a time at offsets spread over the
// whole file and in each kind of region, and expects Verify to fail and
// name the place. The sidecars are left out, so the archive's own hashes
// must catch it.
func TestTamperAnywhere(t *testing.T) {
	src := captureBig(t)
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	a := fixture.Open(t, src)
	dir := t.TempDir()
	type target struct {
		off  int64
		want string // a word the report must contain
	}
	var targets []target
	for i := 0; i < 60; i++ {
		targets = append(targets, target{off: int64(i) * int64(len(orig)-1) / 59})
	}
	frameOf := func(tarOff int64) (int64, int64) {
		fr, _ := a.Table.EntryByDecompressedOffset(uint64(tarOff))
		return int64(fr.CompressedOffset), int64(fr.CompressedSize)
	}
	ixe, _ := a.Blob(manifest.IndexName(a.Manifest.Artifacts[0].Layers[0].Digest))
	off, size := frameOf(ixe.Offset + ixe.Size/2)
	targets = append(targets, target{off + size/2, "amber/index/"})
	off, size = frameOf(a.Trailer.ManifestOffset)
	targets = append(targets, target{off + size/2, "frame"})
	targets = append(targets, target{a.Table.Offset + 10, "seek table"}, target{a.Size - 3, "seek table"}, target{a.Table.Offset + 1, "seek table"})
	lb, _ := a.Blob(manifest.BlobName(a.Manifest.Artifacts[0].Layers[0].Digest))
	off, size = frameOf(lb.Offset + lb.Size/2)
	targets = append(targets, target{off + size - 5, "files /data/"})
	for i, tg := range targets {
		b := bytes.Clone(orig)
		b[tg.off] ^= 0x01
		p := filepath.Join(dir, fmt.Sprintf("t%d.tar.zst", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// The full check, and push's sealed check (no frame decompressed):
		// each catches every flipped byte.
		for _, sealed := range []bool{false, true} {
			r, err := archive.Verify(p, archive.VerifyOptions{Sealed: sealed})
			if err != nil {
				// Only damage that makes the file unrecognisable may be an error.
				if !errors.Is(err, manifest.ErrNotArchive) && !errors.Is(err, manifest.ErrCorrupt) {
					t.Errorf("byte %d (sealed %v): %v", tg.off, sealed, err)
				}
				continue
			}
			if r.OK() {
				t.Errorf("byte %d of %d flipped: verify (sealed %v) passed", tg.off, len(orig), sealed)
				continue
			}
			var all []string
			for _, pr := range r.Problems {
				all = append(all, pr.String())
			}
			if tg.want != "" && !strings.Contains(strings.Join(all, "\n"), tg.want) {
				t.Errorf("byte %d (sealed %v): report does not mention %q:\n%s", tg.off, sealed, tg.want, strings.Join(all, "\n"))
			}
		}
		os.Remove(p)
	}
}

func TestTruncated(t *testing.T) {
	src := captureBig(t)
	orig, _ := os.ReadFile(src)
	for _, n := range []int{0, 3, 100, len(orig) / 2, len(orig) - 1} {
		p := filepath.Join(t.TempDir(), "trunc.tar.zst")
		os.WriteFile(p, orig[:n], 0o644)
		r, err := archive.Verify(p, archive.VerifyOptions{})
		if err == nil && r.OK() {
			t.Errorf("truncated to %d bytes: verified", n)
		}
		if err == nil && !strings.Contains(r.Problems[0].String(), "truncated") {
			t.Errorf("truncated to %d bytes: %v", n, r.Problems[0])
		}
		if _, err := archive.Open(p); err == nil {
			t.Errorf("truncated to %d bytes: opened", n)
		}
	}
}

// TestIndexLimit: a layer past its builder's MaxStrings is refused at capture; one
// captured under a raised limit still verifies under the default (the
// rebuilt index may be as large as the stored one), and a scan under the
// low limit stops with ErrIndexTooBig.
func TestIndexLimit(t *testing.T) {
	var es []fixture.Entry
	p := ""
	for i := 0; i < 1200; i++ { // paths to 2,400 bytes: 2.9 MB of them
		p += "d/"
		es = append(es, fixture.Dir(p))
	}
	layer := fixture.Layer(es...)
	img := fixture.Image{Tags: []string{"deep:1"}, Layers: [][]byte{layer}}
	b := &fileindex.IndexBuilder{MaxStrings: 1 << 20}
	if _, err := fileindex.ScanLayerWith(bytes.NewReader(layer), b, nil, fileindex.ScanOptions{}); !errors.Is(err, fileindex.ErrIndexTooBig) {
		t.Fatalf("scan under a 1 MiB limit: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "deep.src.tar")
	if err := fixture.DockerSave(src, img); err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "deep.tar.zst")
	if _, err := snapshot.CaptureImageFiles(context.Background(), snapshot.Request{Sources: []string{src}, Output: arch,
		Tool: manifest.Tool{Name: "amber", Version: "test"}, Options: snapshot.Options{MaxIndexStrings: -1}}); err != nil {
		t.Fatalf("capture without a limit: %v", err)
	}
	r, err := archive.Verify(arch, archive.VerifyOptions{})
	if err != nil || !r.OK() {
		t.Fatalf("an archive captured under a raised limit does not verify: %v %v", err, r.Problems)
	}
}

// TestPagedIndex: an index read in pages through the sealed frames answers
// exactly as the same index read whole: every record, path, type, child
// range, name lookup and the Merkle root.
func TestPagedIndex(t *testing.T) {
	// Indexes of several 64 KiB pages: records and strings cross pages.
	var l1, l2 []fixture.Entry
	for i := 0; i < 1500; i++ {
		name := fmt.Sprintf("dir%02d/%s-%04d", i%37, strings.Repeat("n", i%90), i)
		l1 = append(l1, fixture.File(name, fmt.Sprint(i)))
		if i%50 == 0 {
			l1 = append(l1, fixture.Hardlink(name+".link", name), fixture.Symlink(name+".sym", "/"+name))
			l2 = append(l2, fixture.Whiteout(fmt.Sprintf("dir%02d", i%37), path.Base(name)))
		}
	}
	l2 = append(l2, fixture.Opaque("dir03"), fixture.File("dir03/again", "x"))
	p := fixture.Capture(t, t.TempDir(), "paged", fixture.Image{Tags: []string{"paged:1"}, Layers: [][]byte{fixture.Layer(l1...), fixture.Layer(l2...)}})
	records := uint32(0)
	open := func() *archive.Archive {
		a, err := archive.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	whole, paged := open(), open()
	if !paged.FramesSealed() {
		t.Fatal("fixture archive has no sealed frames")
	}
	for _, l := range whole.Manifest.Artifacts[0].Layers {
		whole.SetPagedIndexMin(1 << 62)
		wi, err := whole.Index(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		paged.SetPagedIndexMin(0)
		pi, err := paged.Index(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if wi.Bytes() == nil || pi.Bytes() != nil {
			t.Fatalf("layer %s: expected one whole and one paged index", l.Digest)
		}
		records += wi.Len()
		if wi.Len() != pi.Len() || wi.TreeLen() != pi.TreeLen() {
			t.Fatalf("lengths %d/%d vs %d/%d", wi.Len(), wi.TreeLen(), pi.Len(), pi.TreeLen())
		}
		for i := uint32(0); i < wi.Len(); i++ {
			wr, err1 := wi.Record(i)
			pr, err2 := pi.Record(i)
			if err1 != nil || err2 != nil || fmt.Sprint(wr) != fmt.Sprint(pr) {
				t.Fatalf("record %d: %+v %v vs %+v %v", i, wr, err1, pr, err2)
			}
			if ty, err := pi.Type(i); err != nil || ty != wr.Type {
				t.Fatalf("record %d type %c %v", i, ty, err)
			}
			if i < wi.TreeLen() {
				wf, wn := wi.Children(i)
				pf, pn := pi.Children(i)
				if wf != pf || wn != pn {
					t.Fatalf("record %d children %d+%d vs %d+%d", i, wf, wn, pf, pn)
				}
				if j, ok := pi.Lookup(wr.Path); !ok || (j != i && wr.Type != fileindex.TypeLink) {
					if got, _ := wi.Lookup(wr.Path); got != j {
						t.Fatalf("lookup %q: %d %v, whole index says %d", wr.Path, j, ok, got)
					}
				}
			}
		}
		wm, wn, err1 := wi.MerkleRoot()
		pm, pn, err2 := pi.MerkleRoot()
		if err1 != nil || err2 != nil || wm != pm || wn != pn || pm != l.MerkleRoot {
			t.Fatalf("merkle roots %s/%d %v, %s/%d %v, manifest %s", wm, wn, err1, pm, pn, err2, l.MerkleRoot)
		}
	}
	if records < 1500 {
		t.Errorf("only %d records compared", records)
	}
	// verify compares the rebuilt indexes with paged stored ones.
	r, err := archive.Verify(p, archive.VerifyOptions{PageIndexes: true})
	if err != nil {
		t.Fatalf("verify with paged indexes: %v", err)
	}
	if !r.OK() {
		t.Errorf("verify with paged indexes: %v", r.Problems)
	}
}

// Preload reads the layers' indexes within its budget, and nothing past
// it; an index preloaded is not read again.
func TestPreload(t *testing.T) {
	p := captureBig(t)
	a := fixture.Open(t, p)
	a.FramesSealed() // reads the frame digests
	n0, _ := a.FramesDecoded()
	a.Preload(0)
	if n, _ := a.FramesDecoded(); n != n0 {
		t.Fatalf("a budget of 0 decoded %d frames", n-n0)
	}
	a.Preload(1 << 30)
	n, _ := a.FramesDecoded()
	if n == n0 {
		t.Fatal("preload decoded nothing")
	}
	for _, l := range a.Manifest.Artifacts[0].Layers {
		if _, err := a.Index(l.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := a.FramesDecoded(); m != n {
		t.Errorf("the indexes were read again after preload: %d frames, then %d", n, m)
	}
}

// TestSeekTableUnusedBits: the seek table's descriptor byte has bits
// amber always writes zero (reserved 6-2, unused 1-0); a flip of an
// unused bit changed no decoded byte, so both the full and the sealed
// check passed a file whose bytes are not the sealed ones. Each such
// flip is now damage, in both modes.
func TestSeekTableUnusedBits(t *testing.T) {
	src := fixture.Capture(t, t.TempDir(), "small", fixture.WhiteoutImage())
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "t.tar.zst")
	desc := len(orig) - 5 // footer: frames (4), descriptor (1), magic (4)
	for bit := 0; bit < 7; bit++ {
		b := bytes.Clone(orig)
		b[desc] ^= 1 << bit
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, sealed := range []bool{false, true} {
			r, err := archive.Verify(p, archive.VerifyOptions{Sealed: sealed})
			if err == nil && r.OK() {
				t.Errorf("descriptor bit %d flipped: verify (sealed %v) passed", bit, sealed)
			}
		}
	}
}
