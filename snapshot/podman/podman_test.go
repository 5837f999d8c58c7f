//go:build linux

package podman_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/podman"
)

const (
	memSecret = "amber-podman-secret-5c1e"
	// The secret is only ever in the shell's memory: built from two
	// halves, never in its command line or environment.
	ctrScript = `set -e
cp -p /srv/keep /tmp/ref; printf 'changed\n' > /srv/keep; touch -r /tmp/ref /srv/keep; rm /tmp/ref
echo new > /srv/new; rm /srv/doomed; rm -rf /opt/replaced; mkdir /opt/replaced; echo again > /opt/replaced/again
ln -s /etc/passwd /srv/abs-link; mkdir -p /newdir/sub; echo x > /newdir/sub/f
a=amber-podman; b=5c1e; S="${a}-secret-${b}"; echo started; echo oops >&2; while :; do sleep 3600; done`
	dockerfile = `FROM amber-podman-base:1
RUN mkdir -p /srv /opt/replaced && echo keep > /srv/keep && echo doomed > /srv/doomed && echo old > /opt/replaced/old
`
)

// testImage builds the test image on the Docker engine (busybox-static,
// no registry) and saves it with docker save.
func testImage(t *testing.T) string {
	t.Helper()
	testenv.Docker(t)
	busybox := testenv.Tool(t, "busybox")
	p, err := testenv.BusyboxImage(busybox, t.TempDir(), "amber-podman-base:1", "amber-podman-test:1", dockerfile, true)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// privatePodman is podman with the test's own storage, run root and tmp
// dir: the machine's storage is never touched.
type privatePodman struct {
	t                     *testing.T
	root, runRoot, tmpDir string
}

func newPodman(t *testing.T) *privatePodman {
	testenv.Podman(t)
	base := t.TempDir()
	p := &privatePodman{t: t, root: filepath.Join(base, "root"), runRoot: filepath.Join(base, "run"), tmpDir: filepath.Join(base, "tmp")}
	t.Cleanup(func() {
		exec.Command("podman", p.args("rm", "-f", "-a", "-t", "0")...).Run()
		exec.Command("podman", p.args("system", "reset", "-f")...).Run()
	})
	return p
}

func (p *privatePodman) args(a ...string) []string {
	return append([]string{"--root", p.root, "--runroot", p.runRoot, "--tmpdir", p.tmpDir}, a...)
}

func (p *privatePodman) run(a ...string) string {
	p.t.Helper()
	return strings.TrimSpace(testenv.Run(p.t, "podman", p.args(a...)...))
}

// storageHashes hashes every JSON file of the storage and the run root.
func storageHashes(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range dirs {
		filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() && strings.HasSuffix(p, ".json") {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				s := sha256.Sum256(b)
				out[p] = hex.EncodeToString(s[:])
			}
			return nil
		})
	}
	return out
}

// listing is a tree's names, types, modes, owners, sizes and link targets
// (find -printf), sorted.
func listing(t *testing.T, dir string) string {
	t.Helper()
	out := testenv.Run(t, "find", dir, "-mindepth", "1", "-printf", `%P|%y|%m|%U|%G|%s|%l\n`)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, "|")
		if f[1] == "d" {
			f[5] = "" // a directory's size is the file system's
		}
		lines = append(lines, strings.Join(f, "|"))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestCapturePodmanStorage: a container of rootful Podman, captured from
// its storage alone (no podman run by the capture): the archive verifies,
// its rootfs (umoci unpack of the archive) equals podman export of the
// container, the changes are listed, the memory-only secret is in a core
// readelf parses, the logs are the k8s-file's, and podman's storage is
// byte for byte what it was.
func TestCapturePodmanStorage(t *testing.T) {
	for _, tool := range []string{"umoci", "zstd", "tar", "readelf", "diff", "find"} {
		testenv.Tool(t, tool)
	}
	save := testImage(t)
	p := newPodman(t)
	p.run("load", "-q", "-i", save)
	// No network (no CNI needed), and limits this host allows (podman's
	// default nofile limit may be above the hard limit).
	id := p.run("run", "-d", "--name", "web", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"--log-driver", "k8s-file", "amber-podman-test:1", "sh", "-c", ctrScript)
	testenv.Shell(t, fmt.Sprintf(`for i in $(seq 100); do grep -q started %q && exit 0; sleep 0.1; done; exit 1`,
		filepath.Join(p.root, "overlay-containers", id, "userdata", "ctr.log")))

	rt, err := podman.Open(podman.Options{GraphRoot: p.root, RunRoot: p.runRoot})
	if err != nil {
		t.Fatal(err)
	}
	before := storageHashes(t, p.root, p.runRoot)
	out := filepath.Join(t.TempDir(), "case.tar.zst")
	res, err := snapshot.CaptureEngine(context.Background(), rt, snapshot.EngineRequest{Containers: []string{"web"}, Output: out,
		Tool: manifest.Tool{Name: "amber", Version: "test"}, Pause: true})
	if err != nil {
		t.Fatal(err)
	}
	after := storageHashes(t, p.root, p.runRoot)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("podman's storage changed:\n%v\n%v", before, after)
	}
	if st := p.run("inspect", "-f", "{{.State.Status}}", "web"); st != "running" {
		t.Errorf("after the capture the container is %q, not running", st)
	}
	if r, err := archive.Verify(out, archive.VerifyOptions{}); err != nil || len(r.Problems) > 0 {
		t.Fatalf("verify: %+v %v", r, err)
	}
	a, ok := res.Manifest.Artifact(manifest.KindContainer, "web")
	if !ok {
		t.Fatalf("no container artifact: %+v", res.Manifest.Artifacts)
	}
	c := a.Container
	if c.ID != id || c.Route != snapshot.RouteUpperdir || !c.Paused || c.Image != "amber-podman-test_1" {
		t.Errorf("container record: %+v", c)
	}

	// The rootfs, unpacked by umoci from the archive's OCI layout,
	// equals podman export: names, types, modes, owners, sizes, links,
	// and contents (diff -r).
	dir := t.TempDir()
	x, bundle, exported := filepath.Join(dir, "x"), filepath.Join(dir, "bundle"), filepath.Join(dir, "export")
	testenv.Shell(t, fmt.Sprintf("mkdir %q %q && zstd -dc %q | tar -x -C %q", x, exported, out, x))
	testenv.Run(t, "umoci", "unpack", "--image", x+":web", bundle)
	testenv.Shell(t, fmt.Sprintf("podman %s export web | tar -x -C %q --numeric-owner", strings.Join(p.args(), " "), exported))
	rootfs := filepath.Join(bundle, "rootfs")
	if got, want := listing(t, rootfs), listing(t, exported); got != want {
		t.Errorf("the captured rootfs differs from podman export:\ncaptured:\n%s\nexport:\n%s", got, want)
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", exported, rootfs).CombinedOutput(); err != nil {
		t.Errorf("diff -r --no-dereference export captured: %v\n%s", err, out)
	}
	ctr := filepath.Join(x, "amber/containers/web")
	changes, _ := os.ReadFile(filepath.Join(ctr, "changes.txt"))
	for _, want := range []string{"C /srv/keep", "A /srv/new", "D /srv/doomed", "D /opt/replaced/old", "A /opt/replaced/again", "A /newdir/sub/f", "A /srv/abs-link"} {
		if !strings.Contains(string(changes), want+"\n") {
			t.Errorf("changes.txt lacks %q:\n%s", want, changes)
		}
	}
	stdout, _ := os.ReadFile(filepath.Join(ctr, "logs/stdout"))
	stderr, _ := os.ReadFile(filepath.Join(ctr, "logs/stderr"))
	if !strings.HasSuffix(string(stdout), " started\n") || !strings.HasSuffix(string(stderr), " oops\n") || strings.Contains(string(stdout), "stdout F") {
		t.Errorf("logs: stdout %q, stderr %q", stdout, stderr)
	}

	// Memory: the shell's core holds the secret and readelf parses it.
	var shCore string
	for _, pr := range c.Processes {
		if pr.Comm == "sh" {
			shCore = filepath.Join(ctr, pr.Dir, "core")
		}
	}
	if shCore == "" {
		t.Fatalf("no core of the shell: %+v (%s)", c.Processes, c.MemorySkipped)
	}
	core, err := os.ReadFile(shCore)
	if err != nil || !strings.Contains(string(core), memSecret) {
		t.Errorf("the secret is not in %s: %v", shCore, err)
	}
	if rl := testenv.Run(t, "readelf", "-l", shCore); !strings.Contains(rl, "CORE (Core file)") || strings.Count(rl, "LOAD") < 5 {
		t.Errorf("readelf -l of the core:\n%s", rl)
	}
}
