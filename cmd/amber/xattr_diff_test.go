//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestDiffLocalLargeXattr: diff against a local directory read xattrs into
// 4,096 bytes and skipped larger ones, so a large xattr showed as missing
// (and a changed one as equal). tmpfs holds values of 64 KiB.
func TestDiffLocalLargeXattr(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	big := strings.Repeat("a", 9000)
	img := fixture.Image{Tags: []string{"xa:1"}, Layers: [][]byte{fixture.Layer(
		fixture.Entry{Name: "f", Body: "x", Mode: 0o644, Xattrs: map[string]string{"user.big": big}})}}
	arch := fixture.Capture(t, dir, "xa", img)
	local := filepath.Join(dir, "local")
	os.Mkdir(local, 0o755)
	if err := unix.Mount("tmpfs", local, "tmpfs", 0, ""); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(local, unix.MNT_DETACH) })
	mustAmber(t, "extract", "--preserve-all", arch, "images/xa_1/rootfs/f", filepath.Join(local, "f"))
	if err := unix.Setxattr(filepath.Join(local, "f"), "user.big", []byte(big), 0); err != nil {
		t.Fatalf("setting a 9,000-byte xattr on tmpfs: %v", err)
	}
	os.Chtimes(filepath.Join(local, "f"), fixture.Epoch, fixture.Epoch)
	out := mustAmber(t, "diff", "--path", "/f", arch+":images/xa_1/rootfs", local)
	if strings.Contains(out, "xattr") {
		t.Errorf("equal 9,000-byte xattrs reported as different:\n%s", out)
	}
	unix.Setxattr(filepath.Join(local, "f"), "user.big", []byte(big[:8999]+"b"), 0)
	out = amber(t, "diff", "--path", "/f", arch+":images/xa_1/rootfs", local).stdout
	if !strings.Contains(out, "xattr") {
		t.Errorf("a changed 9,000-byte xattr not reported:\n%s", out)
	}
}
