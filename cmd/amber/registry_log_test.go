package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestRegistryLog: amber log docker://REF prints the sealed log read from
// the registry, as log prints the local file's, then the events recorded
// under --cache (verifies from the registry); an edited event there breaks
// the chain (exit 3), as in a file's sidecar.
func TestRegistryLog(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	registryLogin(t, reg)
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	pushTo(t, reg, arch, "case/e1:web")
	ref := "docker://" + reg.Host + "/case/e1:web"
	cache := filepath.Join(dir, "cache")

	sealedLines := func(out string) (s []string) {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[2] == "sealed" {
				s = append(s, l)
			}
		}
		return s
	}
	local := mustAmber(t, "log", arch)
	r := amber(t, "log", "--cache", cache, ref)
	want := sealedLines(local)
	if r.code != 0 || len(want) == 0 || strings.Join(sealedLines(r.stdout), "\n") != strings.Join(want, "\n") ||
		!strings.Contains(r.stdout, "+ 0 later events") || strings.Contains(r.stdout, "WARN") {
		t.Fatalf("log %s: exit %d; want the local file's sealed events\n%s\n%s%s", ref, r.code, local, r.stdout, r.stderr)
	}

	mustAmber(t, "verify", "--cache", cache, ref)
	mustAmber(t, "verify", "--cache", cache, ref)
	r = amber(t, "log", "--cache", cache, ref)
	if r.code != 0 || !strings.Contains(r.stdout, "+ 2 later events") || !strings.Contains(r.stdout, " sidecar verified ") {
		t.Fatalf("log after verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = amber(t, "log", "--json", "--cache", cache, ref)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var last struct{ Action, Stored string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); r.code != 0 || err != nil || last.Action != "verified" || last.Stored != "sidecar" {
		t.Errorf("log --json: exit %d, last event %+v (%v)\n%s", r.code, last, err, r.stdout)
	}

	// The events under the cache are checked like a file's sidecar: the
	// first verified event edited, the next line's link breaks.
	side, err := filepath.Glob(filepath.Join(cache, "custody", "sha256-*.custody.jsonl"))
	if err != nil || len(side) != 1 {
		t.Fatalf("custody sidecars under the cache: %v %v", side, err)
	}
	b, _ := os.ReadFile(side[0])
	if err := os.WriteFile(side[0], []byte(strings.Replace(string(b), `"action":"verified"`, `"action":"verifiee"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := amber(t, "log", "--cache", cache, ref); r.code != exitTampered {
		t.Errorf("log with an edited event under the cache: exit %d, want %d\n%s%s", r.code, exitTampered, r.stdout, r.stderr)
	}
}

// TestRegistryReadWrongPassword: a refused login on the lazy read path
// (ls, cat, verify, log, mount of docker://REF) exits with exitAuth,
// naming the registry and the user, as push and pull do.
func TestRegistryReadWrongPassword(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true, Auth: true})
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	pushTo(t, reg, arch, "case/e1:web")
	ref := "docker://" + reg.Host + "/case/e1:web"
	env := regEnv(t, reg, "wrong-password")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ls", ref},
		{"cat", ref, "images/webapp_1/rootfs/etc/passwd"},
		{"verify", ref},
		{"log", ref},
		{"mount", "--background", ref, mnt},
	} {
		args = append([]string{args[0], "--cache", filepath.Join(dir, "cache")}, args[1:]...)
		r := amberIn(t, env, args...)
		t.Logf("amber %s: exit %d: %s", args[0], r.code, r.stderr)
		if r.code != exitAuth || !strings.Contains(r.stderr, reg.Host) || !strings.Contains(r.stderr, `"examiner"`) {
			t.Errorf("amber %s with a wrong password: exit %d, want %d naming %s and the user\n%s", args[0], r.code, exitAuth, reg.Host, r.stderr)
		}
		if args[0] == "mount" && r.code == 0 {
			amber(t, "umount", mnt)
		}
	}
}
