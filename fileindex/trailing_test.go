package fileindex

import (
	"archive/tar"
	"bytes"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
)

// smallTar is a layer of one file, ending with the end-of-archive marker
// and nothing after it (archive/tar pads to no record).
func smallTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("root\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// skipReader is a Skipper over a byte slice, as the capture's pipe is.
type skipReader struct{ *bytes.Reader }

func (s skipReader) Skip(n int64, fn func(p []byte)) (int64, error) {
	b := make([]byte, min(n, int64(s.Len())))
	k, err := io.ReadFull(s.Reader, b)
	fn(b[:k])
	return int64(k), err
}

// TestTrailingData: bytes after a layer tar's end-of-archive marker are
// recorded (offset, size, type, SHA-256) and flagged; zero padding is not.
func TestTrailingData(t *testing.T) {
	tarb := smallTar(t)
	end := int64(len(tarb))
	gz := []byte("\x1f\x8b\x08\x00hidden gzip-looking bytes")
	zeros := func(n int) []byte { return make([]byte, n) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name  string
		after []byte
		// want: offset of the trailing data after the marker, its bytes,
		// its type; want == nil: none.
		at   int64
		want []byte
		typ  string
	}{
		{name: "nothing"},
		{name: "zero padding to a record", after: zeros(10240 - int(end)%10240)},
		{name: "zero padding not of whole blocks", after: zeros(700)},
		{name: "gzip", after: gz, want: gz, typ: "gzip"},
		{name: "after padding", after: cat(zeros(9216), gz), at: 9216, want: gz, typ: "gzip"},
		// Padding comes in whole blocks: the block with the first
		// non-zero byte is the data's, its leading zeros too.
		{name: "zeros inside the first block", after: cat(zeros(1024+100), []byte("x")), at: 1024, want: cat(zeros(100), []byte("x")), typ: "binary"},
		{name: "zstd", after: []byte("\x28\xb5\x2f\xfd rest"), want: []byte("\x28\xb5\x2f\xfd rest"), typ: "zstd"},
		{name: "tar", after: smallTar(t), want: smallTar(t), typ: "tar"},
		{name: "json", after: []byte(" \n{\"toc\": []}\n"), want: []byte(" \n{\"toc\": []}\n"), typ: "json"},
		{name: "text", after: []byte("attacker was here\n"), want: []byte("attacker was here\n"), typ: "text"},
		{name: "binary", after: []byte{1, 2, 3, 0xff}, want: []byte{1, 2, 3, 0xff}, typ: "binary"},
	} {
		for _, skipper := range []bool{false, true} {
			layer := cat(tarb, tc.after)
			var r io.Reader = bytes.NewReader(layer)
			if skipper {
				r = skipReader{bytes.NewReader(layer)}
			}
			b := &IndexBuilder{}
			n, err := ScanLayer(r, b, nil)
			if err != nil || n != int64(len(layer)) {
				t.Fatalf("%s: scanned %d of %d bytes: %v", tc.name, n, len(layer), err)
			}
			ix, err := b.Build(n)
			if err != nil {
				t.Fatal(err)
			}
			if p, err := ParseIndex(ix); err != nil || p.Len() != 3 {
				t.Errorf("%s: index of %v records, %v", tc.name, p.Len(), err)
			}
			var found []manifest.Anomaly
			for _, a := range b.Anomalies {
				if a.Kind == "trailing-data" {
					found = append(found, a)
				} else {
					t.Errorf("%s: anomaly %+v", tc.name, a)
				}
			}
			if tc.want == nil {
				if b.Trailing != nil || len(found) != 0 {
					t.Errorf("%s: trailing data %+v, anomalies %v; want none", tc.name, b.Trailing, found)
				}
				continue
			}
			want := manifest.Trailing{Offset: end + tc.at, Size: int64(len(tc.want)), Type: tc.typ, SHA256: hashing.Sum(tc.want)}
			if b.Trailing == nil || *b.Trailing != want {
				t.Errorf("%s (skipper %v): trailing data %+v, want %+v", tc.name, skipper, b.Trailing, want)
				continue
			}
			if got := layer[want.Offset:]; !bytes.Equal(got, tc.want) {
				t.Errorf("%s: the recorded range holds %q", tc.name, got)
			}
			if len(found) != 1 {
				t.Fatalf("%s: %d trailing-data anomalies", tc.name, len(found))
			}
			for _, s := range []string{strconv.FormatInt(want.Size, 10) + " bytes", "offset " + strconv.FormatInt(want.Offset, 10), tc.typ} {
				if !strings.Contains(found[0].Detail, s) {
					t.Errorf("%s: detail %q lacks %q", tc.name, found[0].Detail, s)
				}
			}
		}
	}
}

// TestTrailingDataNotOnBrokenTars: a tar cut short or broken (no
// end-of-archive marker) is tar-broken or content-truncated as before,
// never trailing data.
func TestTrailingDataNotOnBrokenTars(t *testing.T) {
	tarb := smallTar(t)
	for name, layer := range map[string][]byte{
		"cut in the content":    tarb[:512+3],
		"no marker":             tarb[:1024],
		"one zero block":        tarb[:1024+512],
		"one zero block + data": append(append([]byte(nil), tarb[:1024+512]...), []byte("hidden data, block-sized or not")...),
	} {
		b := &IndexBuilder{}
		if _, err := ScanLayer(bytes.NewReader(layer), b, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b.Trailing != nil {
			t.Errorf("%s: trailing data %+v", name, b.Trailing)
		}
		for _, a := range b.Anomalies {
			if a.Kind == "trailing-data" {
				t.Errorf("%s: %+v", name, a)
			}
		}
	}
}

// TestTrailingDataStreamed: trailing data is hashed as it streams, not
// held: 64 MiB of it after a small tar costs no more than a few buffers.
func TestTrailingDataStreamed(t *testing.T) {
	tarb := smallTar(t)
	const size = 64 << 20
	hidden := io.LimitReader(repeatReader('A'), size)
	b := &IndexBuilder{}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := ScanLayer(io.MultiReader(bytes.NewReader(tarb), hidden), b, nil); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if b.Trailing == nil || b.Trailing.Size != size || b.Trailing.Type != "text" {
		t.Fatalf("trailing data %+v", b.Trailing)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
		t.Errorf("%d MiB allocated to scan %d MiB of trailing data", got>>20, size>>20)
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestSniff(t *testing.T) {
	long := strings.Repeat("é", 300) // 600 bytes: the window cuts a rune
	for in, want := range map[string]string{
		long[:sniffSize]: "text", "x" + long[:sniffSize-1]: "text", long[:sniffSize-1] + "x": "binary", "\xff": "binary", "a\x00b": "binary",
		"\xc3": "binary", "[1,2]": "json", "": "text", "BZh91AY": "bzip2", "\x7fELF\x02": "elf",
	} {
		if got := sniff([]byte(in)); got != want {
			t.Errorf("sniff(%.20q) = %s, want %s", in, got, want)
		}
	}
}
