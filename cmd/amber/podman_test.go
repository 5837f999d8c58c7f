package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestPodmanCommandLine: with Podman's storage named, amber ps lists its
// container, and capture container finds it with --runtime auto (Docker
// does not know the name) into an archive that verifies and shows the
// container; a name both Docker and Podman know is an error naming both.
// snapshot/podman's TestCapturePodmanStorage checks the captured tree
// against podman export.
func TestPodmanCommandLine(t *testing.T) {
	testenv.Podman(t)
	save := dockerImage(t)
	base := t.TempDir()
	root, runRoot := filepath.Join(base, "root"), filepath.Join(base, "run")
	pm := func(a ...string) string {
		t.Helper()
		return strings.TrimSpace(testenv.Run(t, "podman", append([]string{"--root", root, "--runroot", runRoot, "--tmpdir", filepath.Join(base, "tmp")}, a...)...))
	}
	t.Cleanup(func() {
		exec.Command("podman", "--root", root, "--runroot", runRoot, "--tmpdir", filepath.Join(base, "tmp"), "rm", "-f", "-a", "-t", "0").Run()
		exec.Command("podman", "--root", root, "--runroot", runRoot, "--tmpdir", filepath.Join(base, "tmp"), "system", "reset", "-f").Run()
	})
	const name = "amber-cli-podman"
	exec.Command("docker", "rm", "-f", name).Run()
	pm("load", "-q", "-i", save)
	id := pm("run", "-d", "--name", name, "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"amber-test:1", "sh", "-c", ctrCommand)
	flags := []string{"--podman-root", root, "--podman-runroot", runRoot}

	var ps struct {
		Containers []psRow `json:"containers"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, append([]string{"ps", "--runtime", "podman", "--json"}, flags...)...)), &ps); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range ps.Containers {
		if r.ID == id {
			found = true
			if r.Runtime != "podman" || r.Name != name || r.State != "running" || r.Pid <= 0 || len(r.PIDs) == 0 {
				t.Errorf("ps row %+v", r)
			}
		}
	}
	if !found {
		t.Fatalf("amber ps does not list podman's %s: %+v", id, ps.Containers)
	}

	arch := filepath.Join(t.TempDir(), "p.tar.zst")
	mustAmber(t, append([]string{"capture", "container", name, "-o", arch, "--no-memory"}, flags...)...)
	mustAmber(t, "verify", "--no-log", arch)
	if ls := mustAmber(t, "ls", arch); !strings.Contains(ls, "containers/"+name) || !strings.Contains(ls, "containers-storage:") {
		t.Errorf("amber ls of the podman capture:\n%s", ls)
	}
	if got := strings.TrimSpace(mustAmber(t, "cat", arch, "containers/"+name+"/rootfs/srv/data/a.txt")); got == "" {
		t.Error("the image's files are not in the captured rootfs")
	}

	// The same name at Docker too: auto cannot choose.
	testContainer(t, name)
	r := amber(t, append([]string{"capture", "container", name, "-o", filepath.Join(t.TempDir(), "x.tar.zst")}, flags...)...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "docker and podman") {
		t.Errorf("a name both runtimes know: exit %d %s", r.code, r.stderr)
	}
}
