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
