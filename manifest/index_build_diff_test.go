package manifest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// randomHeaders makes a hostile-looking layer: names that collide, repeat,
// nest through missing directories, climb out, sort around '/' ('-', '.'),
// whiteouts, hard links in chains, to directories, to nothing, and to
// shadowed names; xattrs, long owner names, absent times, sparse files.
func randomHeaders(r *rand.Rand, n int) []*tar.Header {
	comps := []string{"a", "b", "a-b", "a.b", "c", ".wh.a", ".wh..wh..opq", "ab", "a0", "z"}
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

// TestBuilderMatchesReference: the packed builder writes exactly the bytes,
// Merkle root, file count and anomalies of the builder it replaced, on
// layers full of edge cases (archives indexed before must verify).
func TestBuilderMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 400 {
		n := 1 + r.IntN(60)
		if round%50 == 0 {
			n = 2000
		}
		hs := randomHeaders(r, n)
		nb, rb := &IndexBuilder{}, &refBuilder{}
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
			t.Fatalf("round %d (%d entries): the packed builder differs: %d vs %d bytes, root %v vs %v, files %d vs %d, %v vs %v",
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
// given to the packed builder and to the reference, give the same index,
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
	f.Fuzz(func(t *testing.T, layer []byte) {
		tr := tar.NewReader(bytes.NewReader(layer))
		nb, rb := &IndexBuilder{}, &refBuilder{}
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
			t.Fatalf("the packed builder differs: %d vs %d bytes, same root %v, files %d vs %d, %v vs %v", len(nix), len(rix), nroot == rroot, nfiles, rfiles, nerr, rerr)
		}
		if !reflect.DeepEqual(nb.Anomalies, rb.Anomalies) {
			t.Fatalf("anomalies differ:\n%v\n%v", nb.Anomalies, rb.Anomalies)
		}
	})
}
