package main

import (
	"encoding/json"
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

// A Dockerfile with every instruction the reconstruction covers.
const richDockerfile = `FROM amber-test-base:1
ARG VERSION=1.2
ENV APP_HOME=/srv/app MODE=prod
LABEL org.example.team="forensics" stage=test
WORKDIR /srv/app
COPY hello.txt /srv/app/hello.txt
ADD data.tar /srv/data/
RUN echo "version $VERSION" > /srv/app/version
SHELL ["/bin/sh", "-c"]
EXPOSE 8080/tcp 53/udp
VOLUME /srv/state
USER 1000:1000
HEALTHCHECK --interval=30s --timeout=3s CMD test -f /srv/app/version
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app/version"]
`

var (
	richOnce sync.Once
	richErr  error
)

// richImage builds amber-test-rich:1 from richDockerfile, once.
func richImage(t *testing.T) {
	t.Helper()
	dockerImage(t) // the base
	richOnce.Do(func() {
		dir, err := os.MkdirTemp("", "amber-rich")
		if err != nil {
			richErr = err
			return
		}
		defer os.RemoveAll(dir)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(richDockerfile), 0o644)
		os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644)
		os.MkdirAll(filepath.Join(dir, "d"), 0o755)
		os.WriteFile(filepath.Join(dir, "d/x"), []byte("x\n"), 0o644)
		if out, err := exec.Command("tar", "-C", filepath.Join(dir, "d"), "-cf", filepath.Join(dir, "data.tar"), ".").CombinedOutput(); err != nil {
			richErr = err
			t.Log(string(out))
			return
		}
		if out, err := exec.Command("docker", "build", "-q", "--build-arg", "VERSION=7", "-t", "amber-test-rich:1", dir).CombinedOutput(); err != nil {
			richErr = err
			t.Log(string(out))
		}
	})
	if richErr != nil {
		t.Fatal(richErr)
	}
}

// TestDockerfileReconstruction: an image built from a known Dockerfile on
// the real engine; amber dockerfile gives back each instruction.
func TestDockerfileReconstruction(t *testing.T) {
	richImage(t)
	dir := t.TempDir()
	arch := filepath.Join(dir, "rich.tar.zst")
	mustAmber(t, "capture", "image", "amber-test-rich:1", "-o", arch)
	df := mustAmber(t, "dockerfile", arch, "images/amber-test-rich_1")
	for _, want := range []string{
		"FROM scratch", "ARG VERSION=1.2", "ENV APP_HOME=/srv/app MODE=prod", "WORKDIR /srv/app",
		"COPY file:", " /srv/app/hello.txt", "ADD file:", " /srv/data/", `RUN echo "version $VERSION" > /srv/app/version`,
		"built with ARG VERSION=7", `SHELL [/bin/sh -c]`, "EXPOSE 53/udp 8080/tcp", "VOLUME [/srv/state]", "USER 1000:1000",
		"HEALTHCHECK", "STOPSIGNAL SIGQUIT", `ENTRYPOINT ["/bin/sh" "-c"]`, `CMD ["cat /srv/app/version"]`, "LABEL ",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, df)
		}
	}
	// The history's created_by lines are those docker history shows.
	hist := mustAmber(t, "history", arch)
	for _, by := range strings.Split(strings.TrimSpace(testenv.Run(t, "docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", "amber-test-rich:1")), "\n") {
		if !strings.Contains(hist, by) {
			t.Errorf("history lacks %q", by)
		}
	}
	var in struct {
		Env         []string
		User        string
		Ports       []string
		Volumes     []string
		Stopsignal  string
		Labels      map[string]string
		Healthcheck struct{ Test []string }
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "inspect", "--json", arch)), &in); err != nil {
		t.Fatal(err)
	}
	if in.User != "1000:1000" || strings.Join(in.Ports, " ") != "53/udp 8080/tcp" || in.Volumes[0] != "/srv/state" || in.Stopsignal != "SIGQUIT" ||
		in.Labels["org.example.team"] != "forensics" || len(in.Healthcheck.Test) == 0 || !strings.Contains(strings.Join(in.Env, " "), "MODE=prod") {
		t.Errorf("inspect: %+v", in)
	}
	// The same from the plain docker-save tarball, without capturing.
	save := filepath.Join(dir, "rich.tar")
	testenv.Run(t, "docker", "save", "-o", save, "amber-test-rich:1")
	if df2 := mustAmber(t, "dockerfile", save); df2 != df {
		t.Errorf("dockerfile of the docker-save tarball differs from the archive's")
	}
}

// TestTimelineMactime: the body file of an image with hostile names is
// read by The Sleuth Kit's mactime, every row shown.
func TestTimelineMactime(t *testing.T) {
	mactime := testenv.Tool(t, "mactime")
	dir := t.TempDir()
	t0 := fixture.Epoch
	img := fixture.Image{Tags: []string{"names:1"}, Layers: [][]byte{fixture.Layer(
		fixture.Entry{Name: "etc/", Type: '5', Mode: 0o755, ModTime: t0},
		fixture.Entry{Name: "etc/pipe|name", Body: "p", ModTime: t0.Add(time.Hour)},
		fixture.Entry{Name: "etc/per%cent", Body: "c", ModTime: t0.Add(2 * time.Hour)},
		fixture.Entry{Name: "etc/new\nline", Body: "n", ModTime: t0.Add(3 * time.Hour)},
		fixture.Entry{Name: "etc/bad\xffbyte", Body: "b", ModTime: t0.Add(4 * time.Hour)},
		fixture.Entry{Name: "etc/suid", Body: "s", Mode: 0o4755, ModTime: t0.Add(5 * time.Hour)},
		fixture.Entry{Name: "etc/link", Type: '2', Link: "../target", ModTime: t0.Add(6 * time.Hour)},
	)}}
	arch := fixture.Capture(t, dir, "names", img)
	body := filepath.Join(dir, "body")
	out := mustAmber(t, "timeline", arch)
	os.WriteFile(body, []byte(out), 0o644)
	if n := strings.Count(out, "\n"); n < 7+1 {
		t.Fatalf("%d rows:\n%s", n, out)
	}
	for _, want := range []string{
		"0|images/names_1/layers/0/etc/pipe%7Cname|", "|r/rrw-r--r--|", "etc/per%25cent|", `etc/new\nline|`, "etc/bad\xffbyte|",
		"etc/suid|", "|r/rrwsr-xr-x|", "etc/link -> ../target|", "|l/lrwxrwxrwx|", "|d/drwxr-xr-x|", "custody: acquisition-started",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("body file lacks %q:\n%s", want, out)
		}
	}
	res, err := exec.Command(mactime, "-b", body, "-d", "-z", "UTC").CombinedOutput()
	if err != nil {
		t.Fatalf("mactime: %v\n%s", err, res)
	}
	m := string(res)
	// One row per time: the hostile names each at their own hour.
	// mactime decodes %XX: | and % come back as themselves.
	for i, name := range []string{"etc/pipe|name", "etc/per%cent", `etc/new\nline`, "etc/bad\xffbyte", "etc/suid", "etc/link -> ../target"} {
		when := t0.Add(time.Duration(i+1) * time.Hour).Format("Mon Jan 02 2006 15:04:05")
		found := false
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, when) && strings.Contains(l, name) && strings.Contains(l, "m") {
				found = true
			}
		}
		if !found {
			t.Errorf("mactime shows no %s row for %q:\n%s", when, name, m)
		}
	}
	if !strings.Contains(m, "custody: sealing") {
		t.Errorf("mactime lacks the custody rows:\n%s", m)
	}
}

// TestDiffAgainstDockerDiff: for a changed container, amber diff lists
// every path docker diff lists, with the same letter, and the
// content-only change docker diff misses.
func TestDiffAgainstDockerDiff(t *testing.T) {
	testenv.Root(t)
	id := testContainer(t, "amber-ctr-d")
	dd := testenv.Run(t, "docker", "diff", id)
	dir := t.TempDir()
	arch := filepath.Join(dir, "d.tar.zst")
	mustAmber(t, "capture", "container", id, "--no-memory", "-o", arch)
	out := mustAmber(t, "diff", arch, "containers/amber-ctr-d")
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		kind, rest, _ := strings.Cut(l, " ")
		p, _, _ := strings.Cut(rest, "  [")
		got[p] = kind
	}
	for _, l := range strings.Split(strings.TrimSpace(dd), "\n") {
		kind, p, _ := strings.Cut(l, " ")
		if strings.HasPrefix(p, "/srv/new") || l == "line2" {
			continue // docker prints the newline raw; amber quotes the name
		}
		if got[p] != kind {
			t.Errorf("docker diff says %s %s, amber diff %q", kind, p, got[p])
		}
	}
	if got[`"/srv/new\nline2"`] != "A" { // quoted as changes.txt has it
		t.Errorf("the newline name: %q", got)
	}
	if !strings.Contains(out, "C "+contentOnly+"  [content]\n") {
		t.Errorf("amber diff lacks the content-only change:\n%s", out)
	}
	if strings.Contains(dd, contentOnly) {
		t.Logf("this engine's docker diff lists %s too", contentOnly)
	}
	if !strings.Contains(out, "C /srv/data  [children]\n") {
		t.Errorf("a directory changed only below is not marked [children]:\n%s", out)
	}
	// Filters and JSON.
	f := mustAmber(t, "diff", arch, "containers/amber-ctr-d", "--path", "/srv", "--kinds", "D")
	if strings.TrimSpace(f) != "D /srv/name with space" {
		t.Errorf("--path /srv --kinds D: %q", f)
	}
	if f := mustAmber(t, "diff", arch, "containers/amber-ctr-d", "--ignore", "mtime", "--path", "/tmp"); f != "" {
		t.Errorf("--ignore mtime still lists /tmp: %q", f)
	}
	var ch struct {
		Kind     string
		Path     string
		What     []string
		Old, New struct{ SHA256 string }
	}
	for _, l := range strings.Split(mustAmber(t, "diff", "--json", arch, "containers/amber-ctr-d/pristine", "containers/amber-ctr-d/rootfs"), "\n") {
		if strings.Contains(l, `"path":"`+contentOnly+`"`) {
			if err := json.Unmarshal([]byte(l), &ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ch.Kind != "C" || len(ch.What) != 1 || ch.Old.SHA256 == ch.New.SHA256 || ch.New.SHA256 == "" {
		t.Errorf("JSON of the content-only change: %+v", ch)
	}
	c := mustAmber(t, "diff", "--content", "--path", contentOnly, arch, "containers/amber-ctr-d")
	if !strings.Contains(c, "-AKIAEXAMPLEKEY") || !strings.Contains(c, "+AKIAEXAMPLEKEZ") {
		t.Errorf("--content:\n%s", c)
	}
	// extract as recorded, then diff the archive's view against the local
	// copy: equal (modes, owners, times, links, content); one local change
	// is found.
	local := t.TempDir()
	mustAmber(t, "extract", "--preserve-all", arch, "containers/amber-ctr-d/rootfs", local)
	if d := mustAmber(t, "diff", arch+":containers/amber-ctr-d/rootfs", filepath.Join(local, "rootfs")); d != "" {
		t.Errorf("extracted tree differs from the archive:\n%s", d)
	}
	os.WriteFile(filepath.Join(local, "rootfs/etc/passwd"), []byte("toor:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.Chtimes(filepath.Join(local, "rootfs/etc/passwd"), time.Unix(0, 0), time.Unix(0, 0))
	if d := mustAmber(t, "diff", "--ignore", "mtime", arch+":containers/amber-ctr-d/rootfs", "dir:"+filepath.Join(local, "rootfs")); d != "C /etc  [children]\nC /etc/passwd  [content]\n" {
		t.Errorf("diff against a changed local tree: %q", d)
	}
	if r := amber(t, "diff", arch, "containers/nope"); r.code != exitNotFound {
		t.Errorf("unknown container: exit %d %s", r.code, r.stderr)
	}
	if r := amber(t, "diff", arch, "bogus:x", "y"); r.code != exitUsage {
		t.Errorf("malformed reference: exit %d %s", r.code, r.stderr)
	}
}

// TestExtractHostile: a layer whose names climb out of the tree, are
// absolute, or go through symlinks pointing outside is extracted: every
// file lands inside DEST, links are created and never followed, and
// nothing appears anywhere else.
func TestExtractHostile(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	os.Mkdir(outside, 0o755)
	img := fixture.Image{Tags: []string{"hostile:1"}, Layers: [][]byte{fixture.Layer(
		fixture.Entry{Name: "../escape", Body: "up\n", Raw: true},
		fixture.Entry{Name: "/abs-file", Body: "abs\n", Raw: true},
		fixture.Entry{Name: "lnk", Type: '2', Link: outside, Raw: true},
		fixture.Entry{Name: "lnk/evil", Body: "through the link\n", Raw: true},
		fixture.Entry{Name: "up", Type: '2', Link: "../../../../../../" + outside, Raw: true},
		fixture.Entry{Name: "up/pwned", Body: "x\n", Raw: true},
		fixture.Entry{Name: "ok/", Type: '5', Mode: 0o755, Raw: true},
		fixture.Entry{Name: "ok/file", Body: "fine\n", Mode: 0o4755, Raw: true},
	)}}
	arch := fixture.Capture(t, dir, "hostile", img)
	dest := filepath.Join(dir, "dest")
	os.Mkdir(dest, 0o755)
	r := amber(t, "extract", arch, "images/hostile_1/rootfs", dest)
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("extraction wrote outside DEST: %v", ents)
	}
	known := map[string]bool{"outside": true, "dest": true, "hostile.src.tar": true, "hostile.tar.zst": true, "hostile.tar.zst.sha256": true, "hostile.tar.zst.custody.jsonl": true}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !known[e.Name()] {
			t.Errorf("extraction wrote %s beside DEST", e.Name())
		}
	}
	for _, p := range []string{filepath.Join(dir, "escape"), "/abs-file", "/escape", filepath.Join(filepath.Dir(dir), "escape")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	if r.code == 0 {
		got := testenv.Run(t, "find", filepath.Join(dest, "rootfs"), "-printf", `%y %P %l\n`)
		if !strings.Contains(got, "f ok/file") || !strings.Contains(got, "l lnk "+outside) {
			t.Errorf("extracted tree:\n%s", got)
		}
		// The setuid bit is dropped (TestExtractDropsPrivileges), the rest kept.
		if st, err := os.Stat(filepath.Join(dest, "rootfs/ok/file")); err != nil || st.Mode() != 0o755 {
			t.Errorf("mode: %v %v, want -rwxr-xr-x", st.Mode(), err)
		}
	}
	// The whole rootfs again: refused without --force (exit 12), done with it.
	if r := amber(t, "extract", arch, "images/hostile_1/rootfs/ok", dest); r.code != 0 {
		t.Fatalf("extract ok/: %d %s", r.code, r.stderr)
	}
	if r := amber(t, "extract", arch, "images/hostile_1/rootfs/ok", dest); r.code != exitExists {
		t.Errorf("second extract without --force: exit %d %s", r.code, r.stderr)
	}
	mustAmber(t, "extract", "--force", arch, "images/hostile_1/rootfs/ok", dest)
	if b, _ := os.ReadFile(filepath.Join(dest, "ok/file")); string(b) != "fine\n" {
		t.Errorf("ok/file: %q", b)
	}
	// A file to a new name (docker cp's DEST that does not exist).
	mustAmber(t, "extract", arch, "images/hostile_1/rootfs/ok/file", filepath.Join(dest, "renamed"))
	if b, _ := os.ReadFile(filepath.Join(dest, "renamed")); string(b) != "fine\n" {
		t.Errorf("renamed: %q", b)
	}
	if log := mustAmber(t, "log", arch); !strings.Contains(log, "extracted") {
		t.Errorf("custody log lacks the extraction:\n%s", log)
	}
}
