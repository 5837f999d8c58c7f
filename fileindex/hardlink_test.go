package fileindex

import (
	"archive/tar"
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// hlEnt is one entry of a crafted layer: a file with content, or a hard
// link (link set).
type hlEnt struct{ name, body, link string }

// hardlinkLayer writes the entries as a layer tar.
func hardlinkLayer(t *testing.T, ents ...hlEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if e.link != "" {
			h.Typeflag, h.Size, h.Linkname = tar.TypeLink, 0, e.link
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// indexLayer indexes a layer as a capture does (ScanLayer hashes the
// content), checks that the reference builder, given the same entries,
// writes the same bytes, root and anomalies, and returns the index.
func indexLayer(t *testing.T, layer []byte) (*Index, []manifest.Anomaly) {
	t.Helper()
	b := &IndexBuilder{TempDir: t.TempDir()}
	n, err := ScanLayer(bytes.NewReader(layer), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ib, root, files, err := b.BuildWithRoot(n)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ParseIndex(ib)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
	if r, f, err := ix.MerkleRoot(); err != nil || r != root || f != files {
		t.Fatalf("Merkle root of the index %v (%d files, %v), of the build %v (%d)", r, f, err, root, files)
	}
	// The reference, fed the entries with the offsets the index recorded.
	rb := &refBuilder{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for k := uint32(0); ; k++ {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var rec Record
		for i := uint32(0); i < ix.Len(); i++ {
			if r, _ := ix.Record(i); r.EntryNo == k {
				rec = r
			}
		}
		sum := rec.SHA256
		if rec.Has(FlagHardlink) {
			sum = hashing.Sum(nil) // a link has no content; the index holds the target's
		}
		rb.Add(h, rec.HdrOffset, rec.DataOffset, sum, false)
	}
	rib, rroot, rfiles, err := rb.buildWithRoot(n)
	if err != nil || !bytes.Equal(rib, ib) || rroot != root || rfiles != files {
		t.Fatalf("the reference builder differs: %d vs %d bytes, same root %v, %d vs %d files, %v", len(rib), len(ib), rroot == root, rfiles, files, err)
	}
	if !reflect.DeepEqual(rb.Anomalies, b.Anomalies) {
		t.Fatalf("anomalies differ:\n%v\n%v", b.Anomalies, rb.Anomalies)
	}
	return ix, b.Anomalies
}

// lookup returns the tree record of p.
func lookup(t *testing.T, ix *Index, p string) Record {
	t.Helper()
	i, ok := ix.Lookup(p)
	if !ok {
		t.Fatalf("%s not in the tree", p)
	}
	r, err := ix.Record(i)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// content is what amber serves for r: the layer bytes its record points
// at, and the SHA-256 it shows.
func content(t *testing.T, layer []byte, r Record) string {
	t.Helper()
	if r.Type != TypeReg || r.DataOffset < 0 || r.DataOffset+r.Size > int64(len(layer)) {
		t.Fatalf("%s: type %c, data at %d+%d", r.Path, r.Type, r.DataOffset, r.Size)
	}
	s := string(layer[r.DataOffset : r.DataOffset+r.Size])
	if r.SHA256 != hashing.Sum([]byte(s)) {
		t.Errorf("%s: SHA-256 %s is not that of its content %q", r.Path, r.SHA256, s)
	}
	return s
}

// TestHardLinkToReplacedTarget (issue 14, item 3): t = ORIGINAL, h a hard
// link to t, then t again = REPLACED. Extracted in order (GNU tar, the
// engine, umoci), h keeps ORIGINAL, and t is a new file: h is served and
// hashed as ORIGINAL and shares no inode with t.
func TestHardLinkToReplacedTarget(t *testing.T) {
	layer := hardlinkLayer(t, hlEnt{name: "t", body: "ORIGINAL"}, hlEnt{name: "h", link: "t"}, hlEnt{name: "t", body: "REPLACED"})
	ix, anomalies := indexLayer(t, layer)
	h, tt := lookup(t, ix, "h"), lookup(t, ix, "t")
	if got := content(t, layer, h); got != "ORIGINAL" {
		t.Errorf("h serves %q, want ORIGINAL", got)
	}
	if got := content(t, layer, tt); got != "REPLACED" {
		t.Errorf("t serves %q, want REPLACED", got)
	}
	if h.Ino == tt.Ino || h.Nlink != 1 || tt.Nlink != 1 || h.Has(FlagDangling) {
		t.Errorf("h: inode %d, %d links, flags %#x; t: inode %d, %d links", h.Ino, h.Nlink, h.Flags, tt.Ino, tt.Nlink)
	}
	// h's inode is the shadowed entry 0, whose bytes it shows.
	orig, err := ix.Record(h.Ino)
	if err != nil || !orig.Has(FlagShadowed) || orig.EntryNo != 0 || orig.DataOffset != h.DataOffset {
		t.Errorf("h's inode record: %+v, %v", orig, err)
	}
	if !strings.Contains(string(h.LeafData()), hashing.Sum([]byte("ORIGINAL")).Hex()) {
		t.Errorf("h's Merkle leaf does not hash ORIGINAL: %q", h.LeafData())
	}
	for _, a := range anomalies {
		if a.Kind != "duplicate-entry" {
			t.Errorf("anomaly %+v", a)
		}
	}
}

// TestHardLinkChains: a link to a link resolves hop by hop, each hop to
// the entry of its target that precedes the linking entry; names linked to
// the same entry share one inode and count each other's links.
func TestHardLinkChains(t *testing.T) {
	layer := hardlinkLayer(t,
		hlEnt{name: "t", body: "ORIGINAL"}, // 0
		hlEnt{name: "a", link: "t"},        // 1: t's entry 0
		hlEnt{name: "h", link: "a"},        // 2: a's entry 1, so t's entry 0
		hlEnt{name: "a", body: "A2"},       // 3
		hlEnt{name: "t", body: "REPLACED"}, // 4
		hlEnt{name: "h2", link: "h"},       // 5: h (entry 2), so t's entry 0
		hlEnt{name: "a2", link: "a"},       // 6: a's entry 3
		hlEnt{name: "u", body: "U"},        // 7
		hlEnt{name: "u1", link: "u"},       // 8: an ordinary chain
		hlEnt{name: "u2", link: "u1"},      // 9
	)
	ix, _ := indexLayer(t, layer)
	want := map[string]string{"t": "REPLACED", "a": "A2", "h": "ORIGINAL", "h2": "ORIGINAL", "a2": "A2", "u": "U", "u1": "U", "u2": "U"}
	recs := map[string]Record{}
	for p, w := range want {
		recs[p] = lookup(t, ix, p)
		if got := content(t, layer, recs[p]); got != w {
			t.Errorf("%s serves %q, want %q", p, got, w)
		}
	}
	for _, g := range [][]string{{"h", "h2"}, {"a", "a2"}, {"u", "u1", "u2"}, {"t"}} {
		for _, p := range g {
			r := recs[p]
			if r.Ino != recs[g[0]].Ino || int(r.Nlink) != len(g) {
				t.Errorf("%s: inode %d, %d links; want %s's inode %d, %d links", p, r.Ino, r.Nlink, g[0], recs[g[0]].Ino, len(g))
			}
		}
	}
	if recs["h"].Ino == recs["t"].Ino || recs["h"].Ino == recs["a"].Ino {
		t.Errorf("h shares an inode with t or a: %d, %d, %d", recs["h"].Ino, recs["t"].Ino, recs["a"].Ino)
	}
	// An unchanged layer's links are the tree's records, as ever.
	if recs["u1"].Ino != recs["u"].Index {
		t.Errorf("u1's inode %d, u's record %d", recs["u1"].Ino, recs["u"].Index)
	}
}

// TestHardLinkBeforeTarget: a link whose target comes only later in the
// layer (and a link to itself with nothing before it) is dangling: GNU tar
// fails to make it ("Cannot hard link") and the engine refuses the layer.
// A link to itself after a file of that name is that file, as GNU tar
// leaves it.
func TestHardLinkBeforeTarget(t *testing.T) {
	layer := hardlinkLayer(t,
		hlEnt{name: "h", link: "t"}, // 0: t only at 1
		hlEnt{name: "t", body: "LATER"},
		hlEnt{name: "s", link: "s"}, // 2: nothing before it
		hlEnt{name: "x", body: "X"},
		hlEnt{name: "x", link: "x"}, // 4: the file x of entry 3
	)
	ix, anomalies := indexLayer(t, layer)
	for _, p := range []string{"h", "s"} {
		r := lookup(t, ix, p)
		if !r.Has(FlagDangling) || r.Type != TypeLink || r.Ino != r.Index || r.Nlink != 1 {
			t.Errorf("%s: type %c, flags %#x, inode %d of record %d, %d links; want a dangling link", p, r.Type, r.Flags, r.Ino, r.Index, r.Nlink)
		}
	}
	if r := lookup(t, ix, "t"); r.Nlink != 1 || content(t, layer, r) != "LATER" {
		t.Errorf("t: %d links", r.Nlink)
	}
	if r := lookup(t, ix, "x"); content(t, layer, r) != "X" || r.Nlink != 1 || r.Has(FlagDangling) {
		t.Errorf("x: %d links, flags %#x", r.Nlink, r.Flags)
	}
	var got []string
	for _, a := range anomalies {
		if a.Kind == "dangling-hardlink" {
			got = append(got, a.Path+": "+a.Detail)
		}
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], `h: hard link to "t", which the layer has only after the link`) || !strings.HasPrefix(got[1], `s: hard link to "s", which`) {
		t.Errorf("dangling-hardlink anomalies: %q", got)
	}
}
