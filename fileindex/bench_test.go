package fileindex

import (
	"archive/tar"
	"fmt"
	"testing"
	"time"

	"github.com/amber-forensics/amber/hashing"
)

// BenchmarkBuildIndex: building the index of a Go-toolchain-sized layer
// (17k files) is on the tail of every capture.
func BenchmarkBuildIndex(b *testing.B) {
	var hdrs []*tar.Header
	for d := 0; d < 1500; d++ {
		dir := fmt.Sprintf("go/src/pkg%03d/sub%02d/", d/20, d%20)
		hdrs = append(hdrs, &tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0), Uname: "root", Gname: "root"})
		for f := 0; f < 11; f++ {
			hdrs = append(hdrs, &tar.Header{Name: fmt.Sprintf("%sfile_%02d_test.go", dir, f), Typeflag: tar.TypeReg, Mode: 0o644, Size: 1234, ModTime: time.Unix(1700000000, 0), Uname: "root", Gname: "root"})
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ib := &IndexBuilder{}
		for k, h := range hdrs {
			ib.Add(h, int64(k)*2048, int64(k)*2048+512, hashing.Digest{1}, false)
		}
		if _, _, _, err := ib.BuildWithRoot(int64(len(hdrs)) * 4096); err != nil {
			b.Fatal(err)
		}
	}
}
