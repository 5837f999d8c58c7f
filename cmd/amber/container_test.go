package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// The secret lives only in the memory of the container's shell: it is put
// together at run time from two halves, never written to a file, the
// environment or the command line.
const (
	memSecret  = "amber-mem-secret-7f3a"
	ctrCommand = `a=amber-mem; b=7f3a; S="${a}-secret-${b}"; echo started; echo oops >&2; while :; do sleep 3600; done`
	ctrChanges = `set -e
echo added > /srv/added.txt; mkdir -p /newdir/sub; echo x > /newdir/sub/f
cp -p /srv/data/creds /tmp/ref; printf 'AKIAEXAMPLEKEZ\n' > /srv/data/creds; touch -r /tmp/ref /srv/data/creds; rm /tmp/ref
rm "/srv/name with space"; rm -rf /opt/replaced; mkdir /opt/replaced; echo again > /opt/replaced/again
ln /srv/added.txt /srv/added-link; ln -s /etc/passwd /srv/abs-link; chmod 700 /srv/suid
printf 'n2' > "/srv/$(printf 'new\nline2')"`
	contentOnly = "/srv/data/creds" // same size, mtime put back
)

// testContainer starts a container of the test image and changes its
// filesystem: adds, changes (one content-only), deletes, replaces a
// directory, links.
func testContainer(t *testing.T, name string) string {
	t.Helper()
	dockerImage(t)
	exec.Command("docker", "rm", "-f", name).Run()
	id := strings.TrimSpace(testenv.Run(t, "docker", "run", "-d", "--name", name, "amber-test:1", "sh", "-c", ctrCommand))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	testenv.Run(t, "docker", "exec", id, "sh", "-c", ctrChanges)
	return id
}

// unpack extracts an archive and unpacks one of its manifests (by
// ref.name) with umoci, an independent OCI tool.
func unpack(t *testing.T, arch, ref string) string {
	t.Helper()
	umoci := testenv.Tool(t, "umoci")
	dir := t.TempDir()
	testenv.Shell(t, fmt.Sprintf("mkdir %q && zstd -dc %q | tar -x -C %q", dir+"/x", arch, dir+"/x"))
	if out, err := exec.Command(umoci, "unpack", "--image", dir+"/x:"+ref, dir+"/bundle").CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack %s: %v\n%s", ref, err, out)
	}
	return dir
}

// secondsListing is findListing with mtimes cut to whole seconds: the
// engine's export stream has no more.
func secondsListing(t *testing.T, dir string, skip func(string) bool) string {
	l := findListing(t, dir, skip)
	re := regexp.MustCompile(`\|(\d+)\.\d+\|`)
	return sortedLines(re.ReplaceAllString(l, "|$1|"))
}

func sortedLines(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(l)
	return strings.Join(l, "\n")
}

func readManifest(t *testing.T, arch string) *manifest.Manifest {
	t.Helper()
	a, err := archive.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	return a.Manifest
}

// recordedAtime is the access time the changes layer records for p.
func recordedAtime(t *testing.T, arch string, a *manifest.Artifact, p string) string {
	t.Helper()
	ar, err := archive.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	defer ar.Close()
	ix, err := ar.Index(a.Layers[len(a.Layers)-1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	i, ok := ix.Lookup(p)
	if !ok {
		t.Fatalf("%s not in the changes layer", p)
	}
	r, err := ix.Record(i)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d.%09d", r.AccessTime.Unix(), r.AccessTime.Nanosecond())
}

func engineState(t *testing.T) string {
	t.Helper()
	return testenv.Run(t, "docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}} {{.State}}") +
		testenv.Run(t, "docker", "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}") +
		testenv.Run(t, "docker", "volume", "ls", "-q")
}

// TestCaptureContainer is the incident responder's capture of a running,
// changed container, checked with independent tools.
func TestCaptureContainer(t *testing.T) {
	testenv.Root(t)
	id := testContainer(t, "amber-ctr-a")
	diffBefore := testenv.Run(t, "docker", "diff", id)
	upper := strings.TrimSpace(testenv.Run(t, "docker", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", id))
	// Access times of directories and symlinks are left out: the engine
	// reads the directories when asked for its change list (docker diff),
	// and the kernel updates a symlink's when it is read (relatime); no
	// flag prevents either. amber reads files O_NOATIME, and records all
	// times before anything else reads them: checked below.
	upperTimes := `find "$0" -type f -printf '%p|%A@|%T@|%C@|%s\n' -o -printf '%p|-|%T@|%C@|%s\n'`
	upperBefore := testenv.Run(t, "sh", "-c", upperTimes, upper)
	dirAtime := strings.TrimSpace(testenv.Run(t, "stat", "-c", "%.9X", filepath.Join(upper, "srv/data")))
	before := engineState(t)
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	r := amber(t, "capture", "container", "amber-ctr-a", "-o", arch, "--case", "T-3", "--examiner", "E. Xaminer")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "memory: process") || !strings.Contains(r.stderr, "filesystem") {
		t.Errorf("no progress on stderr:\n%s", r.stderr)
	}
	// No footprint: the engine's lists, the container's change list and
	// its upper directory (access times included) are as they were.
	if after := engineState(t); sortedLines(after) != sortedLines(before) {
		t.Errorf("the engine's containers/images/volumes changed:\n%s", lineDiff(before, after))
	}
	if d := testenv.Run(t, "docker", "diff", id); sortedLines(d) != sortedLines(diffBefore) {
		t.Errorf("docker diff changed:\n%s\nvs\n%s", diffBefore, d)
	}
	if u := testenv.Run(t, "sh", "-c", upperTimes, upper); u != upperBefore {
		t.Errorf("the container's upper directory changed (times or sizes):\n%s", lineDiff(upperBefore, u))
	}
	mustAmber(t, "verify", arch)
	m := readManifest(t, arch)
	ca, ok := m.Artifact(manifest.KindContainer, "amber-ctr-a")
	if !ok {
		t.Fatalf("no container artifact: %+v", m.Artifacts)
	}
	if got := recordedAtime(t, arch, ca, "srv/data"); got != dirAtime {
		t.Errorf("/srv/data recorded with atime %s, it was %s before the capture", got, dirAtime)
	}
	img, ok := m.Artifact(manifest.KindImage, "amber-test_1")
	if !ok || img.ImageID.String() != ca.ImageID.String() {
		t.Fatalf("image artifact missing or wrong: %+v", m.Artifacts)
	}
	c := ca.Container
	if c.ID != id || c.Route != "upperdir" || c.Image != "amber-test_1" || len(ca.Layers) != len(img.Layers)+1 {
		t.Errorf("container record: %+v, %d layers", c, len(ca.Layers))
	}
	if m.Acquisition.Docker == nil || m.Acquisition.Docker.ID == "" || m.Acquisition.Docker.Version == "" || !m.Acquisition.Docker.Local {
		t.Errorf("engine identity not recorded: %+v", m.Acquisition.Docker)
	}

	// The filesystem, unpacked by umoci from the archive's OCI layout,
	// equals docker export of the same container.
	u := unpack(t, arch, "amber-ctr-a")
	rootfs := filepath.Join(u, "bundle/rootfs")
	exported := t.TempDir()
	testenv.Shell(t, fmt.Sprintf("docker export %s | tar -x -C %q --numeric-owner", id, exported))
	none := func(string) bool { return false }
	got, want := secondsListing(t, rootfs, none), secondsListing(t, exported, none)
	if got != want {
		t.Errorf("umoci unpack of the captured container differs from docker export:\n%s", lineDiff(want, got))
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", exported, rootfs).CombinedOutput(); err != nil {
		t.Errorf("diff -r --no-dereference export captured: %v\n%s", err, out)
	}

	// The content-only change is found, though the engine's list may miss it.
	x := filepath.Join(u, "x")
	changes, err := os.ReadFile(filepath.Join(x, "amber/containers/amber-ctr-a/changes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"C " + contentOnly, "A /srv/added.txt", "D /srv/name with space", "D /opt/replaced/new", "A /opt/replaced/again", "A /newdir/sub/f", `A "/srv/new\nline2"`} {
		if !strings.Contains(string(changes), want+"\n") {
			t.Errorf("changes.txt lacks %q:\n%s", want, changes)
		}
	}
	if strings.Contains(diffBefore, contentOnly) {
		t.Logf("this engine's docker diff lists %s too", contentOnly)
	} else {
		found := false
		for _, an := range m.Anomalies {
			if an.Path == contentOnly && an.Kind == "engine-change-list" {
				found = true
			}
		}
		if !found {
			t.Errorf("the engine's list misses %s and no anomaly says so: %+v", contentOnly, m.Anomalies)
		}
	}
	// It is in the changes layer itself, with the new content.
	changed, err := os.ReadFile(filepath.Join(rootfs, contentOnly))
	if err != nil || string(changed) != "AKIAEXAMPLEKEZ\n" {
		t.Errorf("%s in the unpacked container: %q, %v", contentOnly, changed, err)
	}
	engineList, _ := os.ReadFile(filepath.Join(x, "amber/containers/amber-ctr-a/engine-changes.txt"))
	for _, l := range strings.Split(strings.TrimSpace(diffBefore), "\n") {
		if strings.Contains(l, "/srv/new") || l == "line2" {
			continue // docker diff prints the newline raw; amber quotes it
		}
		if !strings.Contains(string(engineList), l+"\n") {
			t.Errorf("engine-changes.txt lacks docker diff's %q:\n%s", l, engineList)
		}
	}
	if !strings.Contains(string(engineList), `A "/srv/new\nline2"`) {
		t.Errorf("engine-changes.txt lacks the quoted newline name:\n%s", engineList)
	}
	// Metadata and logs.
	var inspect struct{ ID string }
	ib, _ := os.ReadFile(filepath.Join(x, "amber/containers/amber-ctr-a/inspect.json"))
	if json.Unmarshal(ib, &inspect) != nil || inspect.ID != id {
		t.Errorf("inspect.json: %.200s", ib)
	}
	stdout, _ := os.ReadFile(filepath.Join(x, "amber/containers/amber-ctr-a/logs/stdout"))
	stderr, _ := os.ReadFile(filepath.Join(x, "amber/containers/amber-ctr-a/logs/stderr"))
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT[0-9:.]+Z started\n$`).Match(stdout) || !strings.HasSuffix(string(stderr), " oops\n") {
		t.Errorf("logs: stdout %q stderr %q", stdout, stderr)
	}

	// Memory: every process, the secret in a core, readable by readelf.
	pids := strings.Fields(testenv.Run(t, "docker", "top", id, "-o", "pid"))[1:]
	if len(c.Processes) != len(pids) {
		t.Errorf("%d processes dumped, docker top lists %v", len(c.Processes), pids)
	}
	var shCore string
	for _, p := range c.Processes {
		if !strings.Contains(strings.Join(pids, " "), fmt.Sprint(p.PID)) {
			t.Errorf("process %d is not in docker top %v", p.PID, pids)
		}
		if p.Comm == "sh" {
			shCore = filepath.Join(x, "amber/containers/amber-ctr-a", p.Dir, "core")
		}
	}
	if shCore == "" {
		t.Fatalf("no core of the shell: %+v", c.Processes)
	}
	if out, err := exec.Command("grep", "-c", "-a", memSecret, shCore).Output(); err != nil || strings.TrimSpace(string(out)) == "0" {
		t.Errorf("the secret is not in %s: %v %s", shCore, err, out)
	}
	for _, f := range []string{"environ", "cmdline", "maps", "status"} {
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(shCore), f))
		if len(b) == 0 {
			t.Errorf("%s is empty", f)
		}
		if strings.Contains(string(b), memSecret) {
			t.Errorf("the secret is in %s: the test's premise is broken", f)
		}
	}
	rl := testenv.Run(t, "readelf", "-l", shCore)
	if !strings.Contains(rl, "CORE (Core file)") || strings.Count(rl, "LOAD") < 5 {
		t.Errorf("readelf -l of the core:\n%s", rl)
	}
	if gdb, err := exec.LookPath("gdb"); err == nil {
		out, _ := exec.Command(gdb, "-batch", "-ex", "info threads", "-c", shCore).CombinedOutput()
		if !strings.Contains(string(out), "Core was generated by `sh -c") {
			t.Errorf("gdb does not read the core:\n%s", out)
		}
	}

	// Custody: started, memory, captured, sealed, with the engine's identity.
	log := mustAmber(t, "log", arch, "--json")
	for _, want := range []string{"acquisition-started", "memory-captured", `"captured"`, "sealed", m.Acquisition.Docker.ID, "E. Xaminer"} {
		if !strings.Contains(log, want) {
			t.Errorf("custody log lacks %s", want)
		}
	}
}

// TestCaptureRoutesAgree: the upper directory and the engine's export
// stream give the same tree and the same change list; two containers of
// one image share its layers.
func TestCaptureRoutesAgree(t *testing.T) {
	testenv.Root(t)
	testContainer(t, "amber-ctr-b")
	id2 := testContainer(t, "amber-ctr-c")
	dir := t.TempDir()
	up, ex := filepath.Join(dir, "up.tar.zst"), filepath.Join(dir, "ex.tar.zst")
	mustAmber(t, "capture", "container", "amber-ctr-b", "amber-ctr-c", "--no-memory", "--route", "upperdir", "-o", up)
	mustAmber(t, "capture", "container", "amber-ctr-b", "--no-memory", "--route", "export", "-o", ex)
	mu, me := readManifest(t, up), readManifest(t, ex)
	if a, _ := me.Artifact(manifest.KindContainer, "amber-ctr-b"); a == nil || a.Container.Route != "export" {
		t.Fatalf("export route not taken: %+v", a)
	}
	none := func(string) bool { return false }
	ru, re := unpack(t, up, "amber-ctr-b"), unpack(t, ex, "amber-ctr-b")
	lu, le := secondsListing(t, filepath.Join(ru, "bundle/rootfs"), none), secondsListing(t, filepath.Join(re, "bundle/rootfs"), none)
	if lu != le {
		t.Errorf("routes differ:\n%s", lineDiff(lu, le))
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", filepath.Join(ru, "bundle/rootfs"), filepath.Join(re, "bundle/rootfs")).CombinedOutput(); err != nil {
		t.Errorf("routes differ in content: %v\n%s", err, out)
	}
	cu, _ := os.ReadFile(filepath.Join(ru, "x/amber/containers/amber-ctr-b/changes.txt"))
	ce, _ := os.ReadFile(filepath.Join(re, "x/amber/containers/amber-ctr-b/changes.txt"))
	if string(cu) != string(ce) || !strings.Contains(string(cu), "C "+contentOnly+"\n") {
		t.Errorf("change lists differ or miss the content-only change:\nupperdir:\n%s\nexport:\n%s", cu, ce)
	}
	// Two containers, one image: its layers are stored once.
	blobs := map[string]int{}
	for _, e := range mu.Entries {
		blobs[e.Name]++
	}
	img, _ := mu.Artifact(manifest.KindImage, "amber-test_1")
	for _, l := range img.Layers {
		if blobs[manifest.BlobName(l.Digest)] != 1 {
			t.Errorf("layer %s stored %d times", l.Digest, blobs[manifest.BlobName(l.Digest)])
		}
	}
	b, _ := mu.Artifact(manifest.KindContainer, "amber-ctr-b")
	c, _ := mu.Artifact(manifest.KindContainer, "amber-ctr-c")
	if b == nil || c == nil || c.Container.ID != id2 || len(mu.Artifacts) != 3 {
		t.Fatalf("artifacts: %+v", mu.Artifacts)
	}
}

// TestCaptureContainerPause: --pause freezes the container, unpauses it and
// records both (TestCaptureSignalsRandom stops such captures by signals).
func TestCaptureContainerPause(t *testing.T) {
	testenv.Root(t)
	dockerImage(t)
	id := testContainer(t, "amber-ctr-p")
	dir := t.TempDir()
	arch := filepath.Join(dir, "p.tar.zst")
	mustAmber(t, "capture", "container", id, "--pause", "-o", arch)
	if st := strings.TrimSpace(testenv.Run(t, "docker", "inspect", "--format", "{{.State.Status}}", id)); st != "running" {
		t.Fatalf("after --pause the container is %s", st)
	}
	log := mustAmber(t, "log", arch)
	if !strings.Contains(log, "paused") || !strings.Contains(log, "unpaused") {
		t.Errorf("custody log lacks paused/unpaused:\n%s", log)
	}
	m := readManifest(t, arch)
	if a, _ := m.Artifact(manifest.KindContainer, "amber-ctr-p"); a == nil || !a.Container.Paused {
		t.Errorf("paused_by_amber not recorded")
	}
}

// TestCaptureSignalsRandom: SIGINT or SIGTERM at a random moment of a
// --pause capture, many times (AMBER_SIGNAL_RUNS, default 8; make soak runs
// more): the container is never left paused, nothing at the output name
// unless it verifies, no partial or temporary file.
func TestCaptureSignalsRandom(t *testing.T) {
	testenv.Root(t)
	dockerImage(t)
	dir := t.TempDir()
	runs := 8
	if n, err := strconv.Atoi(os.Getenv("AMBER_SIGNAL_RUNS")); err == nil && n > 0 {
		runs = n
	}
	// A big memory makes the capture last.
	big := "amber-ctr-big"
	exec.Command("docker", "rm", "-f", big).Run()
	bid := strings.TrimSpace(testenv.Run(t, "docker", "run", "-d", "--name", big, "amber-test:1", "sh", "-c",
		`x=$(head -c 300000000 /dev/zero | tr '\0' a); touch /tmp/ready; while :; do sleep 1; done`))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", bid).Run() })
	for i := 0; i < 600 && exec.Command("docker", "exec", bid, "test", "-e", "/tmp/ready").Run() != nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	mustAmber(t, "capture", "container", big, "--pause", "-o", filepath.Join(dir, "whole.tar.zst"))
	took := time.Since(start)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("%d runs, a whole capture takes %v, seed %d", runs, took.Round(time.Millisecond), seed)
	var interrupted, finished int
	for i := 0; i < runs; i++ {
		out := filepath.Join(dir, fmt.Sprintf("sig%d.tar.zst", i))
		sig := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}[rng.Intn(2)]
		delay := time.Duration(rng.Int63n(int64(took) * 11 / 10))
		cmd := exec.Command(amberBin, "capture", "container", big, "--pause", "-o", out)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		st := strings.TrimSpace(testenv.Run(t, "docker", "inspect", "--format", "{{.State.Status}}", bid))
		if st != "running" {
			t.Fatalf("after %v at %v the container is %s (exit: %v)", sig, delay, st, err)
		}
		ee, _ := err.(*exec.ExitError)
		killedEarly := ee != nil && ee.ExitCode() == -1 // before amber installed its handler: it had done nothing
		if _, serr := os.Stat(out); serr == nil {
			mustAmber(t, "verify", "--no-log", out)
			finished++
		} else if ee == nil || ee.ExitCode() != exitInterrupted && !killedEarly {
			t.Errorf("%v at %v: %v, want exit %d\n%s", sig, delay, err, exitInterrupted, stderr.String())
		} else {
			interrupted++
		}
		noLeftovers(t, dir, fmt.Sprintf("%v at %v", sig, delay))
	}
	t.Logf("interrupted %d, finished first %d", interrupted, finished)
	if interrupted == 0 {
		t.Errorf("no run was interrupted: the test proved nothing")
	}
}

// TestCaptureEngineErrors: clear messages and distinct exit codes, and
// nothing at the output name.
func TestCaptureEngineErrors(t *testing.T) {
	testenv.Docker(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "x.tar.zst")
	r := amber(t, "capture", "container", "no-such-container-amber", "-o", out)
	if r.code != exitNotFound || !strings.Contains(r.stderr, "no-such-container-amber") {
		t.Errorf("unknown container: exit %d, %s", r.code, r.stderr)
	}
	r = amber(t, "capture", "image", "--engine", "no-such-image-amber:9", "-o", out)
	if r.code != exitNotFound {
		t.Errorf("unknown image: exit %d, %s", r.code, r.stderr)
	}
	cmd := exec.Command(amberBin, "capture", "container", "whatever", "-o", out)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+filepath.Join(dir, "no.sock"))
	b, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitEngine || !strings.Contains(string(b), "cannot connect") {
		t.Errorf("engine unreachable: %v\n%s", err, b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left in the output directory: %v", ents)
	}
}

// TestCaptureImageFromEngine: an image by reference, with its tags.
func TestCaptureImageFromEngine(t *testing.T) {
	dockerImage(t)
	dir := t.TempDir()
	arch := filepath.Join(dir, "img.tar.zst")
	mustAmber(t, "capture", "image", "amber-test:1", "-o", arch)
	m := readManifest(t, arch)
	a, ok := m.Artifact(manifest.KindImage, "amber-test_1")
	want := strings.TrimSpace(testenv.Run(t, "docker", "inspect", "--format", "{{.Id}}", "amber-test:1"))
	if !ok || a.ImageID.String() != want || len(a.Refs) == 0 || a.Refs[0] != "amber-test:1" {
		t.Fatalf("image artifact: %+v", a)
	}
	if m.Acquisition.Docker == nil || len(m.Acquisition.Sources) != 1 || m.Acquisition.Sources[0].Kind != "docker-image" {
		t.Errorf("source: %+v", m.Acquisition.Sources)
	}
	mustAmber(t, "verify", arch)
}

// TestCaptureVolumes: --volumes stores a named volume's contents as an
// artifact of its own; a bind mount of the host's / is recorded and never
// walked.
func TestCaptureVolumes(t *testing.T) {
	testenv.Root(t)
	dockerImage(t)
	name, vol := "amber-ctr-v", "amber-test-vol"
	exec.Command("docker", "rm", "-f", name).Run()
	exec.Command("docker", "volume", "rm", vol).Run()
	id := strings.TrimSpace(testenv.Run(t, "docker", "run", "-d", "--name", name, "-v", vol+":/data", "-v", "/:/host:ro", "amber-test:1",
		"sh", "-c", "echo voldata > /data/f; mkdir /data/d; ln -s f /data/l; ln /data/f /data/h; echo ready; while :; do sleep 3600; done"))
	t.Cleanup(func() {
		exec.Command("docker", "rm", "-f", id).Run()
		exec.Command("docker", "volume", "rm", vol).Run()
	})
	for i := 0; i < 50 && !strings.Contains(testenv.Run(t, "docker", "logs", id), "ready"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	dir := t.TempDir()
	arch := filepath.Join(dir, "v.tar.zst")
	before := engineState(t)
	mustAmber(t, "capture", "container", name, "--volumes", "--no-memory", "-o", arch)
	if after := engineState(t); sortedLines(after) != sortedLines(before) {
		t.Errorf("the engine's lists changed:\n%s", lineDiff(before, after))
	}
	mustAmber(t, "verify", arch)
	m := readManifest(t, arch)
	v, ok := m.Artifact(manifest.KindVolume, vol)
	if !ok || len(v.Layers) != 1 || v.Files != 4 {
		t.Fatalf("volume artifact: %+v", v)
	}
	c, _ := m.Artifact(manifest.KindContainer, name)
	var bind, named bool
	for _, mt := range c.Container.Mounts {
		switch {
		case mt.Type == "bind" && mt.Source == "/" && mt.Captured == "" && strings.Contains(mt.Skipped, "never walked"):
			bind = true
		case mt.Type == "volume" && mt.Name == vol && mt.Captured == "volumes/"+vol:
			named = true
		}
	}
	if !bind || !named {
		t.Errorf("mounts: %+v", c.Container.Mounts)
	}
	// The volume's layer, extracted with GNU tar, holds what the container wrote.
	x := t.TempDir()
	testenv.Shell(t, fmt.Sprintf("zstd -dc %q | tar -x -C %q && mkdir %q/vol && tar -x -C %q/vol -f %q/blobs/sha256/%s", arch, x, x, x, x, v.Layers[0].Digest.Hex()))
	if b, err := os.ReadFile(filepath.Join(x, "vol/f")); err != nil || string(b) != "voldata\n" {
		t.Errorf("volume file: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(x, "vol/l")); err != nil || l != "f" {
		t.Errorf("volume symlink: %q %v", l, err)
	}
	// The mount layout's volumes/NAME is the volume's tree (it listed an
	// image's names before).
	if ls := mustAmber(t, "ls", arch, "volumes/"+vol); !strings.Contains(ls, " f\n") || !strings.Contains(ls, " l -> f") {
		t.Errorf("ls volumes/%s:\n%s", vol, ls)
	}
	// The host's / is not in the archive: the only layers are the image's,
	// the changes and the volume.
	if n := len(m.Artifacts); n != 3 {
		t.Errorf("%d artifacts", n)
	}
	if c.Files > 400 {
		t.Errorf("the container's layers hold %d files: was the bind mount walked?", c.Files)
	}
}

// TestMountContainerViews compares the mounted container views with
// independent reconstructions by the engine: docker export of the
// container for rootfs, of a fresh container of its image for pristine;
// the memory files read through the mount match the manifest.
func TestMountContainerViews(t *testing.T) {
	testenv.Root(t)
	testenv.FUSE(t)
	id := testContainer(t, "amber-ctr-m")
	dir := t.TempDir()
	arch := filepath.Join(dir, "m.tar.zst")
	mustAmber(t, "capture", "container", id, "-o", arch)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	mustAmber(t, "mount", "--background", arch, mnt)
	t.Cleanup(func() { amber(t, "umount", mnt) })
	base := filepath.Join(mnt, "containers/amber-ctr-m")

	exported := t.TempDir()
	testenv.Shell(t, fmt.Sprintf("docker export %s | tar -x -C %q --numeric-owner", id, exported))
	none := func(string) bool { return false }
	if got, want := secondsListing(t, filepath.Join(base, "rootfs"), none), secondsListing(t, exported, none); got != want {
		t.Errorf("containers/amber-ctr-m/rootfs differs from docker export:\n%s", lineDiff(want, got))
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", exported, filepath.Join(base, "rootfs")).CombinedOutput(); err != nil {
		t.Errorf("diff -r export rootfs: %v\n%s", err, out)
	}
	fresh := dockerExport(t, "amber-test:1")
	got, want := findListing(t, filepath.Join(base, "pristine"), none), findListing(t, fresh, runtimePaths)
	if got, want = dropDirMtimes(got, "etc"), dropDirMtimes(want, "etc"); got != want {
		t.Errorf("pristine differs from a fresh container of the image:\n%s", lineDiff(want, got))
	}
	img := findListing(t, filepath.Join(mnt, "images/amber-test_1/rootfs"), none)
	if dropDirMtimes(img, "etc") != got {
		t.Error("pristine differs from images/amber-test_1/rootfs")
	}
	// changes/ is the layer as stored: markers visible.
	if _, err := os.Lstat(filepath.Join(base, "changes/srv/.wh.name with space")); err != nil {
		t.Errorf("whiteout marker not shown in changes/: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "changes/etc/passwd")); err == nil {
		t.Error("changes/ shows an unchanged file")
	}
	// diff -r pristine rootfs names the changes.
	out, _ := exec.Command("diff", "-r", "--no-dereference", filepath.Join(base, "pristine"), filepath.Join(base, "rootfs")).CombinedOutput()
	for _, want := range []string{"Only in " + filepath.Join(base, "rootfs/srv") + ": added.txt", "Only in " + filepath.Join(base, "pristine/srv") + ": name with space", "creds"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("diff -r pristine rootfs lacks %q:\n%s", want, out)
		}
	}
	// Metadata and memory, checked against the manifest through the mount.
	m := readManifest(t, arch)
	ca, _ := m.Artifact(manifest.KindContainer, "amber-ctr-m")
	cores := 0
	for _, mem := range ca.Container.Members {
		if !strings.HasSuffix(mem.Path, "/core") && mem.Path != "inspect.json" && mem.Path != "changes.txt" {
			continue
		}
		sum := strings.Fields(testenv.Run(t, "sha256sum", filepath.Join(base, mem.Path)))[0]
		if sum != mem.SHA256.Hex() {
			t.Errorf("%s through the mount: %s, manifest %s", mem.Path, sum, mem.SHA256.Hex())
		}
		if strings.HasSuffix(mem.Path, "/core") {
			cores++
		}
	}
	if cores != len(ca.Container.Processes) || cores == 0 {
		t.Errorf("%d cores for %d processes", cores, len(ca.Container.Processes))
	}
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("grep -l -a %s %s/memory/*/core", memSecret, base)).Output(); err != nil || !strings.Contains(string(out), "-sh/core") {
		t.Errorf("grep -a of the secret through the mount: %v %s", err, out)
	}
	// history and Dockerfile, from the config, against docker history.
	hist, _ := os.ReadFile(filepath.Join(mnt, "images/amber-test_1/history"))
	df, _ := os.ReadFile(filepath.Join(mnt, "images/amber-test_1/Dockerfile"))
	for _, by := range strings.Split(strings.TrimSpace(testenv.Run(t, "docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", "amber-test:1")), "\n") {
		if !strings.Contains(string(hist), by) {
			t.Errorf("history lacks %q:\n%s", by, hist)
		}
		if run, ok := strings.CutPrefix(by, "/bin/sh -c "); ok && !strings.Contains(string(df), "RUN "+run+"\n") {
			t.Errorf("Dockerfile lacks RUN %q:\n%s", run, df)
		}
	}
	// amber ls and cat show the same layout without mounting.
	ls := mustAmber(t, "ls", arch, "containers/amber-ctr-m")
	for _, want := range []string{"rootfs", "pristine", "changes", "inspect.json", "changes.txt", "memory", "logs"} {
		if !strings.Contains(ls, want) {
			t.Errorf("amber ls containers/amber-ctr-m lacks %s:\n%s", want, ls)
		}
	}
	// changes/ is the container's own layer, the artifact's last.
	for p, l := range lsLayers(t, arch, "containers/amber-ctr-m/changes") {
		if l != len(ca.Layers)-1 {
			t.Errorf("ls --json containers/amber-ctr-m/changes: %s has layer %d, want %d", p, l, len(ca.Layers)-1)
		}
	}
	if c := mustAmber(t, "cat", arch, "containers/amber-ctr-m/rootfs/srv/data/creds"); c != "AKIAEXAMPLEKEZ\n" {
		t.Errorf("amber cat: %q", c)
	}
}

// TestCaptureWithoutProcAccess: a user who may talk to the engine but not
// read the container's processes gets exit 9 and no archive, not an
// archive of zeros; --no-memory works for them.
func TestCaptureWithoutProcAccess(t *testing.T) {
	testenv.Root(t)
	setpriv := testenv.Tool(t, "setpriv")
	id := testContainer(t, "amber-ctr-u")
	gid := strings.TrimSpace(testenv.Run(t, "stat", "-c", "%g", "/var/run/docker.sock"))
	dir, err := os.MkdirTemp("", "amber-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	bin := filepath.Join(dir, "amber")
	testenv.Run(t, "cp", amberBin, bin)
	os.Chmod(bin, 0o755)
	out := filepath.Join(dir, "u.tar.zst")
	run := func(args ...string) (int, string) {
		cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--groups=" + gid, "--inh-caps=-all", "--", bin}, args...)...)
		cmd.Dir = dir
		b, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(b)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(b)
	}
	code, msg := run("capture", "container", id, "-o", out)
	if code != exitProcAccess || !strings.Contains(msg, "--no-memory") {
		t.Errorf("non-root capture: exit %d\n%s", code, msg)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("an archive was left")
	}
	if code, msg := run("capture", "container", id, "--no-memory", "--route", "export", "-o", out); code != 0 {
		t.Errorf("non-root capture --no-memory --route export: exit %d\n%s", code, msg)
	}
	mustAmber(t, "verify", out)
}

// TestCaptureContainerExits: the container is killed during the capture;
// what still exists is captured (the filesystem stays until the container
// is removed), what was lost is recorded, the archive verifies.
func TestCaptureContainerExits(t *testing.T) {
	testenv.Root(t)
	dockerImage(t)
	name := "amber-ctr-x"
	exec.Command("docker", "rm", "-f", name).Run()
	id := strings.TrimSpace(testenv.Run(t, "docker", "run", "-d", "--name", name, "amber-test:1", "sh", "-c",
		`x=$(head -c 100000000 /dev/zero | tr '\0' a); echo data > /tmp/f; while :; do sleep 1; done`))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	for i := 0; i < 100; i++ {
		if exec.Command("docker", "exec", id, "test", "-f", "/tmp/f").Run() == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "x.tar.zst")
	cmd := exec.Command(amberBin, "capture", "container", name, "-o", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	testenv.Run(t, "docker", "kill", id)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("capture of a container killed mid-capture: %v\n%s", err, stderr.String())
	}
	mustAmber(t, "verify", out)
	m := readManifest(t, out)
	a, _ := m.Artifact(manifest.KindContainer, name)
	lost := 0
	for _, p := range a.Container.Processes {
		if p.Lost != "" {
			lost++
		}
	}
	t.Logf("%d processes, %d with losses recorded", len(a.Container.Processes), lost)
	c := mustAmber(t, "cat", out, "containers/"+name+"/rootfs/tmp/f")
	if c != "data\n" {
		t.Errorf("the filesystem of the killed container: %q", c)
	}
}

// TestCaptureRemoteEngine: an engine reached over TCP (here a proxy to the
// local socket) is not local: the filesystem goes through the export
// stream, memory is skipped with a clear reason, and the tree equals the
// upper directory's.
func TestCaptureRemoteEngine(t *testing.T) {
	testenv.Root(t)
	id := testContainer(t, "amber-ctr-r")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("unix", "/var/run/docker.sock")
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	dir := t.TempDir()
	remote, local := filepath.Join(dir, "remote.tar.zst"), filepath.Join(dir, "local.tar.zst")
	cmd := exec.Command(amberBin, "capture", "container", id, "-o", remote)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=tcp://"+ln.Addr().String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("capture through tcp: %v\n%s", err, out)
	}
	mustAmber(t, "capture", "container", id, "--no-memory", "-o", local)
	// An error after the pause (the upper directory asked of a remote
	// engine): exit 11, and the container is running again.
	cmd = exec.Command(amberBin, "capture", "container", id, "--pause", "--route", "upperdir", "-o", filepath.Join(dir, "err.tar.zst"))
	cmd.Env = append(os.Environ(), "DOCKER_HOST=tcp://"+ln.Addr().String())
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitNotLocal {
		t.Errorf("--route upperdir on a remote engine: %v\n%s", err, out)
	}
	if st := strings.TrimSpace(testenv.Run(t, "docker", "inspect", "--format", "{{.State.Status}}", id)); st != "running" {
		t.Errorf("after a failed --pause capture the container is %s", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "err.tar.zst")); err == nil {
		t.Error("a failed capture left an archive")
	}
	m := readManifest(t, remote)
	a, _ := m.Artifact(manifest.KindContainer, "amber-ctr-r")
	if a == nil || a.Container.Route != "export" || !strings.Contains(a.Container.MemorySkipped, "not on this host") || m.Acquisition.Docker.Local {
		t.Fatalf("remote capture: %+v %+v", a.Container, m.Acquisition.Docker)
	}
	none := func(string) bool { return false }
	rr, rl := unpack(t, remote, "amber-ctr-r"), unpack(t, local, "amber-ctr-r")
	if got, want := secondsListing(t, filepath.Join(rr, "bundle/rootfs"), none), secondsListing(t, filepath.Join(rl, "bundle/rootfs"), none); got != want {
		t.Errorf("remote and local captures differ:\n%s", lineDiff(want, got))
	}
}
