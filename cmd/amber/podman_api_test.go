package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
)

// podmanService starts Podman's API service (podman system service) on
// the test's own storage (--root, --runroot, --tmpdir under a temporary
// directory: the machine's storage is never touched) at a socket of its
// own; it is stopped and the storage reset at the end of the test. pm
// runs podman on the same storage.
func podmanService(t *testing.T) (pm func(...string) string, sock string) {
	t.Helper()
	testenv.Podman(t)
	base := t.TempDir()
	args := []string{"--root", filepath.Join(base, "root"), "--runroot", filepath.Join(base, "run"), "--tmpdir", filepath.Join(base, "tmp")}
	t.Cleanup(func() {
		exec.Command("podman", append(args, "rm", "-f", "-a", "-t", "0")...).Run()
		exec.Command("podman", append(args, "system", "reset", "-f")...).Run()
	})
	pm = func(a ...string) string {
		t.Helper()
		return strings.TrimSpace(testenv.Run(t, "podman", append(args, a...)...))
	}
	sock = filepath.Join(base, "podman.sock")
	svc := exec.Command("podman", append(args, "system", "service", "--time", "0", "unix://"+sock)...)
	var out strings.Builder
	svc.Stdout, svc.Stderr = &out, &out
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svc.Process.Signal(syscall.SIGTERM)
		svc.Wait()
	})
	for i := 0; ; i++ {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		if i == 200 {
			t.Fatalf("podman system service made no socket in 20 s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return pm, sock
}

// TestPodmanThroughSocket: with --podman-socket, --runtime podman captures
// a running, changed container through Podman's Docker-compatible API:
// the archive verifies, the manifest and the custody log name podman and
// its version, the filesystem is read from podman's overlay upper
// directory (under its graph root) and the captured rootfs equals podman
// export (listing with modes, owners, sizes, links and mtimes, then diff
// -r), and podman's lists are as they were. With DOCKER_HOST at the same
// socket, auto reaches Podman twice (as docker and as podman) and takes it
// once: the container is not "known to docker and podman", and amber ps
// lists it once.
func TestPodmanThroughSocket(t *testing.T) {
	for _, tool := range []string{"umoci", "zstd", "tar", "diff", "find"} {
		testenv.Tool(t, tool)
	}
	save := dockerImage(t)
	pm, sock := podmanService(t)
	const name = "amber-podman-api"
	pm("load", "-q", "-i", save)
	id := pm("run", "-d", "--name", name, "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"--log-driver", "k8s-file", "amber-test:1", "sh", "-c", ctrCommand)
	pm("exec", id, "sh", "-c", ctrChanges)
	version := pm("version", "--format", "{{.Client.Version}}")
	state := func() string {
		return pm("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}}") + "\n" + pm("inspect", "--format", "{{.State.Status}}", id) + "\n" +
			pm("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}") + "\n" +
			pm("volume", "ls", "-q") + "\n" + pm("pod", "ls", "-q")
	}
	before := state()
	flags := []string{"--runtime", "podman", "--podman-socket", "unix://" + sock}

	arch := filepath.Join(t.TempDir(), "p.tar.zst")
	mustAmber(t, append([]string{"capture", "container", name, "-o", arch, "--pause"}, flags...)...)
	if after := state(); after != before {
		t.Errorf("podman's lists changed:\n%s\n---\n%s", before, after)
	}
	mustAmber(t, "verify", "--no-log", arch)
	m := readManifest(t, arch)
	if e := m.Acquisition.Docker; e == nil || e.Runtime != "podman" || e.Version != version || e.Host != "unix://"+sock {
		t.Errorf("the manifest's runtime: %+v, want podman %s at %s", e, version, sock)
	}
	a, ok := m.Artifact(manifest.KindContainer, name)
	if !ok {
		t.Fatalf("no container artifact: %+v", m.Artifacts)
	}
	if c := a.Container; c.ID != id || c.Route != snapshot.RouteUpperdir || !c.Paused || len(c.Processes) == 0 {
		t.Errorf("container record: id %s route %s paused %v processes %d (%s); anomalies %+v", c.ID, c.Route, c.Paused, len(c.Processes), c.MemorySkipped, m.Anomalies)
	}
	if custody := mustAmber(t, "log", arch); !strings.Contains(custody, "podman") || !strings.Contains(custody, version) {
		t.Errorf("the custody log does not name podman %s:\n%s", version, custody)
	}

	// The rootfs, unpacked by umoci from the archive, equals podman
	// export of the container.
	dir := unpack(t, arch, name)
	rootfs, exported := filepath.Join(dir, "bundle", "rootfs"), filepath.Join(dir, "export")
	testenv.Shell(t, fmt.Sprintf("mkdir %q && podman --root %q --runroot %q --tmpdir %q export %s | tar -x -C %q --numeric-owner",
		exported, filepath.Join(filepath.Dir(sock), "root"), filepath.Join(filepath.Dir(sock), "run"), filepath.Join(filepath.Dir(sock), "tmp"), id, exported))
	none := func(string) bool { return false }
	if got, want := secondsListing(t, rootfs, none), secondsListing(t, exported, none); got != want {
		t.Errorf("the captured rootfs differs from podman export:\n%s", lineDiff(want, got))
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", exported, rootfs).CombinedOutput(); err != nil {
		t.Errorf("diff -r --no-dereference export captured: %v\n%s", err, out)
	}

	// DOCKER_HOST at Podman's socket: one runtime, reached twice.
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	auto := filepath.Join(t.TempDir(), "auto.tar.zst")
	mustAmber(t, "capture", "container", name, "-o", auto, "--no-memory", "--podman-socket", "unix://"+sock)
	if e := readManifest(t, auto).Acquisition.Docker; e == nil || e.Runtime != "podman" {
		t.Errorf("auto through DOCKER_HOST and --podman-socket: runtime %+v, want podman", e)
	}
	var ps struct {
		Containers []psRow `json:"containers"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "ps", "--json", "--podman-socket", "unix://"+sock)), &ps); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range ps.Containers {
		if r.ID == id {
			n++
			if r.Runtime != "podman" {
				t.Errorf("ps row %+v, want runtime podman", r)
			}
		}
	}
	if n != 1 {
		t.Errorf("amber ps lists podman's container %d times: %+v", n, ps.Containers)
	}
	if after := state(); after != before {
		t.Errorf("podman's lists changed:\n%s\n---\n%s", before, after)
	}
}

// TestPodmanSocketChecks: --podman-socket with --podman-root is a usage
// error (the service or the storage, not both); a socket where Docker, not
// Podman, answers is refused as not Podman's service (exit 8), and one
// with nothing behind it is an engine error naming it.
func TestPodmanSocketChecks(t *testing.T) {
	testenv.Docker(t)
	out := filepath.Join(t.TempDir(), "x.tar.zst")
	r := amber(t, "capture", "container", "x", "-o", out, "--runtime", "podman", "--podman-socket", "unix:///nowhere.sock", "--podman-root", t.TempDir())
	if r.code != exitUsage || !strings.Contains(r.stderr, "one or the other") {
		t.Errorf("--podman-socket with --podman-root: exit %d %s", r.code, r.stderr)
	}
	dockerHost := os.Getenv("DOCKER_HOST")
	if dockerHost == "" {
		dockerHost = "unix:///var/run/docker.sock"
	}
	r = amber(t, "capture", "container", "x", "-o", out, "--runtime", "podman", "--podman-socket", dockerHost)
	if r.code != exitEngine || !strings.Contains(r.stderr, "not Podman's service") {
		t.Errorf("--podman-socket at Docker's engine: exit %d %s", r.code, r.stderr)
	}
	gone := filepath.Join(t.TempDir(), "none.sock")
	r = amber(t, "capture", "container", "x", "-o", out, "--runtime", "podman", "--podman-socket", gone)
	if r.code != exitEngine || !strings.Contains(r.stderr, gone) || !strings.Contains(r.stderr, "podman system service") {
		t.Errorf("--podman-socket with nothing behind it: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s was written", out)
	}
}
