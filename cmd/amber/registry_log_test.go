package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestRegistryReadWrongPassword: a refused login on the lazy read path
// (ls, cat, verify, mount of docker://REF) exits with exitAuth,
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
