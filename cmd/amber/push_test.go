package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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

func mustAmberEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := amberIn(t, env, args...)
	if r.code != 0 {
		t.Fatalf("amber %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// curlReg fetches a registry path with curl (trusting the test CA, with
// the password): an oracle independent of go-containerregistry. It
// returns the HTTP status and the body.
func curlReg(t *testing.T, r *testenv.Registry, path string) (string, []byte) {
	t.Helper()
	curl := testenv.Tool(t, "curl")
	body := filepath.Join(t.TempDir(), "body")
	out, err := exec.Command(curl, "-s", "-o", body, "-w", "%{http_code}", "--cacert", r.CAFile, "-u", r.User+":"+r.Password,
		"-H", "Accept: application/vnd.oci.image.manifest.v1+json", r.URL()+path).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", path, err)
	}
	b, _ := os.ReadFile(body)
	return strings.TrimSpace(string(out)), b
}

type ociManifest struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Annotations  map[string]string `json:"annotations"`
	Config       struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
}

func readLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// custodyActions is the action of each event of a custody sidecar.
func custodyActions(t *testing.T, p string) []string {
	t.Helper()
	var acts []string
	for _, l := range readLines(t, p) {
		var e struct {
			Action  string            `json:"action"`
			Details map[string]string `json:"details"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%s: %q: %v", p, l, err)
		}
		acts = append(acts, e.Action)
	}
	return acts
}

// TestPushPull: an archive pushed to a registry (TLS, htpasswd) is there
// as an artifact whose first layer's digest is the .sha256 sidecar (the
// manifest fetched with curl); pulled back, the archive and its digest
// sidecars are byte for byte the pushed ones, it verifies, and the
// custody logs record pushed and pulled; ls of the repository lists both
// tags with their annotations; --custody pushes the newer custody log.
func TestPushPull(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch, "--case", "2026-041", "--exhibit", "E1", "--examiner", "J. Doe", "--md5", "--sha1")
	custodyBefore := readLines(t, arch+".custody.jsonl")
	dest := "docker://" + reg.Host + "/case-2026-041/e1:web"
	out := mustAmberEnv(t, env, "push", arch, dest)
	digest := strings.TrimSpace(out)
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("push printed %q, want the manifest digest", out)
	}

	code, raw := curlReg(t, reg, "/v2/case-2026-041/e1/manifests/web")
	if code != "200" {
		t.Fatalf("curl manifest: %s %s", code, raw)
	}
	if got := "sha256:" + sha256Bytes(raw); got != digest {
		t.Errorf("push printed %s, the registry's manifest hashes to %s", digest, got)
	}
	var m ociManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	side := strings.Fields(string(must(os.ReadFile(arch + ".sha256"))))[0]
	if len(m.Layers) != 5 || m.Layers[0].Digest != "sha256:"+side || m.Layers[0].MediaType != "application/vnd.amber.evidence.v1.tar+zstd" {
		t.Fatalf("manifest layers %+v; want the archive (sha256:%s) first, then 4 sidecars", m.Layers, side)
	}
	if m.ArtifactType != "application/vnd.amber.evidence.v1" || m.Annotations["vnd.amber.case"] != "2026-041" ||
		m.Annotations["vnd.amber.exhibit"] != "E1" || m.Annotations["vnd.amber.examiner"] != "J. Doe" || m.Annotations["vnd.amber.archive.sha256"] != side {
		t.Errorf("manifest: artifactType %q, annotations %v", m.ArtifactType, m.Annotations)
	}
	// The registry's blob is the file, byte for byte (curl again).
	if code, blob := curlReg(t, reg, "/v2/case-2026-041/e1/blobs/sha256:"+side); code != "200" || !bytes.Equal(blob, must(os.ReadFile(arch))) {
		t.Errorf("the registry's archive blob (%s, %d bytes) is not the archive", code, len(blob))
	}
	mustAmber(t, "verify", "--no-log", arch) // the pushed event keeps the local log's chain
	acts := custodyActions(t, arch+".custody.jsonl")
	if acts[len(acts)-1] != "pushed" || !strings.Contains(lastLine(t, arch+".custody.jsonl"), digest) {
		t.Errorf("local custody log ends %v, want a pushed event naming %s", acts, digest)
	}

	// What amber push put there, the lazy reader reads as the file (but
	// for the first line, which names where it reads).
	rest := func(s string) string { _, r, _ := strings.Cut(s, "\n"); return r }
	if got, want := mustAmberEnv(t, env, "ls", "--cache", t.TempDir(), dest), mustAmber(t, "ls", arch); rest(got) != rest(want) || rest(want) == "" {
		t.Errorf("ls of the pushed artifact:\n%s\nls of the file:\n%s", got, want)
	}

	pulled := filepath.Join(t.TempDir(), "e1.tar.zst")
	out = mustAmberEnv(t, env, "pull", dest, "-o", pulled)
	if !strings.HasPrefix(out, "OK ") {
		t.Errorf("pull: %s", out)
	}
	testenv.Run(t, "cmp", arch, pulled)
	for _, s := range []string{".sha256", ".md5", ".sha1"} {
		testenv.Run(t, "cmp", arch+s, pulled+s)
	}
	// The pulled log is the one pushed (the log before the push event)
	// and then the pull.
	got := readLines(t, pulled+".custody.jsonl")
	if len(got) != len(custodyBefore)+1 || strings.Join(got[:len(custodyBefore)], "\n") != strings.Join(custodyBefore, "\n") {
		t.Errorf("pulled custody log:\n%s\nwant the pushed one:\n%s\nand a pulled event", strings.Join(got, "\n"), strings.Join(custodyBefore, "\n"))
	}
	if a := custodyActions(t, pulled+".custody.jsonl"); a[len(a)-1] != "pulled" {
		t.Errorf("pulled custody log ends %v, want pulled", a)
	}
	mustAmber(t, "verify", pulled)

	// Pull never overwrites.
	if r := amberIn(t, env, "pull", dest, "-o", pulled); r.code != exitExists {
		t.Errorf("pull onto an existing file: exit %d, want %d\n%s", r.code, exitExists, r.stderr)
	}

	// --custody: a new manifest version with the log that now holds
	// "pushed"; the archive blob is the same.
	out = mustAmberEnv(t, env, "push", "--custody", arch, dest)
	if d2 := strings.TrimSpace(out); d2 == digest {
		t.Errorf("push --custody printed the old digest %s", d2)
	}
	again := filepath.Join(t.TempDir(), "e1.tar.zst")
	mustAmberEnv(t, env, "pull", dest, "-o", again)
	if a := custodyActions(t, again+".custody.jsonl"); len(a) != len(custodyBefore)+2 || a[len(a)-2] != "pushed" || a[len(a)-1] != "pulled" {
		t.Errorf("after push --custody, the pulled log is %v; want the log before the push, the first push, and the pull", a)
	}

	// --custody where the registry lacks the archive: refused (a HEAD,
	// no upload), no tag.
	if r := amberIn(t, env, "push", "--custody", arch, "docker://"+reg.Host+"/elsewhere/e1:web"); r.code != exitNotFound || !strings.Contains(r.stderr, "push the archive itself first") {
		t.Errorf("push --custody without the archive in the registry: exit %d, want %d\n%s", r.code, exitNotFound, r.stderr)
	}
	if code, _ := curlReg(t, reg, "/v2/elsewhere/e1/manifests/web"); code != "404" {
		t.Errorf("a refused push --custody left a tag (%s)", code)
	}

	// A second exhibit under another tag; ls lists the repository.
	arch2 := filepath.Join(dir, "db.tar.zst")
	captureWebapp(t, arch2, "--case", "2026-041", "--exhibit", "E2", "--examiner", "A. N. Other")
	mustAmberEnv(t, env, "push", arch2, "docker://"+reg.Host+"/case-2026-041/e1:db")
	ls := mustAmberEnv(t, env, "ls", "docker://"+reg.Host+"/case-2026-041/e1")
	t.Logf("ls:\n%s", ls)
	lines := strings.Split(strings.TrimSpace(ls), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "db\t") || !strings.Contains(lines[0], "exhibit=E2") || !strings.Contains(lines[0], `examiner="A. N. Other"`) ||
		!strings.HasPrefix(lines[1], "web\t") || !strings.Contains(lines[1], "exhibit=E1") || !strings.Contains(lines[1], "sha256="+side) ||
		!strings.Contains(lines[1], "case=2026-041") || !strings.Contains(lines[1], "created=20") {
		t.Errorf("ls of the repository:\n%s", ls)
	}
	var l struct {
		Tag, Exhibit, Created string
		SHA256                string `json:"archive_sha256"`
		Size                  int64
	}
	js := mustAmberEnv(t, env, "ls", "--json", "docker://"+reg.Host+"/case-2026-041/e1")
	if err := json.Unmarshal([]byte(strings.Split(js, "\n")[1]), &l); err != nil || l.Tag != "web" || l.SHA256 != side || l.Size != fileSize(t, arch) {
		t.Errorf("ls --json: %s (%v)", js, err)
	}

	// No such tag.
	if r := amberIn(t, env, "pull", "docker://"+reg.Host+"/case-2026-041/e1:nope", "-o", filepath.Join(dir, "x.tar.zst")); r.code != exitNotFound {
		t.Errorf("pull of a missing tag: exit %d, want %d\n%s", r.code, exitNotFound, r.stderr)
	}
}

// TestPushWrongPassword: a refused password exits with exitAuth, and the
// message names the registry and the user it refused.
func TestPushWrongPassword(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, "wrong-password")
	arch := filepath.Join(t.TempDir(), "case.tar.zst")
	captureWebapp(t, arch)
	for _, args := range [][]string{
		{"push", arch, "docker://" + reg.Host + "/case/e1:web"},
		{"pull", "docker://" + reg.Host + "/case/e1:web", "-o", arch + ".pulled"},
		{"ls", "docker://" + reg.Host + "/case/e1"},
	} {
		r := amberIn(t, env, args...)
		t.Logf("amber %s: exit %d: %s", args[0], r.code, r.stderr)
		if r.code != exitAuth || !strings.Contains(r.stderr, reg.Host) || !strings.Contains(r.stderr, `"examiner"`) {
			t.Errorf("amber %s with a wrong password: exit %d, want %d naming %s and the user\n%s", args[0], r.code, exitAuth, reg.Host, r.stderr)
		}
	}
	if _, err := os.Stat(arch + ".pulled"); err == nil {
		t.Error("a refused pull left a file")
	}
	if a := custodyActions(t, arch+".custody.jsonl"); a[len(a)-1] == "pushed" {
		t.Error("a refused push was recorded as pushed")
	}
}

// TestPushUnreachable: no registry at the address: a clear error.
func TestPushUnreachable(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	reg.Stop(syscall.SIGKILL)
	arch := filepath.Join(t.TempDir(), "case.tar.zst")
	captureWebapp(t, arch)
	r := amberIn(t, env, "push", arch, "docker://"+reg.Host+"/case/e1:web")
	t.Logf("exit %d: %s", r.code, r.stderr)
	if r.code != exitError || !strings.Contains(r.stderr, "registry unreachable") || !strings.Contains(r.stderr, reg.Host) {
		t.Errorf("push to a stopped registry: exit %d\n%s", r.code, r.stderr)
	}
}

// randomSource writes a docker-save tarball of incompressible files, so
// that its archive is about n bytes.
func randomSource(t *testing.T, dir string, n int) string {
	t.Helper()
	rnd := rand.New(rand.NewSource(1))
	var es []fixture.Entry
	const per = 16 << 20
	for i := 0; i*per < n; i++ {
		b := make([]byte, per)
		rnd.Read(b)
		es = append(es, fixture.File(fmt.Sprintf("r%02d", i), string(b)))
	}
	p := filepath.Join(dir, "random.tar")
	if err := fixture.DockerSave(p, fixture.Image{Tags: []string{"random:1"}, Layers: [][]byte{fixture.Layer(es...)}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPushRegistryKilled: the registry killed with SIGKILL while a large
// archive uploads: a clear error, and after the registry is back no tag
// (the manifest is pushed last).
func TestPushRegistryKilled(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	dir := t.TempDir()
	arch := filepath.Join(dir, "big.tar.zst")
	mustAmber(t, "capture", "image", randomSource(t, dir, 200<<20), "-o", arch)
	os.Remove(filepath.Join(dir, "random.tar"))
	cmd := exec.Command(amberBin, "push", arch, "docker://"+reg.Host+"/case/big:v1")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once some of the archive has reached the registry's upload
	// area.
	uploads := filepath.Join(reg.Dir, "storage", "docker", "registry", "v2", "repositories", "case", "big", "_uploads")
	killed := false
	for start := time.Now(); time.Since(start) < 60*time.Second && !killed; time.Sleep(5 * time.Millisecond) {
		ms, _ := filepath.Glob(filepath.Join(uploads, "*", "data"))
		for _, m := range ms {
			if st, err := os.Stat(m); err == nil && st.Size() > 8<<20 {
				reg.Stop(syscall.SIGKILL)
				killed = true
				break
			}
		}
	}
	err := cmd.Wait()
	t.Logf("push: %v: %s", err, stderr.String())
	if !killed {
		t.Fatalf("the upload was never seen in progress (push: %v)\n%s", err, stderr.String())
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError || !strings.Contains(stderr.String(), "registry unreachable") || !strings.Contains(stderr.String(), reg.Host) {
		t.Errorf("push with the registry killed: %v\n%s", err, stderr.String())
	}
	reg.Start(t)
	if code, body := curlReg(t, reg, "/v2/case/big/manifests/v1"); code != "404" {
		t.Errorf("after a killed push the tag answers %s: %s", code, body)
	}
	if a := custodyActions(t, arch+".custody.jsonl"); a[len(a)-1] == "pushed" {
		t.Error("a failed push was recorded as pushed")
	}
}

// TestPullAlteredBlob: a registry (a proxy in front of the real one) that
// serves the archive blob with one byte flipped: pull refuses with
// exitTampered and leaves nothing at -o, nor a temporary file.
func TestPullAlteredBlob(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	custody := sha256File(t, arch+".custody.jsonl") // as pushed: push then adds its event
	mustAmberEnv(t, env, "push", arch, "docker://"+reg.Host+"/case/e1:web")
	side := strings.Fields(string(must(os.ReadFile(arch + ".sha256"))))[0]

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(must(os.ReadFile(reg.CAFile)))
	target, _ := url.Parse(reg.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	var mu sync.Mutex
	flip := ""
	big, truncate := false, false
	proxy.ModifyResponse = func(resp *http.Response) error {
		mu.Lock()
		defer mu.Unlock()
		if big && resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/manifests/") {
			// A manifest of 5 MiB, its length not announced.
			resp.Body.Close()
			resp.Body = io.NopCloser(io.MultiReader(strings.NewReader(`{"schemaVersion":2,"annotations":{"x":"`), strings.NewReader(strings.Repeat("x", 5<<20)), strings.NewReader(`"}}`)))
			resp.ContentLength = -1
			resp.Header.Del("Content-Length")
			return nil
		}
		if resp.Request.Method == http.MethodGet && flip != "" && strings.HasSuffix(resp.Request.URL.Path, "/blobs/"+flip) {
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if truncate {
				b = b[:len(b)/2]
				resp.ContentLength = int64(len(b))
				resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
			} else {
				b[len(b)/2] ^= 1
			}
			resp.Body = io.NopCloser(bytes.NewReader(b))
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	penv := regEnv(t, &testenv.Registry{Host: host, User: reg.User, CAFile: reg.CAFile}, reg.Password)

	// Through the proxy unchanged, the pull works (the proxy itself is
	// sound) ...
	ok := filepath.Join(t.TempDir(), "ok.tar.zst")
	mustAmberEnv(t, penv, "pull", "--insecure", "docker://"+host+"/case/e1:web", "-o", ok)
	// ... and with the archive's or a sidecar's bytes changed it refuses.
	for _, d := range []string{"sha256:" + side, "sha256:" + custody} {
		mu.Lock()
		flip = d
		mu.Unlock()
		out := filepath.Join(t.TempDir(), "e1.tar.zst")
		r := amberIn(t, penv, "pull", "--insecure", "docker://"+host+"/case/e1:web", "-o", out)
		t.Logf("exit %d: %s", r.code, r.stderr)
		if r.code != exitTampered || !strings.Contains(r.stderr, d) {
			t.Errorf("pull of a changed blob %s: exit %d, want %d naming it\n%s", d, r.code, exitTampered, r.stderr)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*")); len(left) != 0 {
			t.Errorf("a refused pull left %v", left)
		}
	}
	// A truncated archive blob is refused too.
	mu.Lock()
	flip, truncate = "sha256:"+side, true
	mu.Unlock()
	trunc := filepath.Join(t.TempDir(), "e1.tar.zst")
	if r := amberIn(t, penv, "pull", "--insecure", "docker://"+host+"/case/e1:web", "-o", trunc); r.code != exitTampered {
		t.Errorf("pull of a truncated blob: exit %d, want %d\n%s", r.code, exitTampered, r.stderr)
	} else {
		t.Logf("truncated: %s", r.stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(trunc), "*")); len(left) != 0 {
		t.Errorf("a refused pull left %v", left)
	}
	// A manifest larger than 4 MiB is refused, not read whole.
	mu.Lock()
	flip, big = "", true
	mu.Unlock()
	out := filepath.Join(t.TempDir(), "e1.tar.zst")
	r := amberIn(t, penv, "pull", "--insecure", "docker://"+host+"/case/e1:web", "-o", out)
	t.Logf("exit %d: %s", r.code, r.stderr)
	if r.code != exitUnreadable || !strings.Contains(r.stderr, "manifest larger than") {
		t.Errorf("pull of a 5 MiB manifest: exit %d, want %d\n%s", r.code, exitUnreadable, r.stderr)
	}
}

// TestPushParallel: two archives pushed at once to one repository under
// distinct tags both pull back and verify.
func TestPushParallel(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	dir := t.TempDir()
	var archs []string
	for i, ex := range []string{"N1", "N2"} {
		a := filepath.Join(dir, fmt.Sprintf("node%d.tar.zst", i))
		captureWebapp(t, a, "--exhibit", ex)
		archs = append(archs, a)
	}
	var wg sync.WaitGroup
	res := make([]result, len(archs))
	for i, a := range archs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = amberIn(t, env, "push", "--json", a, fmt.Sprintf("docker://%s/case/fleet:node%d", reg.Host, i))
		}()
	}
	wg.Wait()
	for i, a := range archs {
		if res[i].code != 0 {
			t.Fatalf("parallel push %d: exit %d\n%s", i, res[i].code, res[i].stderr)
		}
		t.Logf("push --json: %s", res[i].stdout)
		var p struct{ Digest, SHA256, Tag string }
		if err := json.Unmarshal([]byte(res[i].stdout), &p); err != nil || p.SHA256 != sha256File(t, a) || p.Tag != fmt.Sprintf("node%d", i) {
			t.Errorf("push --json: %s (%v)", res[i].stdout, err)
		}
		if _, raw := curlReg(t, reg, fmt.Sprintf("/v2/case/fleet/manifests/node%d", i)); "sha256:"+sha256Bytes(raw) != p.Digest {
			t.Errorf("push --json digest %s is not the registry's manifest's", p.Digest)
		}
		out := filepath.Join(t.TempDir(), "p.tar.zst")
		mustAmberEnv(t, env, "pull", fmt.Sprintf("docker://%s/case/fleet:node%d", reg.Host, i), "-o", out)
		testenv.Run(t, "cmp", a, out)
		mustAmber(t, "verify", out)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func sha256Bytes(b []byte) string {
	f, err := os.CreateTemp("", "sum")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	f.Write(b)
	f.Close()
	out, err := exec.Command("sha256sum", f.Name()).Output()
	if err != nil {
		panic(err)
	}
	return strings.Fields(string(out))[0]
}

func lastLine(t *testing.T, p string) string {
	l := readLines(t, p)
	return l[len(l)-1]
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestPushDamaged: an archive damaged on disk whose .sha256 sidecar was
// made to match it (bit rot copied, or a forger) uploads — the registry
// checks the bytes against that digest only — but is verified while it
// uploads, and nothing is tagged; so is one with no sidecar (verified
// first).
func TestPushDamaged(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	b := must(os.ReadFile(arch))
	b[len(b)/3] ^= 0x40
	if err := os.WriteFile(arch, b, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(arch+".sha256", []byte(sha256Bytes(b)+"  case.tar.zst\n"), 0o600)
	r := amberIn(t, env, "push", arch, "docker://"+reg.Host+"/case/damaged:v1")
	if r.code != 3 || !strings.Contains(r.stderr, "nothing") {
		t.Errorf("push of a damaged archive: exit %d %s; want 3, nothing tagged", r.code, r.stderr)
	}
	if code, _ := curlReg(t, reg, "/v2/case/damaged/manifests/v1"); code != "404" {
		t.Errorf("the damaged archive was tagged: %s", code)
	}
	r = amberIn(t, env, "push", "--full", arch, "docker://"+reg.Host+"/case/damaged:v3")
	if r.code != 3 {
		t.Errorf("push --full of a damaged archive: exit %d %s; want 3", r.code, r.stderr)
	}
	os.Remove(arch + ".sha256")
	r = amberIn(t, env, "push", arch, "docker://"+reg.Host+"/case/damaged:v2")
	if r.code != 3 {
		t.Errorf("push of a damaged archive with no sidecar: exit %d %s; want 3", r.code, r.stderr)
	}
	if code, _ := curlReg(t, reg, "/v2/case/damaged/manifests/v2"); code != "404" {
		t.Errorf("the damaged archive was tagged: %s", code)
	}
}
