package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// These tests run the amber binary as a user would and check its output
// with independent tools: docker, GNU tar, zstd, sha256sum, umoci, skopeo.

var amberBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "amber-e2e")
	if err != nil {
		panic(err)
	}
	amberBin = filepath.Join(dir, "amber")
	build := []string{"build", "-o", amberBin}
	// Under go test -cover the binary the tests run is covered too, over
	// every amber package it links, and each run of it writes its counters
	// where this test binary writes its own (-test.gocoverdir, which make
	// cover names), for go tool covdata to merge: the coverage of the
	// program, not only of the code the tests call in process. GOCOVERDIR
	// is set for that: go test sets it to a directory of its own, not to
	// the one -test.gocoverdir names, and drops what else lands there.
	flag.Parse()
	if f := flag.Lookup("test.gocoverdir"); testing.CoverMode() != "" && f != nil && f.Value.String() != "" {
		covdir, err := filepath.Abs(f.Value.String())
		if err != nil {
			panic(err)
		}
		build = append(build, "-cover", "-covermode="+testing.CoverMode(), "-coverpkg=github.com/amber-forensics/amber/...")
		os.Setenv("GOCOVERDIR", covdir)
	}
	if out, err := exec.Command("go", append(build, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building amber: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if imageTar != "" {
		// The test image's build directory, made once per run.
		os.RemoveAll(filepath.Dir(imageTar))
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func amber(t testing.TB, args ...string) result {
	t.Helper()
	cmd := exec.Command(amberBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, o.String(), e.String()}
}

func mustAmber(t testing.TB, args ...string) string {
	t.Helper()
	r := amber(t, args...)
	if r.code != 0 {
		t.Fatalf("amber %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

const testDockerfile = `FROM amber-test-base:1
RUN mkdir -p /srv/data /opt/replaced && echo original > /srv/data/a.txt && echo doomed > /srv/doomed \
 && echo x > /opt/replaced/old && printf x > '/srv/name with space' && printf n > "/srv/$(printf 'new\nline')" \
 && printf u > "/srv/$(printf 'bad\377byte')" && cp /bin/busybox /srv/suid && chmod 4755 /srv/suid \
 && ln /srv/data/a.txt /srv/data/hard && ln -s ../data/a.txt /srv/link && echo 'AKIAEXAMPLEKEY' > /srv/data/creds
RUN rm /srv/doomed && rm -rf /opt/replaced && mkdir /opt/replaced && echo new > /opt/replaced/new
`

var (
	imageOnce sync.Once
	imageErr  error
	imageTar  string
)

// dockerImage builds the test image on the engine (from busybox-static,
// no registry) and saves it with docker save, once per run.
func dockerImage(t *testing.T) string {
	t.Helper()
	testenv.Docker(t)
	busybox := testenv.Tool(t, "busybox")
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "amber-image")
		if err != nil {
			imageErr = err
			return
		}
		imageTar, imageErr = testenv.BusyboxImage(busybox, dir, "amber-test-base:1", "amber-test:1", testDockerfile, true)
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageTar
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type lsLine struct {
	Path   string   `json:"path"`
	Path64 []byte   `json:"path_base64"`
	Type   string   `json:"type"`
	SHA256 string   `json:"sha256"`
	Link   string   `json:"link"`
	Perm   string   `json:"perm"`
	Flags  []string `json:"flags"`
}

func lsJSON(t *testing.T, args ...string) []lsLine {
	t.Helper()
	out := mustAmber(t, append([]string{"ls", "--json"}, args...)...)
	var ls []lsLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l lsLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("ls --json line %q: %v", sc.Text(), err)
		}
		if l.Path64 != nil {
			l.Path = string(l.Path64)
		}
		ls = append(ls, l)
	}
	return ls
}

// TestDockerSaveRoundTrip is the main acceptance test: a real image from the
// engine, captured, then read back with standard tools only.
func TestDockerSaveRoundTrip(t *testing.T) {
	src := dockerImage(t)
	for _, tool := range []string{"zstd", "tar", "sha256sum", "umoci", "skopeo"} {
		testenv.Tool(t, tool)
	}
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	out := mustAmber(t, "capture", "image", src, "-o", arch, "--case", "2026-041", "--exhibit", "E1", "--examiner", "J. Doe", "--notes", "test", "--md5", "--sha1")
	if !strings.Contains(out, "images/amber-test_1: 3 layers") {
		t.Fatalf("capture output:\n%s", out)
	}
	// Sidecars are accepted by the standard tools, in the archive's folder.
	for _, s := range []string{"sha256sum", "md5sum", "sha1sum"} {
		ext := map[string]string{"sha256sum": ".sha256", "md5sum": ".md5", "sha1sum": ".sha1"}[s]
		cmd := exec.Command(s, "-c", "--strict", filepath.Base(arch)+ext)
		cmd.Dir = dir
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s -c: %v %s", s, err, o)
		}
	}
	if v := mustAmber(t, "verify", arch); !strings.HasPrefix(v, "OK ") {
		t.Fatalf("verify:\n%s", v)
	}
	// Standard tools read it.
	x := filepath.Join(dir, "x")
	os.Mkdir(x, 0o755)
	testenv.Shell(t, fmt.Sprintf("zstd -dc %q | tar -x -C %q", arch, x))
	idx := testenv.Run(t, "umoci", "ls", "--layout", x)
	if strings.TrimSpace(idx) != "amber-test_1" {
		t.Fatalf("umoci ls: %q", idx)
	}
	insp := testenv.Run(t, "skopeo", "inspect", "--config", "oci:"+x+":amber-test_1")
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal([]byte(insp), &cfg); err != nil || len(cfg.RootFS.DiffIDs) != 3 {
		t.Fatalf("skopeo inspect --config: %v %s", err, insp)
	}
	// Each layer blob's sha256 is the config's diff_id, and each file's
	// SHA-256 in the index is sha256sum of what GNU tar extracts.
	for i, d := range cfg.RootFS.DiffIDs {
		blob := filepath.Join(x, "blobs/sha256", strings.TrimPrefix(d, "sha256:"))
		got := strings.Fields(testenv.Run(t, "sha256sum", blob))[0]
		if "sha256:"+got != d {
			t.Errorf("layer %d: sha256sum %s, diff_id %s", i, got, d)
		}
		ex := filepath.Join(dir, fmt.Sprintf("layer%d", i))
		os.Mkdir(ex, 0o755)
		testenv.Run(t, "tar", "-x", "-f", blob, "-C", ex)
		checked := 0
		for _, l := range lsJSON(t, "-r", arch, fmt.Sprintf("images/amber-test_1/layers/%d", i)) {
			if l.Type != "file" {
				continue
			}
			if got := sha256File(t, filepath.Join(ex, l.Path)); got != l.SHA256 {
				t.Errorf("layer %d %q: index %s, sha256sum %s", i, l.Path, l.SHA256, got)
			}
			checked++
		}
		if checked == 0 {
			t.Errorf("layer %d: no files checked", i)
		}
	}
	// The rootfs unpacked by umoci is checked by sha256sum -c --strict with
	// amber's listing: names with spaces, newlines and bad UTF-8 included.
	bundle := filepath.Join(dir, "bundle")
	testenv.Run(t, "umoci", "unpack", "--image", x+":amber-test_1", bundle)
	sums := mustAmber(t, "ls", "--sha256sum", arch, "images/amber-test_1/rootfs")
	os.WriteFile(filepath.Join(dir, "rootfs.sha256"), []byte(sums), 0o644)
	cmd := exec.Command("sha256sum", "-c", "--strict", "--quiet", filepath.Join(dir, "rootfs.sha256"))
	cmd.Dir = filepath.Join(bundle, "rootfs")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c on umoci's rootfs: %v\n%s", err, o)
	}
	// Every regular file umoci unpacked is in the listing.
	n := 0
	filepath.WalkDir(filepath.Join(bundle, "rootfs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if got := strings.Count(sums, "\n"); got != n {
		t.Errorf("amber lists %d files, umoci unpacked %d", got, n)
	}
	for _, must := range []string{"srv/data/a.txt", "srv/suid", `srv/new\nline`, "srv/name with space", "opt/replaced/new"} {
		if !strings.Contains(sums, must) {
			t.Errorf("sha256sum listing lacks %q", must)
		}
	}
	if strings.Contains(sums, "srv/doomed") || strings.Contains(sums, "opt/replaced/old") {
		t.Errorf("deleted files listed in rootfs:\n%s", sums)
	}
	// cat is the file, byte for byte.
	if got := mustAmber(t, "cat", arch, "images/amber-test_1/rootfs/srv/data/creds"); got != "AKIAEXAMPLEKEY\n" {
		t.Errorf("cat creds = %q", got)
	}
	if got := mustAmber(t, "cat", arch, "images/amber-test_1/stages/1/srv/doomed"); got != "doomed\n" {
		t.Errorf("cat stages/1/srv/doomed = %q", got)
	}
	suid := lsJSON(t, arch, "images/amber-test_1/rootfs/srv/suid")
	if len(suid) != 1 || suid[0].Perm != "4755" {
		t.Errorf("setuid lost: %+v", suid)
	}
	// The custody log: sealed events, then sealed + verified in the sidecar.
	log := mustAmber(t, "log", arch)
	for _, ev := range []string{"acquisition-started", "captured", "sealing", "sealed", "verified", "chain intact"} {
		if !strings.Contains(log, ev) {
			t.Errorf("log lacks %s:\n%s", ev, log)
		}
	}
	summary := mustAmber(t, "ls", arch)
	for _, s := range []string{"2026-041", "E1", "J. Doe", "layers/2"} {
		if !strings.Contains(summary, s) {
			t.Errorf("ls summary lacks %q:\n%s", s, summary)
		}
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "ok", fixture.Image{Tags: []string{"ok:1"}, Layers: [][]byte{fixture.Layer(fixture.File("etc/passwd", "root\n"))}})
	bad := filepath.Join(dir, "bad.tar.zst")
	b, _ := os.ReadFile(arch)
	b[len(b)/3] ^= 0x40
	os.WriteFile(bad, b, 0o644)
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not an archive"), 0o644)
	srcBad := filepath.Join(dir, "src.tar")
	os.WriteFile(srcBad, []byte("nope"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"verify", arch}, exitOK, ""},
		{[]string{}, exitOK, ""},
		{[]string{"verify"}, exitUsage, "argument"},
		{[]string{"ls", "--bogus", arch}, exitUsage, "unknown flag"},
		{[]string{"capture", "image", junk}, exitUsage, "-o"},
		{[]string{"verify", bad}, exitTampered, "FAIL"},
		{[]string{"cat", bad, "images/ok_1/rootfs/etc/passwd"}, exitTampered, ""},
		{[]string{"verify", junk}, exitUnreadable, "not an amber archive"},
		{[]string{"ls", filepath.Join(dir, "missing.tar.zst")}, exitNotFound, "no such file"},
		{[]string{"ls", arch, "images/ok_1/rootfs/nope"}, exitNotFound, "no such path"},
		{[]string{"cat", arch, "images/ok_1/rootfs/etc"}, exitError, "directory"},
		{[]string{"capture", "image", srcBad, "-o", filepath.Join(dir, "o.tar.zst")}, exitSource, ""},
	} {
		r := amber(t, c.args...)
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.msg) {
			t.Errorf("amber %s: exit %d, want %d with %q\n%s%s", strings.Join(c.args, " "), r.code, c.code, c.msg, r.stdout, r.stderr)
		}
	}
}

// bigSource writes a docker-save tarball large enough that capture takes
// a while.
func bigSource(t *testing.T, dir string) string {
	t.Helper()
	var es []fixture.Entry
	for i := 0; i < 40; i++ {
		b := make([]byte, 4<<20)
		for j := range b {
			b[j] = byte(j*i + j>>9)
		}
		es = append(es, fixture.File(fmt.Sprintf("f%02d", i), string(b)))
	}
	p := filepath.Join(dir, "big.tar")
	if err := fixture.DockerSave(p, fixture.Image{Tags: []string{"big:1"}, Layers: [][]byte{fixture.Layer(es...)}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSignals: kill -9 leaves nothing at the final name; SIGINT and SIGTERM
// remove the partial file and exit 130.
func TestSignals(t *testing.T) {
	dir := t.TempDir()
	src := bigSource(t, dir)
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL, syscall.SIGINT} {
		out := filepath.Join(dir, fmt.Sprintf("s%d.tar.zst", i))
		cmd := exec.Command(amberBin, "capture", "image", src, "-o", out)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the archive is being written (an unnamed file in
		// dir, open in the process), then signal.
		waitWriting(t, cmd.Process.Pid, dir)
		time.Sleep(time.Duration(i*15) * time.Millisecond)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if err == nil {
			// It finished first: then the archive is whole.
			if r := amber(t, "verify", "--no-log", out); r.code != 0 {
				t.Errorf("%v: finished archive does not verify", sig)
			}
			continue
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: %s exists after the capture was stopped", sig, filepath.Base(out))
		}
		// Nothing at any name, kill -9 included: the archive had none.
		if left, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("s%d.*", i))); len(left) > 0 {
			t.Errorf("%v: left behind: %v", sig, left)
		}
		if sig == syscall.SIGKILL {
			continue
		}
		if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
			t.Errorf("%v: exit %d, want %d", sig, code, exitInterrupted)
		}
	}
}

// waitWriting waits until process pid has an unnamed file of dir open
// (the archive being written), or 10 s.
func waitWriting(t *testing.T, pid int, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err == nil && strings.HasPrefix(l, dir+"/") && strings.HasSuffix(l, "(deleted)") {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestQuietWithoutTerminal(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "s.tar")
	fixture.DockerSave(src, fixture.Image{Tags: []string{"q:1"}, Layers: [][]byte{fixture.Layer(fixture.File("a", "b"))}})
	r := amber(t, "capture", "image", src, "-o", filepath.Join(dir, "q.tar.zst"), "--json")
	var res map[string]any
	if r.code != 0 || r.stderr != "" || json.Unmarshal([]byte(r.stdout), &res) != nil || res["sha256"] == nil {
		t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
}

// findListing lists a tree as find -printf does, for comparing the mount
// with docker export: type, mode, owner, size (not for directories), link
// target, mtime, path. skip names paths that the container runtime adds.
func findListing(t *testing.T, dir string, skip func(string) bool) string {
	t.Helper()
	out := testenv.Run(t, "find", dir, "-mindepth", "1", "-printf", `%y|%m|%U|%G|%s|%l|%T@|%P\n`)
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(l, "|", 8)
		if len(f) < 8 || skip(f[7]) {
			continue
		}
		if f[0] == "d" {
			f[4] = "-" // directory sizes are the file system's, not the image's
		}
		keep = append(keep, strings.Join(f, "|"))
	}
	sort.Strings(keep)
	return strings.Join(keep, "\n")
}

// runtimePaths are created in every container by the engine (the init
// layer and mount points): not part of the image.
func runtimePaths(p string) bool {
	for _, s := range []string{".dockerenv", "dev", "proc", "sys", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"} {
		if p == s || strings.HasPrefix(p, s+"/") {
			return true
		}
	}
	return false
}

// dockerExport extracts `docker export` of a new container of image into a
// directory, as root so that owners are kept.
func dockerExport(t *testing.T, image string) string {
	t.Helper()
	id := strings.TrimSpace(testenv.Run(t, "docker", "create", image, "/bin/true"))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	dir := t.TempDir()
	testenv.Shell(t, fmt.Sprintf("docker export %s | tar -x -C %q --numeric-owner", id, dir))
	return dir
}

// TestMountMatchesDockerExport compares the mounted views with independent
// reconstructions by the engine: a fresh container of the image for
// images/<name>/rootfs, and of each intermediate build image (the legacy
// builder's parent chain) for stages/<N>.
func TestMountMatchesDockerExport(t *testing.T) {
	src := dockerImage(t)
	testenv.FUSE(t)
	testenv.Root(t) // docker export keeps owners only when extracted as root
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	mustAmber(t, "capture", "image", src, "-o", arch)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	mustAmber(t, "mount", "--background", arch, mnt)
	t.Cleanup(func() { amber(t, "umount", mnt) })
	// The parent chain: amber-test:1, its parent, ... with their layer counts.
	image := "amber-test:1"
	for image != "" {
		n := len(strings.Fields(testenv.Run(t, "docker", "inspect", "--format", "{{range .RootFS.Layers}}{{.}} {{end}}", image)))
		view := filepath.Join(mnt, "images/amber-test_1/stages", fmt.Sprint(n-1))
		exported := dockerExport(t, image)
		got, want := findListing(t, view, func(string) bool { return false }), findListing(t, exported, runtimePaths)
		// The runtime's init layer also touches the mtimes of / and /etc.
		got, want = dropDirMtimes(got, "etc"), dropDirMtimes(want, "etc")
		if got != want {
			t.Errorf("stages/%d differs from docker export of %s:\n%s", n-1, image, lineDiff(want, got))
		}
		cmd := exec.Command("diff", "-r", "--no-dereference", "-x", ".dockerenv", "-x", "dev", "-x", "proc", "-x", "sys", "-x", "hostname", "-x", "hosts", "-x", "resolv.conf", "-x", "mtab", exported, view)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("diff -r --no-dereference export/%s stages/%d: %v\n%s", image, n-1, err, out)
		}
		if n == 3 {
			rootfs := findListing(t, filepath.Join(mnt, "images/amber-test_1/rootfs"), func(string) bool { return false })
			if dropDirMtimes(rootfs, "etc") != got {
				t.Error("rootfs differs from the last stage")
			}
		}
		image = strings.TrimSpace(testenv.Run(t, "docker", "inspect", "--format", "{{.Parent}}", image))
	}
}

func dropDirMtimes(listing string, dirs ...string) string {
	lines := strings.Split(listing, "\n")
	for i, l := range lines {
		f := strings.SplitN(l, "|", 8)
		if len(f) == 8 && f[0] == "d" {
			for _, d := range dirs {
				if f[7] == d {
					f[6] = "-"
					lines[i] = strings.Join(f, "|")
				}
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func lineDiff(want, got string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var b strings.Builder
	for l := range w {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for l := range g {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// TestMountLifecycle: --background returns once ready, umount ends it and
// both are in the custody log; SIGTERM unmounts and exits 0; after kill -9
// the stale mount point is refused with a clear message and amber umount
// clears it.
func TestMountLifecycle(t *testing.T) {
	testenv.FUSE(t)
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "wh", fixture.WhiteoutImage())
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	mustAmber(t, "mount", "--background", arch, mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "images/wh_1/rootfs/etc/shadow")); err != nil || string(b) != "new-shadow\n" {
		t.Fatalf("read through the background mount: %q %v", b, err)
	}
	if r := amber(t, "mount", arch, mnt); r.code != exitBusy || !strings.Contains(r.stderr, "already a mount point") {
		t.Errorf("second mount on the same point: exit %d %s", r.code, r.stderr)
	}
	mustAmber(t, "umount", mnt)
	time.Sleep(200 * time.Millisecond)
	log := mustAmber(t, "log", arch)
	if !strings.Contains(log, "mounted") || !strings.Contains(log, "unmounted") {
		t.Errorf("custody log lacks the mount:\n%s", log)
	}
	// Foreground, stopped by SIGTERM: exit 0, unmounted.
	cmd := exec.Command(amberBin, "mount", "--no-log", arch, mnt)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitMounted(t, mnt)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	if _, err := os.ReadDir(mnt); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
	// kill -9 leaves a dead mount; it is named as such, and cleared.
	cmd = exec.Command(amberBin, "mount", "--no-log", arch, mnt)
	cmd.Start()
	waitMounted(t, mnt)
	cmd.Process.Kill()
	killed := make(chan struct{})
	go func() { cmd.Wait(); close(killed) }()
	select {
	case <-killed:
	case <-time.After(10 * time.Second):
		// A mount process that touches its own mount can hang in the
		// kernel forever once killed: this must never happen.
		t.Fatal("the mount process did not die within 10 s of SIGKILL")
	}
	if r := amber(t, "mount", arch, mnt); r.code != exitBusy || !strings.Contains(r.stderr, "amber umount") {
		t.Errorf("mount on a stale mount point: exit %d %s", r.code, r.stderr)
	}
	mustAmber(t, "umount", mnt)
	mustAmber(t, "mount", "--background", "--no-log", arch, mnt)
	if _, err := os.Stat(filepath.Join(mnt, "manifest.json")); err != nil {
		t.Errorf("remount after a stale mount: %v", err)
	}
	mustAmber(t, "umount", mnt)
}

// mountArchive mounts arch at mnt (made if missing) in the background,
// without a custody event, until the test ends.
func mountArchive(t *testing.T, arch, mnt string, flags ...string) string {
	t.Helper()
	os.MkdirAll(mnt, 0o755)
	mustAmber(t, append(append([]string{"mount", "--background", "--no-log"}, flags...), arch, mnt)...)
	t.Cleanup(func() { amber(t, "umount", mnt) })
	return mnt
}

func waitMounted(t *testing.T, dir string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not get mounted", dir)
}

// TestMountPlainSources: a docker-save tarball (Docker 25+ layout) and an
// OCI layout directory mount directly, indexed at mount; the temporary
// index goes away with the mount.
func TestMountPlainSources(t *testing.T) {
	testenv.FUSE(t)
	for _, src := range []string{"webapp-docker25.tar", "webapp-oci-gzip", "webapp-docker-save.tar"} {
		tmp := t.TempDir()
		mnt := t.TempDir()
		cmd := exec.Command(amberBin, "mount", "--background", filepath.Join("..", "..", "testdata", "images", src), mnt)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", src, err, out)
		}
		b, err := os.ReadFile(filepath.Join(mnt, "images/webapp_v1/layers/1/srv/.aws/credentials"))
		if err != nil || !strings.Contains(string(b), "AKIAIOSFODNN7EXAMPLE") {
			t.Errorf("%s: layers/1 credential: %q %v", src, b, err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "images/webapp_v1/rootfs/srv/.aws")); !os.IsNotExist(err) {
			t.Errorf("%s: deleted directory visible in rootfs: %v", src, err)
		}
		mustAmber(t, "umount", mnt)
		for i := 0; i < 100; i++ {
			if ents, _ := os.ReadDir(tmp); len(ents) == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Errorf("%s: temporary index left behind: %v", src, ents)
		}
	}
}
