package layers_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/layers"
)

// index builds the file index of a layer made of entries, as capture does.
func index(t *testing.T, entries ...fixture.Entry) *fileindex.Index {
	t.Helper()
	layer := fixture.Layer(entries...)
	b := &fileindex.IndexBuilder{}
	n, err := fileindex.ScanLayerWith(bytes.NewReader(layer), b, nil, fileindex.ScanOptions{})
	if err != nil || n != int64(len(layer)) {
		t.Fatalf("scan: %v (%d of %d)", err, n, len(layer))
	}
	ib, err := b.Build(n)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := fileindex.ParseIndex(ib)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func change(t *testing.T, r layers.Report, kind byte, p string) layers.PathChange {
	t.Helper()
	for _, c := range r.Changes {
		if c.Kind == kind && c.Path == p {
			return c
		}
	}
	t.Fatalf("layer %d: no %c %s in %+v", r.Index, kind, p, r.Changes)
	return layers.PathChange{}
}

// TestLayersHardLinks: the bytes of an inode are wasted once, however many
// names it has, and not at all while another name still shows them.
func TestLayersHardLinks(t *testing.T) {
	bb := strings.Repeat("b", 1000)
	l0 := index(t,
		fixture.Dir("bin/"),
		fixture.File("bin/busybox", bb),
		fixture.Hardlink("bin/[", "bin/busybox"),
		fixture.Hardlink("bin/[[", "bin/busybox"),
		fixture.Hardlink("bin/ls", "bin/busybox"),
		fixture.Dir("data/"),
		fixture.File("data/blob", strings.Repeat("d", 100)),
		fixture.Hardlink("bin/blob", "data/blob"), // stays visible as /data/blob
		fixture.Dir("keep/"),
		fixture.File("keep/orig", strings.Repeat("k", 30)),
		fixture.Hardlink("keep/lnk", "keep/orig"), // keeps orig's bytes visible
		fixture.Dir("sbin/"),
		fixture.File("sbin/tool", strings.Repeat("t", 50)),
		fixture.Hardlink("sbin/tool2", "sbin/tool"),
		fixture.File("plain", "1234567"),
	)
	l1 := index(t,
		fixture.Whiteout("", "bin"),             // busybox and its links; bin/blob
		fixture.Whiteout("keep", "orig"),        // the data stays as keep/lnk
		fixture.File("sbin/tool", "new tool\n"), // tool's old bytes stay as tool2
		fixture.File("plain", "overwritten\n"),  // 7 bytes wasted
		fixture.Hardlink("plain2", "plain"),     // a new name of layer 1's plain
		fixture.File("other", strings.Repeat("o", 20)),
		fixture.Hardlink("other2", "other"),
	)
	l2 := index(t,
		fixture.Dir("sbin/"), fixture.Opaque("sbin"), // tool2 and layer 1's tool go
		fixture.Whiteout("", "other"),
		fixture.Whiteout("", "other2"),
		fixture.Whiteout("", "plain2"), // plain's inode stays visible as /plain
	)
	reps, err := layers.Reports([]*fileindex.Index{l0, l1, l2})
	if err != nil {
		t.Fatal(err)
	}
	// Layer 0: busybox once (1000), tool once (50: overwritten in 1, its
	// other name deleted in 2), plain (7). Not data/blob, not keep/orig.
	if got, want := reps[0].Wasted, int64(1000+50+7); got != want {
		t.Errorf("layer 0 wasted %d bytes, want %d", got, want)
	}
	// Layer 1: new tool (9), other once (20); not plain (still visible).
	if got, want := reps[1].Wasted, int64(9+20); got != want {
		t.Errorf("layer 1 wasted %d bytes, want %d", got, want)
	}
	for _, p := range []string{"/bin/[", "/bin/[[", "/bin/ls"} {
		if c := change(t, reps[0], 'A', p); c.LinkTo != "/bin/busybox" || c.Fate != "deleted" || c.FateLayer != 1 || c.Size != 1000 {
			t.Errorf("%s: %+v, want a hard link to /bin/busybox, deleted in layer 1", p, c)
		}
	}
	if c := change(t, reps[0], 'A', "/bin/busybox"); c.LinkTo != "" || c.VisibleAs != "" || c.Fate != "deleted" {
		t.Errorf("/bin/busybox: %+v, want the counted name", c)
	}
	if c := change(t, reps[0], 'A', "/bin/blob"); c.LinkTo != "/data/blob" {
		t.Errorf("/bin/blob: %+v, want a hard link to /data/blob", c)
	}
	if c := change(t, reps[0], 'A', "/keep/orig"); c.Fate != "deleted" || c.VisibleAs != "/keep/lnk" {
		t.Errorf("/keep/orig: %+v, want deleted but visible as /keep/lnk", c)
	}
	if c := change(t, reps[0], 'A', "/sbin/tool"); c.Fate != "overwritten" || c.VisibleAs != "" {
		t.Errorf("/sbin/tool: %+v, want overwritten, not visible (tool2 goes in layer 2)", c)
	}
	if c := change(t, reps[1], 'A', "/plain2"); c.LinkTo != "/plain" {
		t.Errorf("/plain2: %+v, want a hard link to /plain", c)
	}
	if c := change(t, reps[2], 'D', "/other2"); c.LinkTo != "/other" {
		t.Errorf("D /other2: %+v, want a hard link to /other", c)
	}
	if c := change(t, reps[2], 'D', "/sbin/tool2"); c.LinkTo != "/sbin/tool" {
		t.Errorf("D /sbin/tool2: %+v, want a hard link to /sbin/tool", c)
	}
	// Names are still counted as names.
	if reps[0].Added != 15 {
		t.Errorf("layer 0 added %d, want 15 (every name)", reps[0].Added)
	}
}

// TestLayersFileReplacedByDir: a file that a later layer replaces with a
// directory (an explicit one after a whiteout, or one implied by a path
// under it) is overwritten: its bytes are wasted.
func TestLayersFileReplacedByDir(t *testing.T) {
	l0 := index(t,
		fixture.File("f", "f-was-a-file\n"),
		fixture.File("g", "gg"),
		fixture.Dir("d/"), fixture.File("d/x", "x"),
	)
	l1 := index(t,
		fixture.Whiteout("", "f"), fixture.Dir("f/"), fixture.File("f/inner", "i"),
		fixture.File("g/inner", "j"), // g is now a directory, implied
		fixture.Dir("d/"),            // a directory over a directory is merged
	)
	reps, err := layers.Reports([]*fileindex.Index{l0, l1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := reps[0].Wasted, int64(13+2); got != want {
		t.Errorf("layer 0 wasted %d bytes, want %d", got, want)
	}
	for _, p := range []string{"/f", "/g"} {
		if c := change(t, reps[0], 'A', p); c.Fate != "overwritten" || c.FateLayer != 1 {
			t.Errorf("%s: %+v, want overwritten in layer 1", p, c)
		}
	}
	for _, p := range []string{"/d", "/d/x"} {
		if c := change(t, reps[0], 'A', p); c.Fate != "" {
			t.Errorf("%s: %+v, want still visible", p, c)
		}
	}
}
