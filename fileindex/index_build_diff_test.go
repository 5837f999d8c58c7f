package fileindex

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/extsort"
)

// randomHeaders makes a hostile-looking layer: names that collide, repeat,
// nest through missing directories, climb out, sort around '/' ('-', '.'),
// whiteouts (of ".", ".." and "" too), hard links in chains, to
// directories, to nothing, and to shadowed names; xattrs, long owner
// names, absent times, sparse files.
func randomHeaders(r *rand.Rand, n int) []*tar.Header {
	comps := []string{"a", "b", "a-b", "a.b", "c", ".wh.a", ".wh..wh..opq", "ab", "a0", "z", ".wh..", ".wh...", ".wh."}
	name := func() string {
		d := r.IntN(4) + 1
		var parts []string
		for range d {
			parts = append(parts, comps[r.IntN(len(comps))])
		}
		s := strings.Join(parts, "/")
		switch r.IntN(12) {
		case 0:
			s = "../" + s
		case 1:
			s = "/" + s
		case 2:
			s = "./" + s
		case 3:
			s += "/"
		}
		return s
	}
	var names []string
	var hs []*tar.Header
	for i := range n {
		h := &tar.Header{Name: name(), Mode: int64(r.IntN(0o10000)), Uid: r.IntN(3), Gid: r.IntN(3), Uname: "root", Gname: "root"}
		if r.IntN(5) == 0 && len(names) > 0 {
			h.Name = names[r.IntN(len(names))] // a duplicate
		}
		if r.IntN(30) == 0 {
			h.Name = []string{".", "./", "", "/"}[r.IntN(4)]
		}
		switch k := r.IntN(10); {
		case k < 4:
			h.Typeflag = tar.TypeReg
			h.Size = int64(r.IntN(5000))
		case k < 6:
			h.Typeflag = tar.TypeDir
		case k < 7:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = name()
		case k < 9:
			h.Typeflag = tar.TypeLink
			if len(names) > 0 && r.IntN(4) > 0 {
				h.Linkname = names[r.IntN(len(names))]
			} else {
				h.Linkname = name()
			}
		default:
			h.Typeflag = []byte{tar.TypeChar, tar.TypeFifo, 'X', tar.TypeBlock}[r.IntN(4)]
			h.Devmajor, h.Devminor = int64(r.IntN(300)), int64(r.IntN(300))
		}
		if r.IntN(3) > 0 {
			h.ModTime = time.Unix(int64(r.IntN(2e9)), int64(r.IntN(1e9)))
		}
		if r.IntN(4) == 0 {
			h.AccessTime = time.Unix(int64(r.IntN(2e9)), 0)
			h.ChangeTime = time.Unix(int64(r.IntN(2e9)), int64(r.IntN(1e9)))
		}
		if r.IntN(8) == 0 {
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.k" + fmt.Sprint(r.IntN(3)): "v", "SCHILY.xattr.security.capability": "\x01\x02"}
		}
		if r.IntN(10) == 0 {
			h.Uname = strings.Repeat("u", 60+r.IntN(10)) // around the interning limit
		}
		names = append(names, h.Name)
		hs = append(hs, h)
		_ = i
	}
	return hs
}

// TestBuilderMatchesReference: the builder writes exactly the bytes,
// Merkle root, file count and anomalies of the builder it replaced, on
// layers full of edge cases (archives indexed before must verify).
//
// Every other round spills: sorters of a few hundred bytes, merged a few
// runs at a time, so each stream of the build goes through temp files and
// multi-level merges.
func TestBuilderMatchesReference(t *testing.T) {
	defer unbounded()()
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 400 {
		n := 1 + r.IntN(60)
		if round%50 == 0 || round%50 == 1 {
			n = 2000
		}
		if round%2 == 1 {
			sortBudgets = extsort.Config{SortBudget: 200 + r.IntN(2000), SpoolBudget: r.IntN(3000), FanIn: 2 + r.IntN(4)}
		} else {
			sortBudgets = extsort.Config{}
		}
		hs := randomHeaders(r, n)
		nb, rb := &IndexBuilder{TempDir: t.TempDir()}, &refBuilder{}
		off := int64(0)
		for _, h := range hs {
			sum := hashing.Sum([]byte(h.Name))
			sparse := h.Typeflag == tar.TypeReg && r.IntN(20) == 0
			nb.Add(h, off, off+512, sum, sparse)
			rb.Add(h, off, off+512, sum, sparse)
			off += 1024 + h.Size
		}
		nix, nroot, nfiles, nerr := nb.BuildWithRoot(off)
		rix, rroot, rfiles, rerr := rb.buildWithRoot(off)
		if (nerr != nil) != (rerr != nil) || !bytes.Equal(nix, rix) || nroot != rroot || nfiles != rfiles {
			for _, h := range hs {
				t.Logf("%q %c %q", h.Name, h.Typeflag, h.Linkname)
			}
			t.Fatalf("round %d (%d entries): the builder differs: %d vs %d bytes, root %v vs %v, files %d vs %d, %v vs %v",
				round, n, len(nix), len(rix), nroot == rroot, true, nfiles, rfiles, nerr, rerr)
		}
		if !reflect.DeepEqual(nb.Anomalies, rb.Anomalies) {
			t.Fatalf("round %d: anomalies differ:\n%v\n%v", round, nb.Anomalies, rb.Anomalies)
		}
		if _, err := ParseIndex(nix); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// unbounded lists every anomaly (the reference does) and restores the
// build's budgets afterwards.
func unbounded() func() {
	a, sb := maxAnomalies, sortBudgets
	maxAnomalies = 1 << 30
	return func() { maxAnomalies, sortBudgets = a, sb }
}

// TestBuildDigest: the index streamed (into SHA-256, into a writer) is the
// index built whole.
func TestBuildDigest(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for range 50 {
		hs := randomHeaders(r, 1+r.IntN(200))
		b1, b2 := &IndexBuilder{}, &IndexBuilder{}
		for k, h := range hs {
			b1.Add(h, int64(k)*1024, int64(k)*1024+512, hashing.Digest{}, false)
			b2.Add(h, int64(k)*1024, int64(k)*1024+512, hashing.Digest{}, false)
		}
		ib, err := b1.Build(int64(len(hs)) * 1024)
		if err != nil {
			t.Fatal(err)
		}
		x, err := b2.Resolve(int64(len(hs)) * 1024)
		if err != nil {
			t.Fatal(err)
		}
		d, err := x.Digest()
		var sb strings.Builder
		if n, werr := x.WriteTo(&sb); werr != nil || n != int64(len(ib)) || sb.String() != string(ib) || x.Size != int64(len(ib)) {
			t.Fatalf("WriteTo: %d bytes, %v; want %d", n, werr, len(ib))
		}
		if err != nil || d != hashing.Sum(ib) {
			t.Fatalf("streamed digest %v, whole %v (%v)", d, hashing.Sum(ib), err)
		}
	}
}

// FuzzBuilderMatchesReference: the headers of any tar the fuzzer makes,
// given to the builder and to the reference, give the same index,
// Merkle root, file count and anomalies.
func FuzzBuilderMatchesReference(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 1))
	for range 4 {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range randomHeaders(r, 30) {
			h.Size = 0
			tw.WriteHeader(h)
		}
		tw.Close()
		f.Add(buf.Bytes())
	}
	defer unbounded()()
	f.Fuzz(func(t *testing.T, layer []byte) {
		tr := tar.NewReader(bytes.NewReader(layer))
		nb, rb := &IndexBuilder{}, &refBuilder{}
		// Spilling, in one input of two (by its length).
		if len(layer)%2 == 1 {
			sortBudgets = extsort.Config{SortBudget: 300, SpoolBudget: 500, FanIn: 3}
		} else {
			sortBudgets = extsort.Config{}
		}
		for k := int64(0); k < 2000; k++ {
			h, err := tr.Next()
			if err != nil {
				break
			}
			sum := hashing.Sum([]byte(h.Name))
			nb.Add(h, k*1024, k*1024+512, sum, k%7 == 3)
			rb.Add(h, k*1024, k*1024+512, sum, k%7 == 3)
		}
		nix, nroot, nfiles, nerr := nb.BuildWithRoot(1 << 40)
		rix, rroot, rfiles, rerr := rb.buildWithRoot(1 << 40)
		if (nerr != nil) != (rerr != nil) || !bytes.Equal(nix, rix) || nroot != rroot || nfiles != rfiles {
			t.Fatalf("the builder differs: %d vs %d bytes, same root %v, files %d vs %d, %v vs %v", len(nix), len(rix), nroot == rroot, nfiles, rfiles, nerr, rerr)
		}
		if !reflect.DeepEqual(nb.Anomalies, rb.Anomalies) {
			t.Fatalf("anomalies differ:\n%v\n%v", nb.Anomalies, rb.Anomalies)
		}
	})
}

// TestSpillLeavesNothing: a build that spills writes its temp files in
// TempDir, unlinked as they are made (nothing there even while it runs),
// and closes them all when it is done.
func TestSpillLeavesNothing(t *testing.T) {
	defer unbounded()()
	sortBudgets = extsort.Config{SortBudget: 4096, SpoolBudget: 4096, FanIn: 3}
	dir := t.TempDir()
	open := func() int {
		n := 0
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, fd := range fds {
			if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, dir+"/") {
				if !strings.HasSuffix(l, " (deleted)") {
					t.Errorf("temp file %s is not unlinked", l)
				}
				n++
			}
		}
		return n
	}
	b := &IndexBuilder{TempDir: dir}
	hs := randomHeaders(rand.New(rand.NewPCG(5, 5)), 3000)
	for k, h := range hs {
		b.Add(h, int64(k)*1024, int64(k)*1024+512, hashing.Digest{}, false)
	}
	if open() == 0 {
		t.Fatal("3,000 entries in 4 KiB: nothing spilled")
	}
	x, err := b.Resolve(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left in the temp dir: %v", ents)
	}
	if _, err := x.Digest(); err != nil {
		t.Fatal(err)
	}
	x.Close()
	if n := open(); n != 0 {
		t.Errorf("%d temp files still open after Close", n)
	}
	// A builder given up on lets its files go too.
	b = &IndexBuilder{TempDir: dir}
	for k, h := range hs {
		b.Add(h, int64(k)*1024, int64(k)*1024+512, hashing.Digest{}, false)
	}
	b.Close()
	if n := open(); n != 0 {
		t.Errorf("%d temp files still open after the builder's Close", n)
	}
}

// TestSpillFails: no temp space is a clear error from Resolve, not a
// panic or a partial index.
func TestSpillFails(t *testing.T) {
	defer unbounded()()
	sortBudgets = extsort.Config{SortBudget: 4096}
	b := &IndexBuilder{TempDir: filepath.Join(t.TempDir(), "missing")}
	for k, h := range randomHeaders(rand.New(rand.NewPCG(5, 6)), 500) {
		b.Add(h, int64(k)*1024, int64(k)*1024+512, hashing.Digest{}, false)
	}
	x, err := b.Resolve(1 << 30)
	if err == nil || x != nil || !errors.Is(err, ErrTempSpace) {
		t.Fatalf("Resolve without temp space: %v, %v", x, err)
	}
}

// TestAnomaliesBounded: a layer of thousands of unsafe names lists the
// first maxAnomalies of the kind and says how many more there are.
func TestAnomaliesBounded(t *testing.T) {
	b := &IndexBuilder{}
	for k := range maxAnomalies + 1234 {
		b.Add(&tar.Header{Name: fmt.Sprintf("../x%d", k), Typeflag: tar.TypeReg}, int64(k)*1024, int64(k)*1024+512, hashing.Digest{}, false)
	}
	ib, err := b.Build(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ParseIndex(ib)
	if err != nil || ix.Len() != uint32(maxAnomalies+1234+1) {
		t.Fatalf("index: %v", err)
	}
	if len(b.Anomalies) != maxAnomalies+1 {
		t.Fatalf("%d anomalies listed, want %d", len(b.Anomalies), maxAnomalies+1)
	}
	last := b.Anomalies[maxAnomalies]
	if last.Kind != "unsafe-name" || !strings.Contains(last.Detail, "1234 more") {
		t.Errorf("last anomaly: %+v", last)
	}
}
