package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// TestRebaseLinks: evidence symlinks followed on a plain mount reach the
// examiner's host (/etc/passwd -> /etc/shadow printed this machine's
// shadow; a link to /dev/zero never ends). With --rebase-links they
// resolve inside the view, amber ls still shows the captured target, and
// the custody log records the choice.
func TestRebaseLinks(t *testing.T) {
	testenv.FUSE(t)
	dir := t.TempDir()
	img := fixture.Image{Tags: []string{"links:1"}, Layers: [][]byte{fixture.Layer(
		fixture.Dir("etc/"), fixture.File("etc/shadow", "evidence-shadow\n"), fixture.Symlink("etc/passwd", "/etc/shadow"),
		fixture.Symlink("zero", "/dev/zero"), fixture.Dir("a/"), fixture.Dir("a/b/"),
		fixture.Symlink("a/b/up", "../../../../../../../etc/shadow"))}}
	arch := fixture.Capture(t, dir, "links", img)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	root := filepath.Join(mnt, "images/links_1/rootfs")

	// As captured: readlink shows the evidence's own target.
	mustAmber(t, "mount", "--background", "--no-log", arch, mnt)
	if l, err := os.Readlink(filepath.Join(root, "etc/passwd")); err != nil || l != "/etc/shadow" {
		t.Errorf("plain mount: readlink etc/passwd = %q %v", l, err)
	}
	mustAmber(t, "umount", mnt)
	time.Sleep(100 * time.Millisecond)

	mustAmber(t, "mount", "--background", "--rebase-links", arch, mnt)
	defer amber(t, "umount", mnt)
	for p, want := range map[string]string{"etc/passwd": "shadow", "zero": "dev/zero", "a/b/up": "../../etc/shadow"} {
		if l, err := os.Readlink(filepath.Join(root, p)); err != nil || l != want {
			t.Errorf("rebased readlink %s = %q %v, want %q", p, l, err, want)
		}
	}
	for _, p := range []string{"etc/passwd", "a/b/up"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != "evidence-shadow\n" {
			t.Errorf("cat %s through the rebased mount: %q %v (must be the evidence's file, never this host's)", p, b, err)
		}
	}
	// sha256sum of the /dev/zero link ends: there is no dev/zero in the view.
	cmd := exec.Command("sha256sum", filepath.Join(root, "zero"))
	done := make(chan error, 1)
	cmd.Start()
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Error("sha256sum of a link to /dev/zero on the rebased mount did not end")
	}
	// diff -r follows links, and stays inside the views.
	if out, err := exec.Command("diff", "-r", filepath.Join(mnt, "images/links_1/stages/0/etc"), filepath.Join(root, "etc")).CombinedOutput(); err != nil {
		t.Errorf("diff -r of two rebased views: %v\n%s", err, out)
	}
	if ls := mustAmber(t, "ls", arch, "images/links_1/rootfs/etc"); !strings.Contains(ls, "passwd -> /etc/shadow") {
		t.Errorf("amber ls does not show the captured target:\n%s", ls)
	}
	if log := mustAmber(t, "log", arch); !strings.Contains(log, "rebase_links=true") {
		t.Errorf("custody log does not record the rebased mount:\n%s", log)
	}
}
