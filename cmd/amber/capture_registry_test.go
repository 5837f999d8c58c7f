package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot"
)

// Capture straight into a registry (-o docker://REG/REPO:TAG) against a
// registry of the test's own (TLS, htpasswd).

// caTransport trusts r's certificate.
func caTransport(t *testing.T, r *testenv.Registry) http.RoundTripper {
	t.Helper()
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return tr
}

// envValue is the value of k in env.
func envValue(env []string, k string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v
		}
	}
	return ""
}

// TestCaptureToRegistry: the capture of a fixture tarball under a fixed
// clock and host, streamed into the registry, pulled back (amber pull)
// is byte for byte the same capture written to a local file; both
// verify; the tag's first layer is the archive's SHA-256; the pulled
// custody log records the push with a manifest digest.
func TestCaptureToRegistry(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	renv := regEnv(t, reg, reg.Password)
	t.Setenv("DOCKER_CONFIG", envValue(renv, "DOCKER_CONFIG"))
	src, err := filepath.Abs(filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar"))
	if err != nil {
		t.Fatal(err)
	}
	ref := "docker://" + reg.Host + "/case/e1:web"
	name := ArtifactFileName("case/e1", "web")
	fixed := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	host := snapshot.Host{Name: "evidence-host", OS: "linux/amd64", Kernel: "Linux", User: "examiner", UID: 1000, Dir: "/evidence"}
	request := func(out string) snapshot.Request {
		return snapshot.Request{
			Sources: []string{src}, Output: out, CommandLine: []string{"amber", "capture", "image", "webapp.tar", "-o", "X"},
			Case: manifest.Case{Case: "C-18", Exhibit: "E1", Examiner: "tester"},
			Tool: manifest.Tool{Name: "amber", Version: "test"}, Options: snapshot.Options{Encoder: fixture.Encoder()},
			Now: func() time.Time { return fixed }, Host: &host,
		}
	}
	local := filepath.Join(t.TempDir(), name)
	if _, err := snapshot.CaptureImageFiles(context.Background(), request(local)); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{ctx: context.Background(), stdout: &stdout, stderr: &stderr}
	o := &captureOptions{output: ref, json: true, transport: caTransport(t, reg)}
	req := request("")
	err = e.captureTo(o, &req.Output, &req.Options, func() (*snapshot.Result, error) {
		if req.Options.Stream == nil || filepath.Base(req.Output) != name {
			t.Errorf("captureTo gave output %q, stream %v", req.Output, req.Options.Stream)
		}
		return snapshot.CaptureImageFiles(context.Background(), req)
	})
	if err != nil {
		t.Fatalf("capture to %s: %v\n%s", ref, err, stderr.String())
	}
	var out struct {
		Archive  string `json:"archive"`
		SHA256   string `json:"sha256"`
		Registry struct {
			Digest string `json:"digest"`
		} `json:"registry"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if !strings.HasPrefix(out.Archive, "docker://") || out.Registry.Digest == "" {
		t.Errorf("capture --json: %s", stdout.String())
	}
	code, body := curlReg(t, reg, "/v2/case/e1/manifests/web")
	var m ociManifest
	if code != "200" || json.Unmarshal(body, &m) != nil || len(m.Layers) == 0 || m.Layers[0].Digest != "sha256:"+out.SHA256 {
		t.Fatalf("the tag: %s %s", code, body)
	}
	pulled := filepath.Join(t.TempDir(), name)
	mustAmberEnv(t, renv, "pull", ref, "-o", pulled)
	a, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pulled)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("the archive pulled from the registry (%d bytes) differs from the local capture (%d bytes)", len(b), len(a))
	}
	mustAmberEnv(t, renv, "verify", local)
	mustAmberEnv(t, renv, "verify", pulled)
	var pushed bool
	for _, l := range readLines(t, pulled+".custody.jsonl") {
		if strings.Contains(l, `"action":"pushed"`) && strings.Contains(l, `"manifest":"sha256:`) {
			pushed = true
		}
	}
	if !pushed {
		t.Errorf("the pulled custody log has no pushed event with the manifest digest:\n%s", strings.Join(readLines(t, pulled+".custody.jsonl"), "\n"))
	}
}

// dirSize is the bytes of the regular files under dir (0 once gone).
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if st, err := d.Info(); err == nil {
				n += st.Size()
			}
		}
		return nil
	})
	return n
}

// stagingBytes is what a process holds on disk under dir: the files
// there, and the files it holds open there already unlinked (a spool
// file the walk cannot see).
func stagingBytes(pid int, dir string) int64 {
	n := dirSize(dir)
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		p := fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())
		if l, err := os.Readlink(p); err == nil && strings.HasPrefix(l, dir) && strings.HasSuffix(l, " (deleted)") {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				n += st.Size()
			}
		}
	}
	return n
}

// startCapture runs amber capture image src -o ref with TMPDIR tmp.
func startCapture(t *testing.T, env []string, tmp, src, ref string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(amberBin, "capture", "image", src, "-o", ref)
	cmd.Env = append(append([]string(nil), env...), "TMPDIR="+tmp)
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr
}

// waitUpload waits until more than n bytes of repo's upload are in the
// registry's upload area.
func waitUpload(t *testing.T, reg *testenv.Registry, repo string, n int64) bool {
	t.Helper()
	uploads := filepath.Join(reg.Dir, "storage", "docker", "registry", "v2", "repositories", repo, "_uploads")
	for start := time.Now(); time.Since(start) < 90*time.Second; time.Sleep(5 * time.Millisecond) {
		ms, _ := filepath.Glob(filepath.Join(uploads, "*", "data"))
		for _, m := range ms {
			if st, err := os.Stat(m); err == nil && st.Size() > n {
				return true
			}
		}
	}
	return false
}

// TestCaptureToRegistryDisk: a capture of about 120 MB streamed into the
// registry keeps the local disk at a few frames (the staging directory,
// sampled throughout with what the process holds open there unlinked,
// never holds more than 16 MiB), and tags the
// archive, whose digest the registry checked.
func TestCaptureToRegistryDisk(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	src := randomSource(t, t.TempDir(), 120<<20)
	tmp := t.TempDir()
	ref := "docker://" + reg.Host + "/case/big:v1"
	cmd, stderr := startCapture(t, env, tmp, src, ref)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-time.After(2 * time.Millisecond):
			peak = max(peak, stagingBytes(cmd.Process.Pid, tmp))
		}
	}
	t.Logf("peak staging %d bytes; %s", peak, stderr.String())
	if err != nil {
		t.Fatalf("capture to %s: %v\n%s", ref, err, stderr.String())
	}
	if peak > 16<<20 {
		t.Errorf("the staging directory held %d bytes during the capture", peak)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("the staging directory is left: %v", ents)
	}
	code, body := curlReg(t, reg, "/v2/case/big/manifests/v1")
	var m ociManifest
	if code != "200" || json.Unmarshal(body, &m) != nil || len(m.Layers) == 0 || m.Layers[0].Size < 100<<20 {
		t.Fatalf("the tag: %s %s", code, body)
	}
	mustAmberEnv(t, env, "verify", ref)
}

// TestCaptureToRegistryInterrupted: SIGINT while the archive streams
// into the registry: exit 130, no tag, the upload session abandoned (the
// registry's upload area emptied), nothing left in the staging
// directory; with the registry killed instead: a clear error naming it,
// and no tag once it is back.
func TestCaptureToRegistryInterrupted(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	src := randomSource(t, t.TempDir(), 120<<20)
	tmp := t.TempDir()
	cmd, stderr := startCapture(t, env, tmp, src, "docker://"+reg.Host+"/case/int:v1")
	if !waitUpload(t, reg, "case/int", 8<<20) {
		cmd.Process.Kill()
		t.Fatalf("the upload was never seen in progress\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	t.Logf("interrupted: %v: %s", err, stderr.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
		t.Errorf("capture interrupted: %v, want exit %d\n%s", err, exitInterrupted, stderr.String())
	}
	if code, body := curlReg(t, reg, "/v2/case/int/manifests/v1"); code != "404" {
		t.Errorf("after an interrupted capture the tag answers %s: %s", code, body)
	}
	// The registry's DELETE of an upload removes the bytes it received
	// (distribution 2.8 leaves an empty hashstates directory) and is
	// answered 204 in its log.
	ms, _ := filepath.Glob(filepath.Join(reg.Dir, "storage", "docker", "registry", "v2", "repositories", "case", "int", "_uploads", "*", "data"))
	lb, _ := os.ReadFile(filepath.Join(reg.Dir, "registry.log"))
	if len(ms) != 0 || !regexp.MustCompile(`"DELETE /v2/case/int/blobs/uploads/[^ ]+ HTTP/[0-9.]+" 204`).Match(lb) {
		var dl []string
		for _, l := range strings.Split(string(lb), "\n") {
			if strings.Contains(l, "DELETE") {
				dl = append(dl, l)
			}
		}
		t.Errorf("the upload session was not abandoned: %v; the registry's DELETEs:\n%s", ms, strings.Join(dl, "\n"))
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("the staging directory is left: %v", ents)
	}

	cmd, stderr = startCapture(t, env, tmp, src, "docker://"+reg.Host+"/case/kill:v1")
	if !waitUpload(t, reg, "case/kill", 8<<20) {
		cmd.Process.Kill()
		t.Fatalf("the upload was never seen in progress\n%s", stderr.String())
	}
	reg.Stop(syscall.SIGKILL)
	err = cmd.Wait()
	t.Logf("registry killed: %v: %s", err, stderr.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError || !strings.Contains(stderr.String(), "registry unreachable") || !strings.Contains(stderr.String(), reg.Host) {
		t.Errorf("capture with the registry killed: %v\n%s", err, stderr.String())
	}
	reg.Start(t)
	if code, body := curlReg(t, reg, "/v2/case/kill/manifests/v1"); code != "404" {
		t.Errorf("after a killed capture the tag answers %s: %s", code, body)
	}
}

// TestCaptureToRegistryNoChunks: a registry (a proxy in front of the
// real one) that refuses chunked uploads: the capture says so, spools
// the archive and uploads it whole; the tag is there and verifies.
func TestCaptureToRegistryNoChunks(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	proxy := testenv.StartProxy(t, reg)
	proxy.RefuseChunks.Store(true)
	registryLogin(t, reg, proxy.Host)
	src := randomSource(t, t.TempDir(), 20<<20)
	ref := "docker://" + proxy.Host + "/case/mono:v1"
	r := amberIn(t, os.Environ(), "capture", "image", src, "-o", ref)
	t.Logf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	if r.code != 0 || !strings.Contains(r.stderr, "refused a chunked upload") || !strings.Contains(r.stderr, proxy.Host) {
		t.Fatalf("capture to a registry refusing chunks: exit %d\n%s", r.code, r.stderr)
	}
	code, body := curlReg(t, reg, "/v2/case/mono/manifests/v1")
	var m ociManifest
	if code != "200" || json.Unmarshal(body, &m) != nil || len(m.Layers) == 0 || m.Layers[0].Size < 20<<20 {
		t.Fatalf("the tag: %s %s", code, body)
	}
	mustAmber(t, "verify", ref)
}

// TestCaptureToRegistryWrongPassword: a refused login stops the capture
// before anything is captured: exit 16, the registry named, no tag.
func TestCaptureToRegistryWrongPassword(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	src, err := filepath.Abs(filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	env := append(regEnv(t, reg, "wrong"), "TMPDIR="+tmp)
	r := amberIn(t, env, "capture", "image", src, "-o", "docker://"+reg.Host+"/case/pw:v1")
	t.Logf("exit %d: %s", r.code, r.stderr)
	if r.code != exitAuth || !strings.Contains(r.stderr, reg.Host) {
		t.Errorf("capture with a wrong password: exit %d, want %d\n%s", r.code, exitAuth, r.stderr)
	}
	if code, body := curlReg(t, reg, "/v2/case/pw/manifests/v1"); code != "404" {
		t.Errorf("the tag answers %s: %s", code, body)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("the staging directory is left: %v", ents)
	}
}

// TestCaptureContainerToRegistry: capture container -o docker:// (the
// engine's path, shared by pod and host captures) tags a capture that
// verifies from the registry and, pulled, holds the container.
func TestCaptureContainerToRegistry(t *testing.T) {
	testenv.Root(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	registryLogin(t, reg)
	testContainer(t, "amber-ctr-reg")
	ref := "docker://" + reg.Host + "/case/node7:web"
	r := amber(t, "capture", "container", "amber-ctr-reg", "--no-memory", "-o", ref)
	if r.code != 0 {
		t.Fatalf("capture container -o %s: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
	}
	mustAmber(t, "verify", ref)
	pulled := filepath.Join(t.TempDir(), "node7.tar.zst")
	mustAmber(t, "pull", ref, "-o", pulled)
	if _, ok := readManifest(t, pulled).Artifact(manifest.KindContainer, "amber-ctr-reg"); !ok {
		t.Errorf("the pulled capture has no container amber-ctr-reg")
	}
}

// TestCaptureToRegistryKeepLocal: --keep-local DIR keeps the archive
// and its sidecars under the artifact's name: sha256sum -c accepts
// them, the digest is the registry's first layer's, it verifies, and its
// custody log has the pushed event; an interrupted capture keeps
// nothing.
func TestCaptureToRegistryKeepLocal(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	registryLogin(t, reg)
	src, err := filepath.Abs(filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar"))
	if err != nil {
		t.Fatal(err)
	}
	keep := t.TempDir()
	mustAmber(t, "capture", "image", src, "-o", "docker://"+reg.Host+"/case/e1:web", "--keep-local", keep)
	arch := filepath.Join(keep, ArtifactFileName("case/e1", "web"))
	cmd := exec.Command(testenv.Tool(t, "sha256sum"), "-c", "--strict", filepath.Base(arch)+".sha256")
	cmd.Dir = keep
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	code, body := curlReg(t, reg, "/v2/case/e1/manifests/web")
	var m ociManifest
	sum := strings.Fields(readLines(t, arch+".sha256")[0])[0]
	if code != "200" || json.Unmarshal(body, &m) != nil || len(m.Layers) == 0 || m.Layers[0].Digest != "sha256:"+sum {
		t.Fatalf("the tag (%s) is not the kept archive %s: %s", code, sum, body)
	}
	if a := custodyActions(t, arch+".custody.jsonl"); a[len(a)-1] != "pushed" {
		t.Errorf("the kept custody log ends with %v", a)
	}
	mustAmber(t, "verify", arch)
	if r := amber(t, "capture", "image", src, "-o", filepath.Join(keep, "x.tar.zst"), "--keep-local", keep); r.code != exitUsage {
		t.Errorf("--keep-local with a file -o: exit %d\n%s", r.code, r.stderr)
	}

	big := randomSource(t, t.TempDir(), 120<<20)
	keep2 := t.TempDir()
	c := exec.Command(amberBin, "capture", "image", big, "-o", "docker://"+reg.Host+"/case/k2:v1", "--keep-local", keep2)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitUpload(t, reg, "case/k2", 8<<20) {
		c.Process.Kill()
		t.Fatalf("the upload was never seen in progress\n%s", stderr.String())
	}
	c.Process.Signal(syscall.SIGINT)
	err = c.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
		t.Errorf("interrupted: %v\n%s", err, stderr.String())
	}
	if ents, _ := os.ReadDir(keep2); len(ents) != 0 {
		t.Errorf("an interrupted capture kept %v", ents)
	}
}
