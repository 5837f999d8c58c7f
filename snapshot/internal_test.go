//go:build linux

package snapshot

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/layers"
)

// layerIndex builds the file index of a layer made of entries.
type ent struct {
	name, body, link string
	typ              byte
	mode             int64
	mtime            int64
}

func layerIndex(t *testing.T, ents ...ent) *fileindex.Index {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.link, ModTime: time.Unix(1700000000+e.mtime, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	b := &fileindex.IndexBuilder{}
	if _, err := fileindex.ScanLayerWith(bytes.NewReader(buf.Bytes()), b, nil, fileindex.ScanOptions{}); err != nil {
		t.Fatal(err)
	}
	built, err := b.Resolve(int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	defer built.Close()
	var ix *fileindex.Index
	if pagedIndexes {
		ix, err = built.Paged()
	} else {
		var ib []byte
		if ib, err = built.Bytes(); err == nil {
			ix, err = fileindex.ParseIndex(ib)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// pagedIndexes has layerIndex read its indexes in pages from a temp file,
// as a container capture keeps a large layer's.
var pagedIndexes bool

// TestChangeList: content-aware A/C/D against hand-built layers, with the
// whiteout cases an OCI runtime applies; with the indexes whole in memory
// and read in pages from temp files.
func TestChangeList(t *testing.T) {
	for _, paged := range []bool{false, true} {
		pagedIndexes = paged
		t.Run(fmt.Sprint("paged=", paged), testChangeList)
	}
	pagedIndexes = false
}

func testChangeList(t *testing.T) {
	d := func(n string) ent { return ent{name: n, typ: tar.TypeDir, mode: 0o755} }
	base := layerIndex(t, d("a/"), ent{name: "a/x", body: "one"}, ent{name: "a/y", body: "y"}, ent{name: "b", body: "file"},
		d("d/"), ent{name: "d/k", body: "k"}, d("e/"), ent{name: "e/f", body: "f"}, ent{name: "g", body: "same"}, ent{name: "s", typ: tar.TypeSymlink, link: "a/x"})
	upper := layerIndex(t, d("a/"), ent{name: "a/x", body: "two"}, ent{name: "a/.wh.y"}, d("b/"), ent{name: "b/n", body: "n"},
		d("d/"), ent{name: "d/.wh..wh..opq"}, ent{name: "d/new", body: "new"}, ent{name: "e/f", body: "f", mtime: 5},
		ent{name: "g", body: "same"}, ent{name: "s", typ: tar.TypeSymlink, link: "b/n"}, ent{name: "z", body: "z"})
	got, err := layers.ContainerChanges(&layers.Stack{Indexes: []*fileindex.Index{base}}, upper)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range got {
		lines = append(lines, string(c.Kind)+" "+c.Path+" "+strings.Join(c.What, ","))
	}
	want := []string{"C /a/x content", "D /a/y ", "C /b type", "A /b/n ", "D /d/k ", "A /d/new ", "C /e/f mtime", "C /s target", "A /z "}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("change list:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
