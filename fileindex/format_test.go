package fileindex

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

func buildIndex(t testing.TB, entries []tar.Header, bodies map[string]string) *Index {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(bodies[h.Name]))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(bodies[h.Name]))
	}
	tw.Close()
	b := &IndexBuilder{}
	n, err := ScanLayer(bytes.NewReader(buf.Bytes()), b, nil)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("scan: %v (%d of %d)", err, n, buf.Len())
	}
	ib, root, files, err := b.BuildWithRoot(n)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ParseIndex(ib)
	if err != nil {
		t.Fatal(err)
	}
	if r2, f2, err := ix.MerkleRoot(); err != nil || r2 != root || f2 != files {
		t.Fatalf("Merkle roots differ: built %s/%d, index %s/%d", root, files, r2, f2)
	}
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestIndexRecords(t *testing.T) {
	mt := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	epoch := time.Unix(0, 0)
	ix := buildIndex(t, []tar.Header{
		{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt},
		{Name: "usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 0, Gid: 0, ModTime: mt, Format: tar.FormatPAX, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x02"}},
		{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mt},
		{Name: "/abs", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000, Uname: "bob", ModTime: mt},
		{Name: "../../escape", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: mt},
		{Name: "dup", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: mt},
		{Name: "dup", Typeflag: tar.TypeReg, Mode: 0o640, ModTime: epoch},
		{Name: "link", Typeflag: tar.TypeLink, Linkname: "nowhere", ModTime: mt},
		{Name: "name with\nnewline \xff", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mt},
	}, map[string]string{"usr/bin/su": "su-binary", "/abs": "a", "../../escape": "e", "dup": "second"})
	i, ok := ix.Lookup("usr/bin/su")
	if !ok {
		t.Fatal("usr/bin/su not found")
	}
	r, err := ix.Record(i)
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != 0o4755 || r.Size != 9 || r.SHA256 != hashing.Sum([]byte("su-binary")) || !r.ModTime.Equal(mt) || r.Xattrs["security.capability"] != "\x01\x02" {
		t.Errorf("usr/bin/su record wrong: %+v", r)
	}
	for p, flag := range map[string]uint8{"abs": FlagUnsafe, "escape": FlagUnsafe, "link": FlagDangling, "usr": FlagImplicit} {
		i, ok := ix.Lookup(p)
		if !ok {
			t.Errorf("%s not found", p)
			continue
		}
		r, _ := ix.Record(i)
		if !r.Has(flag) {
			t.Errorf("%s lacks flag %d: %v", p, flag, r.Flags)
		}
	}
	if i, ok := ix.Lookup("dev/null"); !ok {
		t.Error("dev/null missing")
	} else if r, _ := ix.Record(i); r.Type != TypeChar || r.DevMajor != 1 || r.DevMinor != 3 {
		t.Errorf("dev/null: %+v", r)
	}
	if i, ok := ix.Lookup("name with\nnewline \xff"); !ok {
		t.Error("odd name missing")
	} else if r, _ := ix.Record(i); r.Path != "name with\nnewline \xff" {
		t.Errorf("odd name: %q", r.Path)
	}
	// The later "dup" wins; the earlier one is kept, shadowed.
	i, _ = ix.Lookup("dup")
	r, _ = ix.Record(i)
	if r.Mode != 0o640 || ix.TreeLen() != ix.Len()-1 || !r.ModTime.Equal(epoch) || r.ModTime.IsZero() || !r.AccessTime.IsZero() {
		t.Errorf("dup: mode %o, tree %d of %d", r.Mode, ix.TreeLen(), ix.Len())
	}
	sh, _ := ix.Record(ix.Len() - 1)
	if !sh.Has(FlagShadowed) || sh.Mode != 0o600 {
		t.Errorf("shadowed record: %+v", sh)
	}
	if _, ok := ix.Lookup("../escape"); ok {
		t.Error("lookup with .. succeeded")
	}
}
