package view_test

import (
	"errors"
	"io"
	"path"
	"sort"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/view"
)

func newView(t *testing.T) *view.View {
	t.Helper()
	p := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	return &view.View{A: fixture.Open(t, p)}
}

func names(t *testing.T, v *view.View, p string) string {
	t.Helper()
	es, err := v.ReadDir(p)
	if err != nil {
		t.Fatalf("ReadDir(%s): %v", p, err)
	}
	var n []string
	for _, e := range es {
		n = append(n, e.Name)
	}
	return strings.Join(n, " ")
}

func content(t *testing.T, v *view.View, p string) string {
	t.Helper()
	e, err := v.Stat(p)
	if err != nil {
		t.Fatalf("Stat(%s): %v", p, err)
	}
	r, err := v.Open(e)
	if err != nil {
		t.Fatalf("Open(%s): %v", p, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMergedViews(t *testing.T) {
	v := newView(t)
	tests := []struct{ dir, want string }{
		{"images/wh_1/rootfs", "d etc f g t tl"},
		{"images/wh_1/rootfs/etc", "passwd shadow"},
		{"images/wh_1/rootfs/d", "z"},
		{"images/wh_1/rootfs/f", "inner"},
		{"images/wh_1/stages/0", "a d etc f g t tl"},
		{"images/wh_1/stages/0/d", "x y"},
		{"images/wh_1/stages/1/etc", "passwd"},
		{"images/wh_1/stages/1", "a d etc f g t tl"},
		{"images/wh_1/layers/1", ".wh.f .wh.g d etc f g t"},
		{"images/wh_1/layers/1/etc", ".wh.shadow"},
		{"images/wh_1/layers/1/d", ".wh..wh..opq z"},
		{"images/wh_1/layers/2", ".wh.a etc"},
		{"images/wh_1", "Dockerfile config.json history layers rootfs stages"},
		{"images/wh_1/layers", "0 1 2"},
		{"", "images manifest.json"},
	}
	for _, tt := range tests {
		if got := names(t, v, tt.dir); got != tt.want {
			t.Errorf("ls %s = %q, want %q", tt.dir, got, tt.want)
		}
	}
	files := map[string]string{
		"images/wh_1/rootfs/etc/shadow":   "new-shadow\n",
		"images/wh_1/rootfs/g":            "g-is-a-file\n",
		"images/wh_1/rootfs/t":            "new-t\n",
		"images/wh_1/rootfs/tl":           "old-t\n", // the link kept the inode it was made on
		"images/wh_1/stages/0/f":          "f-was-a-file\n",
		"images/wh_1/stages/0/etc/shadow": "old-shadow\n",
		"images/wh_1/layers/0/tl":         "old-t\n",
	}
	for p, want := range files {
		if got := content(t, v, p); got != want {
			t.Errorf("cat %s = %q, want %q", p, got, want)
		}
	}
	for _, gone := range []string{"images/wh_1/rootfs/a", "images/wh_1/rootfs/a/b/c", "images/wh_1/rootfs/d/x",
		"images/wh_1/rootfs/f/../f/x", "images/wh_1/stages/1/etc/shadow", "images/wh_1/rootfs/g/h", "images/wh_1/rootfs/.wh.a",
		"images/wh_1/layers/3", "images/nope", "images/wh_1/stages/01"} {
		if _, err := v.Stat(gone); !errors.Is(err, view.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want ErrNotFound", gone, err)
		}
	}
	// etc is implied in layer 2; its metadata comes from layer 0's entry.
	e, err := v.Stat("images/wh_1/rootfs/etc")
	if err != nil || e.Mode != 0o700 || e.Node.Layer != 0 {
		t.Errorf("rootfs/etc: mode %o from layer %d (err %v), want 0700 from layer 0", e.Mode, e.Node.Layer, err)
	}
	// Hard links share one record (inode) and count their names.
	tl, _ := v.Stat("images/wh_1/layers/0/tl")
	tf, _ := v.Stat("images/wh_1/layers/0/t")
	if tl.Node.Rec.Ino != tf.Node.Rec.Ino || tl.Node.Rec.Nlink != 2 || !tl.Node.Rec.Has(fileindex.FlagHardlink) {
		t.Errorf("hard link: ino %d vs %d, nlink %d", tl.Node.Rec.Ino, tf.Node.Rec.Ino, tl.Node.Rec.Nlink)
	}
}

func TestWalkSorted(t *testing.T) {
	v := newView(t)
	root, err := v.Stat("images/wh_1/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	if err := v.Walk(root, func(e *view.Entry) error { paths = append(paths, e.Path); return nil }); err != nil {
		t.Fatal(err)
	}
	if !sort.StringsAreSorted(paths) || len(paths) != 11 {
		t.Errorf("walk gave %d paths, sorted=%v: %v", len(paths), sort.StringsAreSorted(paths), paths)
	}
}

func TestModeString(t *testing.T) {
	for _, tt := range []struct {
		typ  byte
		mode uint32
		want string
	}{{fileindex.TypeReg, 0o4755, "-rwsr-xr-x"}, {fileindex.TypeDir, 0o1777, "drwxrwxrwt"}, {fileindex.TypeSymlink, 0o777, "lrwxrwxrwx"}, {fileindex.TypeReg, 0o2644, "-rw-r-Sr--"}} {
		if got := view.ModeString(tt.typ, tt.mode); got != tt.want {
			t.Errorf("ModeString(%c, %o) = %s, want %s", tt.typ, tt.mode, got, tt.want)
		}
	}
}

// TestTrailingFile: data after a layer tar's end-of-archive marker is
// the file layers/N.trailing, read from the stored blob; only layers
// that have some show one, and only under layers/.
func TestTrailingFile(t *testing.T) {
	hidden := "\x1f\x8b\x08\x00 hidden after the end of the tar"
	base := fixture.Layer(fixture.Dir("etc"), fixture.File("etc/passwd", "root\n"))
	img := fixture.Image{Tags: []string{"tr:1"}, Layers: [][]byte{base, append(fixture.Layer(fixture.File("a", "a\n")), hidden...)}}
	v := &view.View{A: fixture.Open(t, fixture.Capture(t, t.TempDir(), "tr", img))}
	if got := names(t, v, "images/tr_1/layers"); got != "0 1 1.trailing" {
		t.Errorf("ls layers = %q", got)
	}
	if got := names(t, v, "images/tr_1/stages"); got != "0 1" {
		t.Errorf("ls stages = %q", got)
	}
	if got := content(t, v, "images/tr_1/layers/1.trailing"); got != hidden {
		t.Errorf("layers/1.trailing = %q, want %q", got, hidden)
	}
	e, err := v.Stat("images/tr_1/layers/1.trailing")
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != fileindex.TypeReg || e.Mode != 0o444 || e.Size != int64(len(hidden)) || e.SHA256() != hashing.Sum([]byte(hidden)) || e.IsDir() {
		t.Errorf("layers/1.trailing: %+v", e)
	}
	for _, gone := range []string{"images/tr_1/layers/0.trailing", "images/tr_1/layers/2.trailing", "images/tr_1/layers/01.trailing",
		"images/tr_1/stages/1.trailing", "images/tr_1/layers/1.trailing/x", "images/tr_1/layers/.trailing", "images/tr_1/layers/1/.trailing"} {
		if _, err := v.Stat(gone); !errors.Is(err, view.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want ErrNotFound", gone, err)
		}
	}
}

func TestRebaseLink(t *testing.T) {
	for _, c := range []struct{ p, target, want string }{
		{"etc/passwd", "/etc/shadow", "shadow"},
		{"a/b/c", "/etc/shadow", "../../etc/shadow"},
		{"x", "/dev/zero", "dev/zero"},
		{"x", "/", "."},
		{"a/b/c", "../../../../../../etc/shadow", "../../etc/shadow"},
		{"a/b/c", "/../../etc/../etc/./passwd", "../../etc/passwd"},
		{"a/b/c", "d", "d"},
		{"a/b/c", "../d", "../d"},
		{"a/b/c", "../../a/b/e", "e"},
		{"a/b/c", "/a", ".."},
	} {
		if got := view.RebaseLink(c.p, c.target); got != c.want {
			t.Errorf("view.RebaseLink(%q, %q) = %q, want %q", c.p, c.target, got, c.want)
		}
		// Resolved from the link's directory, it never leaves the root.
		if got := path.Clean(path.Join("/root/view", path.Dir(c.p), view.RebaseLink(c.p, c.target))); !strings.HasPrefix(got+"/", "/root/view/") {
			t.Errorf("view.RebaseLink(%q, %q) resolves to %s, outside the view", c.p, c.target, got)
		}
	}
}
