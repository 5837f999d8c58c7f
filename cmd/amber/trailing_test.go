package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// TestTrailingDataAndKanikoRoot: a docker-save tarball whose second layer
// has bytes hidden after its tar's end-of-archive marker, and whose first
// layer starts, as kaniko's do, with an entry named "/". The capture flags
// the hidden bytes (and not the "/"), verify passes, and the bytes are
// layers/1.trailing for amber ls, amber cat and the mount.
func TestTrailingDataAndKanikoRoot(t *testing.T) {
	testenv.FUSE(t)
	dir := t.TempDir()
	hidden := "\x1f\x8b\x08\x00exfiltrated bytes, after the end of the tar\n"
	base := fixture.Layer(fixture.Entry{Name: "/", Type: '5', Mode: 0o700}, fixture.Dir("etc"), fixture.File("etc/passwd", "root\n"))
	top := append(fixture.Layer(fixture.File("app", "app\n")), hidden...)
	src := filepath.Join(dir, "src.tar")
	if err := fixture.DockerSave(src, fixture.Image{Tags: []string{"tr:1"}, Layers: [][]byte{base, top}}); err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "case.tar.zst")
	out := mustAmber(t, "capture", "image", src, "-o", arch)
	if !strings.Contains(out, "trailing-data") || strings.Contains(out, "unsafe-name") {
		t.Errorf("capture output:\n%s", out)
	}
	summary := mustAmber(t, "ls", arch)
	want := fmt.Sprintf("images/tr_1 layer 1 trailing-data: %d bytes of gzip data after the tar's end-of-archive marker, at offset 2048 of the layer blob", len(hidden))
	if !strings.Contains(summary, want) || strings.Contains(summary, "unsafe-name") || strings.Count(summary, "anomal") != 1 {
		t.Errorf("ls summary lacks %q (or flags the kaniko root):\n%s", want, summary)
	}
	if got := mustAmber(t, "cat", arch, "images/tr_1/layers/1.trailing"); got != hidden {
		t.Errorf("cat layers/1.trailing = %q, want %q", got, hidden)
	}
	if got := mustAmber(t, "ls", arch, "images/tr_1/layers"); !strings.Contains(got, "-r--r--r--") || !strings.Contains(got, " 1.trailing") || strings.Contains(got, "0.trailing") {
		t.Errorf("ls layers:\n%s", got)
	}
	if v := mustAmber(t, "verify", arch); !strings.HasPrefix(v, "OK ") {
		t.Fatalf("verify:\n%s", v)
	}

	mnt := mountArchive(t, arch, filepath.Join(dir, "mnt"))
	layers := filepath.Join(mnt, "images/tr_1/layers")
	b, err := os.ReadFile(filepath.Join(layers, "1.trailing"))
	if err != nil || string(b) != hidden {
		t.Errorf("mount: layers/1.trailing = %q, %v", b, err)
	}
	ents, err := os.ReadDir(layers)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if err != nil || strings.Join(names, " ") != "0 1 1.trailing" {
		t.Errorf("mount: ls layers = %v, %v", names, err)
	}
	var st, dst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(layers, "1.trailing"), &st); err != nil {
		t.Fatal(err)
	}
	syscall.Stat(layers, &dst)
	if st.Mode != syscall.S_IFREG|0o444 || st.Size != int64(len(hidden)) || st.Ino == dst.Ino {
		t.Errorf("mount: layers/1.trailing mode %o size %d ino %d (layers/ is %d)", st.Mode, st.Size, st.Ino, dst.Ino)
	}
	// The kaniko root entry is the layer's root.
	if err := syscall.Stat(filepath.Join(layers, "0"), &st); err != nil || st.Mode != syscall.S_IFDIR|0o700 {
		t.Errorf("mount: layers/0 mode %o, %v; want the \"/\" entry's 0700", st.Mode, err)
	}
	mustAmber(t, "umount", mnt)
}
