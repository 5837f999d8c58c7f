package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/registry/registrytest"
)

// registryLogin points the amber processes this test runs at r's
// certificate and credentials, for r's host and the proxies given.
func registryLogin(t *testing.T, r *testenv.Registry, hosts ...string) {
	t.Helper()
	dir := t.TempDir()
	auths := map[string]map[string]string{}
	for _, h := range append([]string{r.Host}, hosts...) {
		auths[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password))}
	}
	b, _ := json.Marshal(map[string]any{"auths": auths})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("SSL_CERT_FILE", r.CAFile)
}

func pushTo(t *testing.T, r *testenv.Registry, arch, repoTag string) {
	t.Helper()
	registrytest.Push(t, registrytest.Registry{Host: r.Host, User: r.User, Password: r.Password, CAFile: r.CAFile}, arch, repoTag)
}

// frameOf is the frame holding the content of path in the archive's
// first image's first layer: its id and a compressed offset inside it.
func frameOf(t *testing.T, arch, path string) (int64, int64) {
	t.Helper()
	a := fixture.Open(t, arch)
	l := a.Manifest.Artifacts[0].Layers[0]
	ix, err := a.Index(l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	i, ok := ix.Lookup(path)
	if !ok {
		t.Fatalf("%s not in %s", path, arch)
	}
	rec, _ := ix.Record(i)
	be, _ := a.Blob("blobs/sha256/" + l.Digest.Hex())
	fr, _ := a.Table.EntryByDecompressedOffset(uint64(be.Offset + rec.DataOffset))
	return fr.ID, int64(fr.CompressedOffset) + int64(fr.CompressedSize)/2
}

// TestRegistryRead: ls, cat, verify, diff of docker://REF (a registry
// with TLS and auth, through a counting proxy) print what they print of
// the local file; verify records its event under the cache; a flipped
// byte of the blob is named (frame N) by cat and verify; a server that
// ignores Range still works, with a message.
func TestRegistryRead(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	proxy := testenv.StartProxy(t, reg)
	registryLogin(t, reg, proxy.Host)
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "big", fixture.BigImage())
	pushTo(t, reg, arch, "case/e1:web")
	ref := "docker://" + proxy.Host + "/case/e1:web"
	cache := filepath.Join(dir, "cache")
	same := func(args ...string) {
		t.Helper()
		want := amber(t, args...)
		var rargs []string
		for _, a := range args {
			rargs = append(rargs, strings.ReplaceAll(a, arch, ref))
		}
		got := amber(t, append([]string{rargs[0], "--cache", cache}, rargs[1:]...)...)
		// What names the archive names the reference instead.
		want.stdout = strings.ReplaceAll(want.stdout, arch, ref)
		if got.code != want.code || got.stdout != want.stdout {
			t.Errorf("amber %s: exit %d, the local file's %d\n%s", strings.Join(rargs, " "), got.code, want.code, lineDiff(want.stdout, got.stdout))
		}
	}
	same("ls", arch)
	same("ls", "--json", "-r", arch, "images/big_1/rootfs")
	same("ls", "--sha256sum", arch, "images/big_1/layers/1")
	same("cat", arch, "images/big_1/rootfs/data/d04/f004")
	same("cat", arch, "images/big_1/rootfs/big.bin")
	same("diff", arch, "images/big_1/layers/1", "images/big_1/layers/2")
	same("diff", arch+":images/big_1/stages/1", arch+":images/big_1/stages/2")
	same("history", arch)
	same("layers", arch)

	r := amber(t, "verify", "--json", "--cache", filepath.Join(dir, "verify-cache"), ref)
	var rep struct {
		archive.Report
		Registry struct {
			BlobDigest   string `json:"blob_digest"`
			CustodyLog   string `json:"custody_log"`
			BytesFetched int64  `json:"bytes_fetched"`
			BlobSize     int64  `json:"blob_size"`
		} `json:"registry"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil || !rep.OK() {
		t.Fatalf("verify %s: exit %d %v\n%s%s", ref, r.code, err, r.stdout, r.stderr)
	}
	// Read once: no chunk of the blob fetched twice (the zstd magic and
	// the seek table's footer, a few bytes read before anything else,
	// are fetched as asked and not kept).
	if f := rep.Registry.BytesFetched; f < rep.Registry.BlobSize || f > rep.Registry.BlobSize+64 {
		t.Errorf("verify fetched %d bytes of a %d-byte blob", rep.Registry.BytesFetched, rep.Registry.BlobSize)
	}
	if "sha256:"+rep.SHA256.Hex() != rep.Registry.BlobDigest || rep.SHA256.Hex() != strings.Fields(readString(t, arch+".sha256"))[0] {
		t.Errorf("verify: sha256 %s, blob %s", rep.SHA256, rep.Registry.BlobDigest)
	}
	if want := filepath.Join(dir, "verify-cache", "custody", "sha256-"+rep.SHA256.Hex()+".custody.jsonl"); rep.Registry.CustodyLog != want ||
		!strings.Contains(readString(t, want), `"action":"verified"`) || !strings.Contains(readString(t, want), ref) {
		t.Errorf("custody log %s, want %s holding a verified event", rep.Registry.CustodyLog, want)
	}
	if r := amber(t, "verify", "--cache", filepath.Join(dir, "verify-cache"), ref); r.code != 0 || !strings.Contains(r.stdout, "OK "+ref) || !strings.Contains(r.stdout, "0 bytes fetched") || !strings.Contains(r.stdout, "3+1 custody events") {
		t.Errorf("verify again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A flipped byte: cat and verify name the frame; nothing altered is
	// printed.
	id, at := frameOf(t, arch, "data/d12/f250")
	proxy.FlipAt.Store(at)
	flipCache := filepath.Join(dir, "flip-cache")
	if r := amber(t, "cat", "--cache", flipCache, ref, "images/big_1/rootfs/data/d12/f250"); r.code != exitTampered || r.stdout != "" || !strings.Contains(r.stderr, fmt.Sprintf("frame %d", id)) {
		t.Errorf("cat of a flipped frame: exit %d, %d bytes out\n%s", r.code, len(r.stdout), r.stderr)
	}
	if r := amber(t, "verify", "--cache", filepath.Join(dir, "flip-cache2"), ref); r.code != exitTampered || !strings.Contains(r.stdout, fmt.Sprintf("FAIL frame %d", id)) {
		t.Errorf("verify of a flipped blob: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	proxy.FlipAt.Store(-1)
	same("cat", arch, "images/big_1/rootfs/data/d12/f250")

	// A server that ignores Range: one whole download, said so.
	proxy.IgnoreRange.Store(true)
	r = amber(t, "cat", "--cache", filepath.Join(dir, "norange"), ref, "images/big_1/rootfs/data/d04/f004")
	if want := mustAmber(t, "cat", arch, "images/big_1/rootfs/data/d04/f004"); r.code != 0 || r.stdout != want || !strings.Contains(r.stderr, "ignores Range requests") {
		t.Errorf("without Range: exit %d\n%s", r.code, r.stderr)
	}
	proxy.IgnoreRange.Store(false)
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRegistryReadFetchesLittle: of an archive of more than 100 MB in a
// registry, ls fetches only the blob's end and cat of one small file
// less than 2 % of it (a counting proxy in front of the registry).
func TestRegistryReadFetchesLittle(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	proxy := testenv.StartProxy(t, reg)
	registryLogin(t, reg, proxy.Host)
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(18))
	var es []fixture.Entry
	for i := range 120 {
		b := make([]byte, 1<<20)
		rng.Read(b)
		es = append(es, fixture.File(fmt.Sprintf("data/r%03d.bin", i), string(b)))
	}
	es = append(es, fixture.File("etc/small.conf", "needle=1\n"))
	for i := range 40 {
		b := make([]byte, 1<<20)
		rng.Read(b)
		es = append(es, fixture.File(fmt.Sprintf("late/r%03d.bin", i), string(b)))
	}
	src := filepath.Join(dir, "large.tar")
	if err := fixture.DockerSave(src, fixture.Image{Tags: []string{"large:1"}, Layers: [][]byte{fixture.Layer(es...)}}); err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "large.tar.zst")
	mustAmber(t, "capture", "image", src, "-o", arch)
	os.Remove(src)
	st, err := os.Stat(arch)
	if err != nil || st.Size() < 100<<20 {
		t.Fatalf("the archive is %v bytes (%v): want 100 MB or more", st.Size(), err)
	}
	pushTo(t, reg, arch, "case/large:1")
	ref := "docker://" + proxy.Host + "/case/large:1"

	proxy.Reset()
	if got, want := mustAmber(t, "ls", "--cache", filepath.Join(dir, "c1"), ref), strings.ReplaceAll(mustAmber(t, "ls", arch), arch, ref); got != want {
		t.Errorf("ls: %s", lineDiff(want, got))
	}
	for _, r := range proxy.Ranges() {
		var from, to int64
		if _, err := fmt.Sscanf(r, "bytes=%d-%d", &from, &to); err != nil || (from != 0 || to != 3) && from < st.Size()*9/10 {
			t.Errorf("ls fetched %q of %d bytes: not the blob's end", r, st.Size())
		}
	}
	if n := proxy.BlobBytes(); n > st.Size()/100 {
		t.Errorf("ls fetched %d of %d bytes", n, st.Size())
	}
	t.Logf("ls fetched %d bytes of %d in %d requests", proxy.BlobBytes(), st.Size(), len(proxy.Ranges()))

	proxy.Reset()
	if got := mustAmber(t, "cat", "--cache", filepath.Join(dir, "c2"), ref, "images/large_1/rootfs/etc/small.conf"); got != "needle=1\n" {
		t.Errorf("cat: %q", got)
	}
	if n := proxy.BlobBytes(); n >= st.Size()*2/100 {
		t.Errorf("cat of one small file fetched %d of %d bytes (%.1f %%)", n, st.Size(), float64(n)*100/float64(st.Size()))
	}
	t.Logf("cat fetched %d bytes of %d (%.2f %%) in %d requests", proxy.BlobBytes(), st.Size(), float64(proxy.BlobBytes())*100/float64(st.Size()), len(proxy.Ranges()))
}

// TestRegistryMount: a mount of docker://REF reads as the local file's
// mount (grep -r, diff -r); a flipped byte gives EIO, never altered
// bytes; with the registry killed, reads of frames not yet fetched fail
// with EIO and the mount stays up; restarted, they work again.
func TestRegistryMount(t *testing.T) {
	testenv.FUSE(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	proxy := testenv.StartProxy(t, reg)
	registryLogin(t, reg, proxy.Host)
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "big", fixture.BigImage())
	pushTo(t, reg, arch, "case/e1:web")
	ref := "docker://" + proxy.Host + "/case/e1:web"
	local := mountArchive(t, arch, filepath.Join(dir, "local"))
	remote := mountArchive(t, ref, filepath.Join(dir, "remote"), "--cache", filepath.Join(dir, "cache"))
	if out, err := exec.Command("diff", "-r", filepath.Join(local, "images"), filepath.Join(remote, "images")).CombinedOutput(); err != nil {
		t.Errorf("diff -r of the local and the registry mount: %v\n%s", err, out)
	}
	grep := func(root string) string {
		out, _ := exec.Command("grep", "-r", "-c", "line 3", root).Output()
		return strings.ReplaceAll(string(out), root, "")
	}
	if g, w := grep(remote), grep(local); g != w || !strings.Contains(w, "rootfs/data/d03/f003:53\n") {
		t.Errorf("grep -r of the registry mount differs from the local one's:\n%s", lineDiff(w, g))
	}

	// A second mount with a cache of its own for the faults (the first
	// one has every frame by now).
	m2 := mountArchive(t, ref, filepath.Join(dir, "m2"), "--cache", filepath.Join(dir, "cache2"))
	id, at := frameOf(t, arch, "data/d12/f250")
	proxy.FlipAt.Store(at)
	f250 := filepath.Join(m2, "images/big_1/layers/0/data/d12/f250")
	if b, err := os.ReadFile(f250); !errorsIsEIO(err) {
		t.Errorf("a file in flipped frame %d read %d bytes, err %v; want EIO", id, len(b), err)
	}
	proxy.FlipAt.Store(-1)
	want, _ := os.ReadFile(filepath.Join(local, "images/big_1/layers/0/data/d12/f250"))
	if b, err := os.ReadFile(f250); err != nil || string(b) != string(want) {
		t.Errorf("once the registry serves the right bytes: %v", err)
	}

	// The registry killed mid-mount.
	reg.Stop(syscall.SIGKILL)
	f := filepath.Join(m2, "images/big_1/rootfs/big.bin")
	if _, err := os.ReadFile(f); !errorsIsEIO(err) {
		t.Errorf("with the registry down: %v, want EIO", err)
	}
	if _, err := os.Stat(filepath.Join(m2, "manifest.json")); err != nil {
		t.Errorf("the mount is gone with the registry: %v", err)
	}
	reg.Start(t)
	wantBig, _ := os.ReadFile(filepath.Join(local, "images/big_1/rootfs/big.bin"))
	if b, err := os.ReadFile(f); err != nil || string(b) != string(wantBig) {
		t.Errorf("with the registry back: %v (%d bytes of %d)", err, len(b), len(wantBig))
	}
}

func errorsIsEIO(err error) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == syscall.EIO
}
