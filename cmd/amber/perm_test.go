package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// TestArchiveModes: archives and sidecars are written 0600 whatever the
// umask allows; --shared widens them to what the umask allows (0640 under
// umask 027). stat(1) is the oracle.
func TestArchiveModes(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar")
	exts := []string{"", ".sha256", ".md5", ".sha1", ".custody.jsonl"}
	for _, c := range []struct {
		name, flags, want string
	}{
		{"private", "", "600"},
		{"shared", "--shared", "640"},
	} {
		arch := filepath.Join(dir, c.name+".tar.zst")
		testenv.Shell(t, fmt.Sprintf("umask 027 && %q capture image %q -o %q --md5 --sha1 %s", amberBin, src, arch, c.flags))
		for _, ext := range exts {
			if got := strings.TrimSpace(testenv.Run(t, "stat", "-c", "%a", arch+ext)); got != c.want {
				t.Errorf("%s: mode %s, want %s", filepath.Base(arch+ext), got, c.want)
			}
		}
	}
	// Without a sidecar, verify starts one as private as the archive.
	arch := filepath.Join(dir, "private.tar.zst")
	os.Remove(arch + ".custody.jsonl")
	testenv.Shell(t, fmt.Sprintf("umask 022 && %q verify %q", amberBin, arch))
	if got := strings.TrimSpace(testenv.Run(t, "stat", "-c", "%a", arch+".custody.jsonl")); got != "600" {
		t.Errorf("custody log started by verify: mode %s, want 600", got)
	}
}

// memberModes is the mode a container's own files and their directories
// should show: 0400 (0500) for inspect.json, logs and memory, else 0444
// (0555).
func memberModes(members []manifest.Member) map[string]uint64 {
	want := map[string]uint64{}
	for _, mem := range members {
		p := mem.Path
		perm := uint64(0o444)
		if p == "inspect.json" || strings.HasPrefix(p, "logs/") || strings.HasPrefix(p, "memory/") {
			perm = 0o400
		}
		want[p] = perm
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			want[d] = 0o555
			if perm == 0o400 {
				want[d] = 0o500
			}
		}
	}
	return want
}

// TestMountSensitiveMembers: a container's memory (cores, environ,
// cmdline, maps, ...), inspect.json and logs are 0400 on the mount (their
// directories 0500), in amber ls as on the mount, so that under
// --allow-other another local user reads none of them; its other files
// stay 0444. The archive of a container capture is 0600 too.
func TestMountSensitiveMembers(t *testing.T) {
	testenv.Root(t)
	testenv.FUSE(t)
	setpriv := testenv.Tool(t, "setpriv")
	name := "amber-ctr-perm"
	id := testContainer(t, name)
	// A directory other users can walk to the mount point.
	dir, err := os.MkdirTemp("", "amber-perm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	arch := filepath.Join(dir, "p.tar.zst")
	testenv.Shell(t, fmt.Sprintf("umask 022 && %q capture container %s -o %q >/dev/null", amberBin, id, arch))
	for _, ext := range []string{"", ".sha256", ".custody.jsonl"} {
		if got := strings.TrimSpace(testenv.Run(t, "stat", "-c", "%a", arch+ext)); got != "600" {
			t.Errorf("%s: mode %s, want 600", filepath.Base(arch+ext), got)
		}
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	mustAmber(t, "mount", "--background", "--allow-other", arch, mnt)
	t.Cleanup(func() { amber(t, "umount", mnt) })
	view := "containers/" + name
	base := filepath.Join(mnt, view)

	m := readManifest(t, arch)
	ca, _ := m.Artifact(manifest.KindContainer, name)
	want := memberModes(ca.Container.Members)
	for _, p := range []string{"inspect.json", "logs/stdout", "changes.txt", "memory"} {
		if _, ok := want[p]; !ok {
			t.Fatalf("the capture has no %s: %v", p, want)
		}
	}
	cores := 0
	for p := range want {
		if strings.HasSuffix(p, "/core") {
			cores++
		}
	}
	if cores == 0 {
		t.Fatalf("no memory captured: %v", want)
	}
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	got := statModes(t, base, paths)
	ls := map[string]statMode{}
	for _, d := range []string{"memory", "logs"} {
		for p, s := range lsModes(t, arch, view+"/"+d) {
			ls[filepath.Join(d, p)] = s
		}
	}
	for p := range want {
		if !strings.Contains(p, "/") && !strings.HasPrefix(p, "memory") && !strings.HasPrefix(p, "logs") {
			ls[p] = lsModes(t, arch, view+"/"+p)[p]
		}
	}
	for _, p := range paths {
		if got[p].perm != want[p] {
			t.Errorf("%s/%s: mount shows %04o, want %04o", view, p, got[p].perm, want[p])
		}
		if s, ok := ls[p]; !ok || s.perm != got[p].perm {
			t.Errorf("%s/%s: amber ls %04o, mount %04o", view, p, s.perm, got[p].perm)
		}
	}

	// Another local user, allowed onto the mount, reads the change list
	// but none of the memory, environment, inspect or logs.
	asNobody := func(args ...string) error {
		return exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)...).Run()
	}
	if err := asNobody("cat", filepath.Join(base, "changes.txt")); err != nil {
		t.Errorf("another user cannot read changes.txt: %v", err)
	}
	var env string
	for p := range want {
		if strings.HasSuffix(p, "/environ") {
			env = p
		}
	}
	for _, p := range []string{env, "inspect.json", "logs/stdout"} {
		if err := asNobody("cat", filepath.Join(base, p)); err == nil {
			t.Errorf("another user reads %s through the mount", p)
		}
	}
	if err := asNobody("ls", filepath.Join(base, "memory")); err == nil {
		t.Error("another user lists memory/ through the mount")
	}
}
