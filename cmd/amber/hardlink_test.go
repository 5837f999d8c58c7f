//go:build linux

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// TestHardLinkReplacedTargetMatchesEngine (issue 14, item 3): a layer
// writes t = ORIGINAL, then h, a hard link to t, then t again = REPLACED.
// Extracted in order, h keeps the first file: GNU tar and the engine say
// ORIGINAL. So do amber cat, the mount (content, its SHA-256 xattr, an
// inode of its own) and verify passes.
//
// The engine's answer is read from an image built with ADD of the layer,
// extracted by the engine's own tar code: docker load refuses a layer that
// names a path twice ("duplicates of file paths not supported").
func TestHardLinkReplacedTargetMatchesEngine(t *testing.T) {
	testenv.Docker(t)
	testenv.FUSE(t)
	busybox := testenv.Tool(t, "busybox")
	testenv.Tool(t, "tar")
	dir := t.TempDir()
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	base := fixture.Layer(fixture.Dir("bin"), fixture.Entry{Name: "bin/busybox", Body: string(bb), Mode: 0o755},
		fixture.Symlink("bin/cat", "busybox"), fixture.Symlink("bin/sh", "busybox"))
	top := fixture.Layer(fixture.File("t", "ORIGINAL\n"), fixture.Hardlink("h", "t"), fixture.File("t", "REPLACED\n"))
	for name, b := range map[string][]byte{"base.tar": base, "top.tar": top} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const want = "ORIGINAL\n"

	// GNU tar, extracting in order.
	testenv.Shell(t, fmt.Sprintf("cd %q && mkdir x && tar -C x -xf top.tar", dir))
	if b, err := os.ReadFile(filepath.Join(dir, "x/h")); err != nil || string(b) != want {
		t.Fatalf("GNU tar extracts h as %q, %v; the test's premise is wrong", b, err)
	}
	// The engine.
	baseImg, img := "amber-test-hl-base:1", "amber-test-hl:1"
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", img, baseImg).Run() })
	testenv.Shell(t, fmt.Sprintf(`cd %q
docker import base.tar %s >/dev/null
mkdir ctx && cp top.tar ctx/
printf 'FROM %s\nADD top.tar /\n' > ctx/Dockerfile
docker build -q -t %s ctx >/dev/null 2>&1`, dir, baseImg, baseImg, img))
	if got := testenv.Run(t, "docker", "run", "--rm", img, "cat", "/h"); got != want {
		t.Fatalf("the engine shows h as %q; the test's premise is wrong", got)
	}

	src := filepath.Join(dir, "src.tar")
	if err := fixture.DockerSave(src, fixture.Image{Tags: []string{"hl:1"}, Layers: [][]byte{base, top}}); err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "case.tar.zst")
	mustAmber(t, "capture", "image", src, "-o", arch)
	for _, p := range []string{"rootfs/h", "layers/1/h"} {
		if got := mustAmber(t, "cat", arch, "images/hl_1/"+p); got != want {
			t.Errorf("amber cat %s = %q, want %q", p, got, want)
		}
	}
	if l := mustAmber(t, "layers", arch); !strings.Contains(l, "A /h  [hard link to an earlier /t (written again later in this layer)]") {
		t.Errorf("amber layers does not say h links to the earlier t:\n%s", l)
	}
	if got := mustAmber(t, "cat", arch, "images/hl_1/rootfs/t"); got != "REPLACED\n" {
		t.Errorf("amber cat rootfs/t = %q", got)
	}
	if v := mustAmber(t, "verify", arch); !strings.HasPrefix(v, "OK ") {
		t.Fatalf("verify:\n%s", v)
	}

	mnt := mountArchive(t, arch, filepath.Join(dir, "mnt"))
	for _, d := range []string{"rootfs", "layers/1"} {
		h, tt := filepath.Join(mnt, "images/hl_1", d, "h"), filepath.Join(mnt, "images/hl_1", d, "t")
		if b, err := os.ReadFile(h); err != nil || string(b) != want {
			t.Errorf("mount: %s/h = %q, %v; want %q", d, b, err, want)
		}
		sum := sha256.Sum256([]byte(want))
		x := make([]byte, 128)
		n, err := syscall.Getxattr(h, "user.amber.sha256", x)
		if err != nil || !strings.Contains(string(x[:max(n, 0)]), hex.EncodeToString(sum[:])) {
			t.Errorf("mount: %s/h has user.amber.sha256 %q, %v; want ORIGINAL's %x", d, x[:max(n, 0)], err, sum)
		}
		var hs, ts syscall.Stat_t
		if err := syscall.Stat(h, &hs); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Stat(tt, &ts); err != nil {
			t.Fatal(err)
		}
		if hs.Ino == ts.Ino || hs.Nlink != 1 || ts.Nlink != 1 {
			t.Errorf("mount: %s: h inode %d (%d links), t inode %d (%d links); GNU tar and the engine make two files of one link each", d, hs.Ino, hs.Nlink, ts.Ino, ts.Nlink)
		}
	}
	mustAmber(t, "umount", mnt)
}
