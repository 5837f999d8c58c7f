package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// The registry's guards: a tag is never moved unless asked, an
// interruption between the blobs and the tag tags nothing and says so, a
// stalled registry fails in bounded time, and the cache keeps to its
// bound.

// tagDigest is the digest of the manifest ref tags in r (curl, an oracle
// apart from go-containerregistry), with its first layer's digest; ""
// when the tag is absent.
func tagDigest(t *testing.T, r *testenv.Registry, repo, tag string) (string, string) {
	t.Helper()
	code, raw := curlReg(t, r, "/v2/"+repo+"/manifests/"+tag)
	if code == "404" {
		return "", ""
	}
	var m ociManifest
	if code != "200" || json.Unmarshal(raw, &m) != nil || len(m.Layers) == 0 {
		t.Fatalf("the tag %s:%s: %s %s", repo, tag, code, raw)
	}
	return "sha256:" + sha256Bytes(raw), m.Layers[0].Digest
}

// TestPushRefusesExistingTag: push to a tag that names other evidence,
// or this same archive, is refused with exit 12 naming the reference and
// --force, and the tag is left as it was; --force moves it; --custody may
// replace a tag naming the same archive, not another's.
func TestPushRefusesExistingTag(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	dir := t.TempDir()
	a1, a2 := filepath.Join(dir, "e1.tar.zst"), filepath.Join(dir, "e2.tar.zst")
	captureWebapp(t, a1, "--exhibit", "E1")
	captureWebapp(t, a2, "--exhibit", "E2")
	ref := "docker://" + reg.Host + "/case/e:web"
	first := strings.TrimSpace(mustAmberEnv(t, env, "push", a1, ref))
	if d, _ := tagDigest(t, reg, "case/e", "web"); d != first {
		t.Fatalf("push printed %s, the tag names %s", first, d)
	}

	for _, c := range []struct {
		args []string
		say  string
	}{
		{[]string{"push", a2, ref}, "--force"},
		{[]string{"push", a1, ref}, "--custody"},
	} {
		r := amberIn(t, env, c.args...)
		t.Logf("%v: exit %d: %s", c.args, r.code, r.stderr)
		if r.code != exitExists || !strings.Contains(r.stderr, ref) || !strings.Contains(r.stderr, c.say) {
			t.Errorf("amber %s onto an existing tag: exit %d, want %d naming %s and %s\n%s", strings.Join(c.args, " "), r.code, exitExists, ref, c.say, r.stderr)
		}
		if d, _ := tagDigest(t, reg, "case/e", "web"); d != first {
			t.Errorf("after a refused push the tag names %s, not %s", d, first)
		}
	}

	// --custody: a new version of the same evidence is no move.
	mustAmberEnv(t, env, "push", "--custody", a1, ref)
	// --force moves the tag to the other archive.
	mustAmberEnv(t, env, "push", "--force", a2, ref)
	if _, l := tagDigest(t, reg, "case/e", "web"); l != "sha256:"+sha256File(t, a2) {
		t.Errorf("after push --force the tag's archive is %s, want e2's sha256:%s", l, sha256File(t, a2))
	}
	// --custody of e1 onto the tag that now names e2: refused.
	if r := amberIn(t, env, "push", "--custody", a1, ref); r.code != exitExists {
		t.Errorf("push --custody onto a tag naming other evidence: exit %d, want %d\n%s", r.code, exitExists, r.stderr)
	}
}

// TestCaptureToRegistryRefusesExistingTag: capture -o docker:// onto a
// tag that exists is refused before it captures (exit 12, nothing left
// in the staging directory, the tag unchanged); --force replaces it;
// --force with a file output is a usage error.
func TestCaptureToRegistryRefusesExistingTag(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	env := regEnv(t, reg, reg.Password)
	src, err := filepath.Abs(filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar"))
	if err != nil {
		t.Fatal(err)
	}
	ref := "docker://" + reg.Host + "/case/cap:web"
	mustAmberEnv(t, env, "capture", "image", src, "-o", ref)
	first, firstArch := tagDigest(t, reg, "case/cap", "web")

	tmp := t.TempDir()
	r := amberIn(t, append(append([]string(nil), env...), "TMPDIR="+tmp), "capture", "image", src, "-o", ref)
	t.Logf("exit %d: %s", r.code, r.stderr)
	if r.code != exitExists || !strings.Contains(r.stderr, ref) || !strings.Contains(r.stderr, "--force") {
		t.Errorf("capture onto an existing tag: exit %d, want %d naming %s and --force\n%s", r.code, exitExists, ref, r.stderr)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("a refused capture left %v in the staging directory", ents)
	}
	if d, _ := tagDigest(t, reg, "case/cap", "web"); d != first {
		t.Errorf("after a refused capture the tag names %s, not %s", d, first)
	}

	mustAmberEnv(t, env, "capture", "image", src, "-o", ref, "--force")
	if d, l := tagDigest(t, reg, "case/cap", "web"); d == first || l == firstArch {
		t.Errorf("after capture --force the tag still names %s (archive %s)", d, l)
	}
	mustAmberEnv(t, env, "verify", ref)

	if r := amberIn(t, env, "capture", "image", src, "-o", filepath.Join(t.TempDir(), "x.tar.zst"), "--force"); r.code != exitUsage {
		t.Errorf("capture -o FILE --force: exit %d, want %d\n%s", r.code, exitUsage, r.stderr)
	}
}

// holdManifest makes proxy hold the first manifest PUT to repo until the
// client gives up (then the registry never sees it) or 30 s pass (then
// it goes on: a client that ignored its Ctrl-C gets its tag, and the
// test sees it). The held manifest is sent on the channel returned.
func holdManifest(proxy *testenv.Proxy, repo string) chan []byte {
	held := make(chan []byte, 1)
	hook := func(r *http.Request, body []byte) bool {
		if !strings.Contains(r.URL.Path, "/v2/"+repo+"/manifests/") {
			return true
		}
		select {
		case held <- body:
		default:
		}
		select {
		case <-r.Context().Done():
			return false
		case <-time.After(30 * time.Second):
			return true
		}
	}
	proxy.OnManifestPut.Store(&hook)
	return held
}

// landManifest makes proxy put the first manifest PUT to repo into the
// registry itself, then hold the client's request until it gives up: a
// registry that took the manifest as the client was interrupted.
func landManifest(t *testing.T, proxy *testenv.Proxy, reg *testenv.Registry, repo string) chan []byte {
	held := make(chan []byte, 1)
	client := &http.Client{Transport: caTransport(t, reg)}
	hook := func(r *http.Request, body []byte) bool {
		if !strings.Contains(r.URL.Path, "/v2/"+repo+"/manifests/") {
			return true
		}
		req, _ := http.NewRequest(http.MethodPut, reg.URL()+r.URL.Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
		req.SetBasicAuth(reg.User, reg.Password)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
		select {
		case held <- body:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		return false
	}
	proxy.OnManifestPut.Store(&hook)
	return held
}

// TestRegistryInterruptedBeforeTag: SIGINT while the manifest of a
// capture -o docker:// (and of a push) is on its way, every blob already
// committed: exit 130, no tag, a message naming the reference and that
// nothing was tagged (not an "output name"); the archive blob stays in
// the registry, untagged (distribution keeps it until its garbage
// collection), as the help says. When the registry took the manifest as
// the interruption came (the proxy puts it, then holds the answer), the
// message says the tag is there, with its digest.
func TestRegistryInterruptedBeforeTag(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	proxy := testenv.StartProxy(t, reg)
	proxy.Forwarded.Store(true)
	registryLogin(t, reg, proxy.Host)
	src, err := filepath.Abs(filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar"))
	if err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(t.TempDir(), "e1.tar.zst")
	captureWebapp(t, arch)
	for _, c := range []struct {
		repo   string
		args   []string
		landed bool
	}{
		{"case/win", []string{"capture", "image", src, "-o", "docker://" + proxy.Host + "/case/win:v1"}, false},
		{"case/wpush", []string{"push", arch, "docker://" + proxy.Host + "/case/wpush:v1"}, false},
		// The registry took the manifest, the answer was lost to the
		// interruption: the message says the tag is there.
		{"case/wland", []string{"capture", "image", src, "-o", "docker://" + proxy.Host + "/case/wland:v1"}, true},
		{"case/wlandp", []string{"push", arch, "docker://" + proxy.Host + "/case/wlandp:v1"}, true},
	} {
		held := holdManifest(proxy, c.repo)
		if c.landed {
			held = landManifest(t, proxy, reg, c.repo)
		}
		cmd := exec.Command(amberBin, c.args...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var m ociManifest
		select {
		case body := <-held:
			if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) == 0 {
				t.Fatalf("the held manifest: %v %s", err, body)
			}
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("amber %s: no manifest PUT came\n%s", strings.Join(c.args, " "), stderr.String())
		}
		// The archive blob is committed: the registry has it.
		blob := "/v2/" + c.repo + "/blobs/" + m.Layers[0].Digest
		if code, _ := curlReg(t, reg, blob); code != "200" {
			t.Fatalf("at the manifest PUT the archive blob answers %s", code)
		}
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		t.Logf("amber %s, interrupted: %v: %s", c.args[0], err, stderr.String())
		ref := c.args[len(c.args)-1]
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
			t.Errorf("amber %s interrupted: %v, want exit %d", c.args[0], err, exitInterrupted)
		}
		if c.landed {
			d, _ := tagDigest(t, reg, c.repo, "v1")
			if s := stderr.String(); d == "" || !strings.Contains(s, ref+" was tagged (manifest "+d+")") {
				t.Errorf("amber %s interrupted as the registry took its manifest (tag %q) says %q; want it to say %s was tagged", c.args[0], d, s, ref)
			}
			continue
		}
		if s := stderr.String(); !strings.Contains(s, "nothing was tagged at "+ref) || strings.Contains(s, "output name") {
			t.Errorf("amber %s interrupted says %q; want it to name %s and say nothing was tagged", c.args[0], s, ref)
		}
		if code, body := curlReg(t, reg, "/v2/"+c.repo+"/manifests/v1"); code != "404" {
			t.Errorf("after amber %s interrupted before its manifest, the tag answers %s: %s", c.args[0], code, body)
		}
		// What the help promises: the blob stays, untagged.
		if code, _ := curlReg(t, reg, blob); code != "200" {
			t.Errorf("after the interruption the archive blob answers %s; the help says it stays until garbage collection", code)
		}
	}
}

// TestRegistryReadStalled: a registry (a proxy in front of one) that
// answers a blob's headers at once and then sends a byte a second: amber
// cat fails within the timeout AMBER_REGISTRY_TIMEOUT sets (2 s here)
// instead of hanging, exit 1 (not 130), naming the registry and the stall.
func TestRegistryReadStalled(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	proxy := testenv.StartProxy(t, reg)
	registryLogin(t, reg, proxy.Host)
	arch := filepath.Join(t.TempDir(), "e1.tar.zst")
	captureWebapp(t, arch)
	pushTo(t, reg, arch, "case/slow:v1")
	ref := "docker://" + proxy.Host + "/case/slow:v1"
	proxy.TrickleEvery.Store(int64(time.Second))

	cmd := exec.Command(amberBin, "cat", "--cache", t.TempDir(), ref, "images/webapp_v1/rootfs/etc/app.conf")
	cmd.Env = append(os.Environ(), "AMBER_REGISTRY_TIMEOUT=2s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	start := time.Now()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("amber cat of a trickling registry still runs after 60 s\n%s", stderr.String())
	}
	took := time.Since(start)
	t.Logf("after %s: %v: %s", took, err, stderr.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError {
		t.Errorf("amber cat of a trickling registry: %v, want exit %d", err, exitError)
	}
	if s := stderr.String(); !strings.Contains(s, proxy.Host) || !strings.Contains(s, "stalled") || !strings.Contains(s, "AMBER_REGISTRY_TIMEOUT") {
		t.Errorf("the error does not name the registry %s and the stall: %s", proxy.Host, s)
	}
	if took > 20*time.Second {
		t.Errorf("amber cat took %s to give up with a 2 s timeout", took)
	}
}

// TestRegistryCacheBound: with --cache-max 6M, cat of 24 files of 1 MiB
// each (random, so the archive is about 36 MiB with a 12 MiB file) from
// the registry: each output's SHA-256 is its file's, and the cache
// directory never holds more than the bound after a command; so with the
// 12 MiB file through a 4 MiB cache; a bound under 4M is refused.
func TestRegistryCacheBound(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	registryLogin(t, reg)
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(5))
	var es []fixture.Entry
	sums := map[string]string{}
	for i := range 24 {
		b := make([]byte, 1<<20)
		rng.Read(b)
		p := fmt.Sprintf("data/r%02d.bin", i)
		es = append(es, fixture.File(p, string(b)))
		h := sha256.Sum256(b)
		sums[p] = hex.EncodeToString(h[:])
	}
	big := make([]byte, 12<<20)
	rng.Read(big)
	es = append(es, fixture.File("data/big.bin", string(big)))
	src := filepath.Join(dir, "rand.tar")
	if err := fixture.DockerSave(src, fixture.Image{Tags: []string{"rand:1"}, Layers: [][]byte{fixture.Layer(es...)}}); err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "rand.tar.zst")
	mustAmber(t, "capture", "image", src, "-o", arch)
	pushTo(t, reg, arch, "case/cache:v1")
	ref := "docker://" + reg.Host + "/case/cache:v1"
	cache := filepath.Join(dir, "cache")
	const bound = 6 << 20
	for i := range 24 {
		p := fmt.Sprintf("data/r%02d.bin", i)
		out := mustAmber(t, "cat", "--cache", cache, "--cache-max", "6M", ref, "images/rand_1/rootfs/"+p)
		if got := sha256Bytes([]byte(out)); got != sums[p] {
			t.Errorf("cat %s through a 6 MiB cache: sha256 %s, want %s", p, got, sums[p])
		}
		if n := dirSize(filepath.Join(cache, "blobs")); n > bound {
			t.Errorf("after cat %s the cache holds %d bytes, more than its bound %d", p, n, bound)
		}
	}
	// A file three times the smallest bound, read in order (the read
	// ahead grows to 16 MiB): the cache still keeps to 4 MiB and the bytes
	// are the file's.
	out := mustAmber(t, "cat", "--cache", cache, "--cache-max", "4M", ref, "images/rand_1/rootfs/data/big.bin")
	if got, want := sha256Bytes([]byte(out)), sha256Bytes(big); got != want {
		t.Errorf("cat of a 12 MiB file through a 4 MiB cache: sha256 %s, want %s", got, want)
	}
	if n := dirSize(filepath.Join(cache, "blobs")); n > 4<<20 {
		t.Errorf("after cat of a 12 MiB file the cache holds %d bytes, more than its bound %d", n, 4<<20)
	}
	if r := amber(t, "cat", "--cache", cache, "--cache-max", "1M", ref, "images/rand_1/rootfs/data/r00.bin"); r.code != exitUsage {
		t.Errorf("--cache-max 1M: exit %d, want %d (too small)\n%s", r.code, exitUsage, r.stderr)
	}
}
