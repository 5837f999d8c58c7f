package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// smallFS mounts a tmpfs of size bytes for a test (a disk that fills up).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	testenv.Root(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestDiskFullDuringCapture: the output's file system fills up during a
// capture, of an image file and of a paused container: a clear error, no
// partial file, no temporary file, the container running again.
func TestDiskFullDuringCapture(t *testing.T) {
	// 24 MB that does not compress, for a disk of 8 MB.
	var es []fixture.Entry
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 12; i++ {
		b := make([]byte, 2<<20)
		rng.Read(b)
		es = append(es, fixture.File(fmt.Sprintf("r%02d", i), string(b)))
	}
	src := filepath.Join(t.TempDir(), "random.tar")
	if err := fixture.DockerSave(src, fixture.Image{Tags: []string{"random:1"}, Layers: [][]byte{fixture.Layer(es...)}}); err != nil {
		t.Fatal(err)
	}
	full := smallFS(t, "8m")
	out := filepath.Join(full, "case.tar.zst")
	r := amber(t, "capture", "image", src, "-o", out)
	if r.code == 0 || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("capture to a full disk: exit %d\n%s", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(full); len(ents) != 0 {
		t.Errorf("left on the full disk: %v", ents)
	}
	// A container, paused, whose memory does not fit.
	id := testContainer(t, "amber-ctr-full")
	exec.Command("docker", "exec", id, "sh", "-c", "head -c 20000000 /dev/urandom > /tmp/noise").Run()
	r = amber(t, "capture", "container", id, "--pause", "-o", out)
	if r.code == 0 || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("container capture to a full disk: exit %d\n%s", r.code, r.stderr)
	}
	if st := strings.TrimSpace(testenv.Run(t, "docker", "inspect", "--format", "{{.State.Status}}", id)); st != "running" {
		t.Errorf("after a failed --pause capture the container is %s", st)
	}
	if ents, _ := os.ReadDir(full); len(ents) != 0 {
		t.Errorf("left on the full disk: %v", ents)
	}
}

// TestConcurrentCapturesSameOutput: two captures to one name at once: one
// seals, the other refuses (never two writers, never a mixed file).
func TestConcurrentCapturesSameOutput(t *testing.T) {
	dir := t.TempDir()
	src := bigSource(t, dir)
	out := filepath.Join(dir, "same.tar.zst")
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = amber(t, "capture", "image", src, "-o", out).code
		}()
	}
	wg.Wait()
	if (codes[0] == 0) == (codes[1] == 0) {
		t.Errorf("exit codes %v: exactly one capture must win", codes)
	}
	mustAmber(t, "verify", out)
	if left, _ := filepath.Glob(filepath.Join(dir, "*.partial")); len(left) > 0 {
		t.Errorf("left: %v", left)
	}
}

// TestMountsAndVerifyTogether: two mounts of one archive and a verify
// running meanwhile all read it correctly.
func TestMountsAndVerifyTogether(t *testing.T) {
	testenv.FUSE(t)
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "big", fixture.BigImage())
	var mnts []string
	for i := 0; i < 2; i++ {
		m := filepath.Join(dir, "m"+string(rune('a'+i)))
		os.Mkdir(m, 0o755)
		mustAmber(t, "mount", "--background", "--no-log", arch, m)
		t.Cleanup(func() { amber(t, "umount", m) })
		mnts = append(mnts, m)
	}
	done := make(chan result, 1)
	go func() { done <- amber(t, "verify", "--no-log", arch) }()
	want := mustAmber(t, "ls", "--sha256sum", arch, "images/big_1/rootfs")
	for _, m := range mnts {
		cmd := exec.Command("sha256sum", "-c", "--strict", "--quiet", "-")
		cmd.Dir = filepath.Join(m, "images/big_1/rootfs")
		cmd.Stdin = strings.NewReader(want)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c in %s: %v\n%s", m, err, out)
		}
	}
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("verify during the mounts: exit %d %s", r.code, r.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("verify did not finish")
	}
}
