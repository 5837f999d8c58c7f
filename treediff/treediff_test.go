package treediff_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/treediff"
	"github.com/amber-forensics/amber/view"
)

var (
	t1 = time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	t2 = time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
)

// withDevices rewrites a fixture layer with device numbers for the named
// entries (fixture entries have none).
func withDevices(t *testing.T, layer []byte, devs map[string][2]int64) []byte {
	t.Helper()
	var b bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(layer)), tar.NewWriter(&b)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := devs[h.Name]; ok {
			h.Devmajor, h.Devminor = d[0], d[1]
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// baseLayer and changedLayer differ in one field per path, so each path
// shows one of Compare's answers: every field of Change.What, a type
// change either way (with what was below), added and deleted trees, and
// directories listed only for what changed below them.
func baseLayer(t *testing.T) []byte {
	return withDevices(t, fixture.Layer(
		fixture.Dir("bin/"),
		fixture.Entry{Name: "bin/sh", Body: "#!sh", Mode: 0o755},
		fixture.Dir("d2f/"),
		fixture.File("d2f/y", "y"),
		fixture.Dir("dev/"),
		fixture.Entry{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666},
		fixture.Dir("etc/"),
		fixture.Entry{Name: "etc/hosts", Body: "hosts\n", Mode: 0o644},
		fixture.Entry{Name: "etc/passwd", Body: "root\n", Mode: 0o644},
		fixture.Entry{Name: "etc/shadow", Body: "s1\n", Mode: 0o600},
		fixture.File("f2d", "a file"),
		fixture.Dir("gone/"),
		fixture.File("gone/x", "x"),
		fixture.Symlink("lnk", "/etc/passwd"),
		fixture.Entry{Name: "mt", Body: "m", ModTime: t1},
		fixture.File("own", "o"),
		fixture.File("same", "same"),
		fixture.Entry{Name: "xa", Body: "x", Xattrs: map[string]string{"user.a": "1"}},
	), map[string][2]int64{"dev/null": {1, 3}})
}

func changedLayer(t *testing.T) []byte {
	return withDevices(t, fixture.Layer(
		fixture.Dir("bin/"),
		fixture.Entry{Name: "bin/sh", Body: "#!sh", Mode: 0o755},
		fixture.File("d2f", "now a file"),
		fixture.Dir("dev/"),
		fixture.Entry{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666},
		fixture.Dir("etc/"),
		fixture.Entry{Name: "etc/hosts", Body: "hosts\n", Mode: 0o666},
		fixture.Entry{Name: "etc/passwd", Body: "root\nevil\n", Mode: 0o644},
		fixture.Entry{Name: "etc/shadow", Body: "s2\n", Mode: 0o600},
		fixture.Dir("f2d/"),
		fixture.File("f2d/inner", "i"),
		fixture.Symlink("lnk", "/etc/shadow"),
		fixture.Entry{Name: "mt", Body: "m", ModTime: t2},
		fixture.File("new", "n"),
		fixture.Dir("newdir/"),
		fixture.File("newdir/z", "z"),
		fixture.Entry{Name: "own", Body: "o", UID: 1000, GID: 1000},
		fixture.File("same", "same"),
		fixture.Entry{Name: "xa", Body: "x", Xattrs: map[string]string{"user.a": "2"}},
	), map[string][2]int64{"dev/null": {1, 5}})
}

// allChanges is Compare(base, changed) with no options, in order.
var allChanges = []string{
	"C /d2f type",
	"D /d2f/y",
	"C /dev (below)",
	"C /dev/null device",
	"C /etc (below)",
	"C /etc/hosts mode",
	"C /etc/passwd size content",
	"C /etc/shadow content",
	"C /f2d type",
	"A /f2d/inner",
	"D /gone",
	"D /gone/x",
	"C /lnk target",
	"C /mt mtime",
	"A /new",
	"A /newdir",
	"A /newdir/z",
	"C /own owner",
	"C /xa xattrs",
}

// summary is one line per change: kind, path, what changed (or "(below)"
// for a directory listed for its contents only).
func summary(chs []treediff.Change) []string {
	var out []string
	for _, c := range chs {
		s := string(c.Kind) + " " + c.Path
		if c.ChildrenOnly {
			s += " (below)"
		}
		if len(c.What) > 0 {
			s += " " + strings.Join(c.What, " ")
		}
		out = append(out, s)
	}
	return out
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func viewTree(t *testing.T, v *view.View, p string) treediff.ViewTree {
	t.Helper()
	e, err := v.Stat(p)
	if err != nil {
		t.Fatalf("Stat(%s): %v", p, err)
	}
	return treediff.ViewTree{V: v, Dir: e}
}

// twoImages captures base and changed as two images of one archive, and
// each alone in an archive of its own.
func twoImages(t *testing.T) (one *view.View, a, b *view.View) {
	dir := t.TempDir()
	base := fixture.Image{Tags: []string{"base:1"}, Layers: [][]byte{baseLayer(t)}}
	changed := fixture.Image{Tags: []string{"changed:1"}, Layers: [][]byte{changedLayer(t)}}
	one = &view.View{A: fixture.Open(t, fixture.Capture(t, dir, "both", base, changed))}
	a = &view.View{A: fixture.Open(t, fixture.Capture(t, dir, "a", base))}
	b = &view.View{A: fixture.Open(t, fixture.Capture(t, dir, "b", changed))}
	return one, a, b
}

// TestCompare: each field that can change is named, type changes list
// what was below as added or deleted, options filter by path, kind and
// field; the answer is the same for two images of one archive and of two
// archives, and a tree compared with itself has no changes.
func TestCompare(t *testing.T) {
	one, va, vb := twoImages(t)
	pairs := map[string][2]treediff.Tree{
		"one archive":  {viewTree(t, one, "images/base_1/rootfs"), viewTree(t, one, "images/changed_1/rootfs")},
		"two archives": {viewTree(t, va, "images/base_1/rootfs"), viewTree(t, vb, "images/changed_1/layers/0")},
	}
	drop := func(lines ...string) []string {
		var out []string
		for _, l := range allChanges {
			if !slices.Contains(lines, l) {
				out = append(out, l)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		opts treediff.Options
		want []string
	}{
		{"all", treediff.Options{}, allChanges},
		{"prefix", treediff.Options{Prefix: "/etc"}, []string{"C /etc (below)", "C /etc/hosts mode", "C /etc/passwd size content", "C /etc/shadow content"}},
		{"prefix-slash", treediff.Options{Prefix: "/etc/"}, []string{"C /etc (below)", "C /etc/hosts mode", "C /etc/passwd size content", "C /etc/shadow content"}},
		{"prefix-is-a-path-not-a-string", treediff.Options{Prefix: "/new"}, []string{"A /new"}},
		{"prefix-file", treediff.Options{Prefix: "/etc/shadow"}, []string{"C /etc/shadow content"}},
		{"kinds", treediff.Options{Kinds: "AD"}, []string{"D /d2f/y", "A /f2d/inner", "D /gone", "D /gone/x", "A /new", "A /newdir", "A /newdir/z"}},
		{"kinds-prefix", treediff.Options{Kinds: "D", Prefix: "/gone"}, []string{"D /gone", "D /gone/x"}},
		{"ignore-mtime", treediff.Options{Ignore: map[string]bool{treediff.FieldMtime: true}}, drop("C /mt mtime")},
		{"ignore-content-size", treediff.Options{Ignore: map[string]bool{treediff.FieldContent: true, treediff.FieldSize: true}},
			drop("C /etc/passwd size content", "C /etc/shadow content")},
		{"ignore-all-under-dev", treediff.Options{Ignore: map[string]bool{treediff.FieldDevice: true}}, drop("C /dev (below)", "C /dev/null device")},
		{"ignore-type", treediff.Options{Ignore: map[string]bool{treediff.FieldType: true}},
			// What was below a replaced directory is still listed, but
			// today not the directory itself (not even as "(below)", as a
			// directory is for changes under it): pinned as it is.
			[]string{
				"D /d2f/y", "C /dev (below)", "C /dev/null device", "C /etc (below)", "C /etc/hosts mode",
				"C /etc/passwd size content", "C /etc/shadow content", "A /f2d/inner", "D /gone", "D /gone/x", "C /lnk target",
				"C /mt mtime", "A /new", "A /newdir", "A /newdir/z", "C /own owner", "C /xa xattrs",
			}},
	} {
		for name, p := range pairs {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				chs, err := treediff.Compare(p[0], p[1], tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				sameLines(t, "changes", summary(chs), tc.want)
			})
		}
	}
	for name, p := range pairs {
		for i, tr := range p {
			chs, err := treediff.Compare(tr, tr, treediff.Options{})
			if err != nil || len(chs) != 0 {
				t.Errorf("%s: side %d against itself: %v %q", name, i, err, summary(chs))
			}
		}
	}
}

// TestCompareReversed: from changed to base, A and D swap, and each C
// carries the two sides swapped.
func TestCompareReversed(t *testing.T) {
	one, _, _ := twoImages(t)
	a, b := viewTree(t, one, "images/base_1/rootfs"), viewTree(t, one, "images/changed_1/rootfs")
	fwd, err := treediff.Compare(a, b, treediff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := treediff.Compare(b, a, treediff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fwd) != len(back) {
		t.Fatalf("%d changes one way, %d the other", len(fwd), len(back))
	}
	swap := map[byte]byte{'A': 'D', 'D': 'A', 'C': 'C'}
	for i := range fwd {
		f, r := fwd[i], back[i]
		if r.Path != f.Path || r.Kind != swap[f.Kind] || strings.Join(r.What, " ") != strings.Join(f.What, " ") ||
			(f.Old == nil) != (r.New == nil) || (f.New == nil) != (r.Old == nil) {
			t.Errorf("%s: %c %v one way, %c %v back", f.Path, f.Kind, f.What, r.Kind, r.What)
		}
		if f.Old != nil && r.New != nil && *f.Old != *r.New {
			t.Errorf("%s: old %+v one way, new %+v back", f.Path, *f.Old, *r.New)
		}
	}
}

// TestCompareInfo: a change carries what the index records of each side,
// the content digest being the SHA-256 of the file's bytes.
func TestCompareInfo(t *testing.T) {
	one, _, _ := twoImages(t)
	chs, err := treediff.Compare(viewTree(t, one, "images/base_1/rootfs"), viewTree(t, one, "images/changed_1/rootfs"), treediff.Options{Prefix: "/etc/passwd"})
	if err != nil || len(chs) != 1 {
		t.Fatalf("%v %+v", err, chs)
	}
	c := chs[0]
	for _, tc := range []struct {
		side *treediff.Info
		body string
	}{{c.Old, "root\n"}, {c.New, "root\nevil\n"}} {
		if tc.side == nil {
			t.Fatalf("change %+v has a side missing", c)
		}
		sum := sha256.Sum256([]byte(tc.body))
		if tc.side.SHA256.Hex() != hex.EncodeToString(sum[:]) || tc.side.Size != int64(len(tc.body)) || tc.side.Mode != "0644" ||
			tc.side.Type != view.TypeName('0') || !tc.side.Mtime.Equal(fixture.Epoch) || tc.side.UID != 0 || tc.side.Link != "" {
			t.Errorf("info %+v, want a file of %q (sha256 %x), 0644, at %v", *tc.side, tc.body, sum, fixture.Epoch)
		}
	}
	chs, err = treediff.Compare(viewTree(t, one, "images/base_1/rootfs"), viewTree(t, one, "images/changed_1/rootfs"), treediff.Options{Prefix: "/lnk"})
	if err != nil || len(chs) != 1 || chs[0].Old.Link != "/etc/passwd" || chs[0].New.Link != "/etc/shadow" || !chs[0].New.SHA256.IsZero() {
		t.Errorf("/lnk: %v %+v", err, chs)
	}
}
