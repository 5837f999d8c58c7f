package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// TestCaptureEngineStopped: the engine is stopped (SIGTERM, as systemctl
// stop does, or SIGKILL) at random moments of a container capture: the
// capture either finished before (and the archive verifies) or fails with
// the engine's exit code and a message naming it, with nothing at the
// output name and no partial or temporary file.
func TestCaptureEngineStopped(t *testing.T) {
	img := dockerImage(t)
	e := testenv.Dockerd(t)
	dir := t.TempDir()
	run := func() {
		e.Docker("load", "-q", "-i", img)
		exec.Command("docker", "-H", e.Host(), "rm", "-f", "victim").Run()
		e.Docker("run", "-d", "--name", "victim", "--network", "none", "--stop-timeout", "1", "amber-test:1", "sh", "-c",
			`x=$(head -c 100000000 /dev/zero | tr '\0' a); touch /tmp/ready; while :; do sleep 1; done`)
		for i := 0; i < 200; i++ {
			if exec.Command("docker", "-H", e.Host(), "exec", "victim", "test", "-e", "/tmp/ready").Run() == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	capture := func(out string) *exec.Cmd {
		cmd := exec.Command(amberBin, "capture", "container", "victim", "-o", out)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.Host())
		return cmd
	}
	// A whole capture first: how long one takes on this engine.
	run()
	start := time.Now()
	if out, err := capture(filepath.Join(dir, "whole.tar.zst")).CombinedOutput(); err != nil {
		t.Fatalf("capture from the test's own engine: %v\n%s", err, out)
	}
	took := time.Since(start)
	mustAmber(t, "verify", "--no-log", filepath.Join(dir, "whole.tar.zst"))
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	failed := 0
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL, syscall.SIGTERM, syscall.SIGKILL, syscall.SIGTERM} {
		if i > 0 {
			e.Start()
			run()
		}
		out := filepath.Join(dir, fmt.Sprintf("stopped%d.tar.zst", i))
		cmd := capture(out)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int63n(int64(took)))
		time.Sleep(delay)
		e.Stop(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			t.Fatalf("%v of the engine at %v: the capture hangs", sig, delay)
		}
		t.Logf("%v of the engine at %v of %v: %v %s", sig, delay.Round(time.Millisecond), took.Round(time.Millisecond), err, strings.TrimSpace(stderr.String()))
		if err == nil {
			mustAmber(t, "verify", "--no-log", out)
		} else {
			failed++
			if code := cmd.ProcessState.ExitCode(); code != exitEngine && code != exitGone {
				t.Errorf("%v of the engine at %v: exit %d, want %d or %d\n%s", sig, delay, code, exitEngine, exitGone, stderr.String())
			}
			if !strings.Contains(stderr.String(), "engine") && !strings.Contains(stderr.String(), "container") {
				t.Errorf("the message does not say what failed: %s", stderr.String())
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%v of the engine at %v: an archive was left at the output name", sig, delay)
			}
		}
		noLeftovers(t, dir, fmt.Sprintf("%v of the engine at %v", sig, delay))
	}
	if failed == 0 {
		t.Errorf("the engine never stopped before a capture ended (captures take %v): the test proved nothing", took)
	}
}

// TestDeepChain: a directory chain 2,000 deep (paths of 4,000 bytes, as
// far as PATH_MAX lets tools follow) is captured and mounted, and find
// reaches its bottom through the mount; with a lower --max-index-mib the
// same layer is refused with exit 6 and nothing is written, instead of
// holding paths in memory in the square of the depth.
func TestDeepChain(t *testing.T) {
	testenv.FUSE(t)
	const depth = 2000
	var es []fixture.Entry
	p := ""
	for i := 0; i < depth; i++ {
		p += "d/"
		es = append(es, fixture.Dir(p))
	}
	es = append(es, fixture.File(p+"bottom", "found at the bottom\n"))
	dir := t.TempDir()
	src := filepath.Join(dir, "deep.tar")
	if err := fixture.DockerSave(src, fixture.Image{Tags: []string{"deep:1"}, Layers: [][]byte{fixture.Layer(es...)}}); err != nil {
		t.Fatal(err)
	}
	refused := filepath.Join(dir, "refused.tar.zst")
	r := amber(t, "capture", "image", src, "-o", refused, "--max-index-mib", "1")
	if r.code != exitSource || !strings.Contains(r.stderr, "too large to index") || !strings.Contains(r.stderr, "levels deep") {
		t.Errorf("a chain past --max-index-mib: exit %d\n%s", r.code, r.stderr)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "refused*")); len(ents) > 0 {
		t.Errorf("left behind: %v", ents)
	}
	arch := filepath.Join(dir, "deep.tar.zst")
	mustAmber(t, "capture", "image", src, "-o", arch)
	mustAmber(t, "verify", "--no-log", arch)
	m := filepath.Join(dir, "m")
	os.Mkdir(m, 0o755)
	mustAmber(t, "mount", "--background", "--no-log", arch, m)
	t.Cleanup(func() { amber(t, "umount", m) })
	root := filepath.Join(m, "images/deep_1/rootfs")
	out, err := exec.Command("find", root, "-name", "bottom").CombinedOutput()
	if err != nil {
		t.Fatalf("find through the mount: %v\n%.500s", err, out)
	}
	got := strings.TrimSpace(string(out))
	if want := root + "/" + p + "bottom"; got != want {
		t.Fatalf("find found %.200q, want the bottom %d levels down", got, depth)
	}
	if b, err := os.ReadFile(got); err != nil || string(b) != "found at the bottom\n" {
		t.Errorf("reading the bottom: %q %v", b, err)
	}
	if n := strings.Count(testenv.Run(t, "find", root, "-type", "d"), "\n"); n != depth+1 {
		t.Errorf("find lists %d directories, want %d", n, depth+1)
	}
}

// noLeftovers fails t if a stopped capture left a partial archive or a
// temporary file in dir.
func noLeftovers(t *testing.T, dir, when string) {
	t.Helper()
	for _, pattern := range []string{"*partial*", ".amber-*"} {
		if left, _ := filepath.Glob(filepath.Join(dir, pattern)); len(left) > 0 {
			t.Errorf("%s: left behind: %v", when, left)
		}
	}
}

// TestIndexSpill: the index of a layer of 50,000 files does not fit in the
// build's memory: it spills into the output's directory, where nothing is
// left afterwards but the archive and its sidecars, which verify; on a
// disk too small for the spill, a clear error and nothing left at all.
func TestIndexSpill(t *testing.T) {
	es := make([]fixture.Entry, 0, 50_050)
	for i := range 50 {
		es = append(es, fixture.Dir(fmt.Sprintf("d%02d/", i)))
		for j := range 1000 {
			es = append(es, fixture.File(fmt.Sprintf("d%02d/file-with-a-longer-name-%04d", i, j), ""))
		}
	}
	src := filepath.Join(t.TempDir(), "many.tar")
	if err := fixture.DockerSave(src, fixture.Image{Tags: []string{"many:1"}, Layers: [][]byte{fixture.Layer(es...)}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "case.tar.zst")
	mustAmber(t, "capture", "image", src, "-o", out)
	if v := mustAmber(t, "verify", "--no-log", out); !strings.Contains(v, " 50050 files re-hashed") {
		t.Errorf("verify:\n%s", v)
	}
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "case.tar.zst case.tar.zst.custody.jsonl case.tar.zst.sha256" {
		t.Errorf("the output's directory holds %v", names)
	}
	// Verify rebuilds the index in TMPDIR: without room there, that is
	// this machine's fault (exit 1), not a finding about the evidence.
	cmd := exec.Command(amberBin, "verify", "--no-log", out)
	cmd.Env = append(os.Environ(), "TMPDIR="+filepath.Join(dir, "missing"))
	msg, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError || !strings.Contains(string(msg), "temp space") {
		t.Errorf("verify with no temp space: %v\n%s", err, msg)
	}
	// The archive (under 1 MB) fits on this disk; the spill does not.
	full := smallFS(t, "4m")
	r := amber(t, "capture", "image", src, "-o", filepath.Join(full, "case.tar.zst"))
	if r.code == 0 || !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, "index build") {
		t.Errorf("capture with no room to spill: exit %d\n%s", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(full); len(ents) != 0 {
		t.Errorf("left on the full disk: %v", ents)
	}
}
