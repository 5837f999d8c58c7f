package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestContainerdCommandLine: a container of the test's own containerd
// (ctr run, namespace amber-cli), listed by amber ps with its namespace
// and processes, and captured by capture container with --address alone
// (--runtime auto finds the namespace; Docker does not know the ID) into
// an archive that verifies, whose acquisition names containerd and the
// namespace, and whose rootfs has the image's files and the attacker's.
// snapshot/containerd's TestCaptureContainerd checks the captured tree
// against the snapshot mounted read-only.
func TestContainerdCommandLine(t *testing.T) {
	const ns = "amber-cli"
	d, id := testContainerd(t, ns)
	d.Ctr(t, ns, "run", "-d", "docker.io/library/amber-test:1", id, "sh", "-c", ctrCommand)
	d.Ctr(t, ns, "tasks", "exec", "--exec-id", "attacker", id, "sh", "-c", "echo planted > /srv/planted")
	flags := []string{"--address", d.Address}

	var ps struct {
		Containers []psRow `json:"containers"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, append([]string{"ps", "--runtime", "containerd", "--json"}, flags...)...)), &ps); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range ps.Containers {
		if r.ID == id {
			found = true
			if r.Runtime != "containerd" || r.Namespace != ns || r.State != "running" || r.Pid <= 0 || len(r.PIDs) == 0 {
				t.Errorf("ps row %+v", r)
			}
		}
	}
	if !found {
		t.Fatalf("amber ps does not list %s: %+v", id, ps.Containers)
	}

	arch := filepath.Join(t.TempDir(), "c.tar.zst")
	mustAmber(t, append([]string{"capture", "container", id[:12], "-o", arch}, flags...)...)
	mustAmber(t, "verify", "--no-log", arch)
	m := readManifest(t, arch)
	if e := m.Acquisition.Docker; e == nil || e.Runtime != "containerd" || e.Namespace != ns || !strings.Contains(e.Host, d.Address) {
		t.Errorf("acquisition engine %+v: want containerd, namespace %s, %s", e, ns, d.Address)
	}
	root := "containers/" + id + "/rootfs/srv/"
	if got := mustAmber(t, "cat", arch, root+"planted"); got != "planted\n" {
		t.Errorf("the attacker's file: %q", got)
	}
	if got := mustAmber(t, "cat", arch, root+"data/a.txt"); got == "" {
		t.Error("the image's file is empty")
	}
	if ls := mustAmber(t, "ls", arch, "containers/"+id+"/memory"); !strings.Contains(ls, "sh") {
		t.Errorf("no process memory:\n%s", ls)
	}
}

// testContainerd starts a containerd of the test's own with the test
// image imported into namespace ns, and names a container ID for the test
// (64 hex digits, from its name).
func testContainerd(t *testing.T, ns string) (*testenv.ContainerdDaemon, string) {
	t.Helper()
	save := dockerImage(t)
	d := testenv.Containerd(t)
	d.Ctr(t, ns, "images", "import", save)
	h := sha256.Sum256([]byte(t.Name()))
	return d, hex.EncodeToString(h[:])
}

// ctrdCapture is amber capture container of id in d's namespace ns.
func ctrdCapture(d *testenv.ContainerdDaemon, ns, id, out string, flags ...string) *exec.Cmd {
	args := append([]string{"capture", "container", "--runtime", "containerd", "--address", d.Address, "--namespace", ns, id, "-o", out}, flags...)
	return exec.Command(amberBin, args...)
}
