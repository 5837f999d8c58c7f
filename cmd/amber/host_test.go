//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// hostDockerfile makes an image of three layers; the container changes
// files in it, writes logs and a volume.
const hostDockerfile = `FROM amber-host-base:1
RUN mkdir -p /srv/app /etc/app && echo 'listen 80' > /etc/app/app.conf && echo 'v1' > /srv/app/VERSION && echo keep > /srv/app/keep
RUN echo 'second layer' > /srv/app/second && chmod 640 /srv/app/second
`

const hostCommand = `echo started; echo to-stderr >&2; echo hacked > /srv/app/VERSION; rm /srv/app/keep; mkdir -p /tmp/.x && echo miner > /tmp/.x/run; echo vol > /data/v; echo ready > /tmp/ready; exec sleep 1000`

// TestCaptureHostDocker: a dockerd of the test's own runs a container that
// changes files; it is captured live, then the engine dies (SIGKILL, its
// containerd with it: a power cut) and the data root is captured offline,
// from the directory and from an ext4 disk image of it mounted read-only:
// rootfs, pristine and changes equal the live capture's (listing of
// type/mode/owner/size/link/mtime, and diff -r), changes.txt too; amber
// host lists the containers with the states they had; the disk image's
// SHA-256 is unchanged. Then a lower layer's file is edited on disk: the
// offline capture reports layer-modified-on-disk naming it, and amber diff
// shows it; the engine, started again, refuses to save the image
// ("file integrity checksum failed"), and the live capture, which rebuilds
// images from the engine's files, reports the same.
func TestCaptureHostDocker(t *testing.T) {
	testenv.FUSE(t)
	d := testenv.Dockerd(t)
	t.Setenv("DOCKER_HOST", d.Host())
	busybox := testenv.Tool(t, "busybox")
	if _, err := testenv.BusyboxImage(busybox, t.TempDir(), "amber-host-base:1", "amber-host:1", hostDockerfile, true); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "docker", "run", "-d", "--name", "web", "-v", "webdata:/data", "amber-host:1", "sh", "-c", hostCommand)
	testenv.Run(t, "docker", "create", "--name", "db", "amber-host:1", "true")
	testenv.Run(t, "docker", "run", "--name", "job", "amber-host:1", "sh", "-c", "echo done")
	// Another image over the same layers: a finding on a shared layer is
	// recorded once, and shown for both.
	testenv.Shell(t, `printf 'FROM amber-host:1\nRUN echo two > /srv/two\n' | docker build -q -t amber-host:2 - >/dev/null`)
	testenv.Run(t, "docker", "create", "--name", "db2", "amber-host:2", "true")
	testenv.Shell(t, `for i in $(seq 100); do docker exec web test -f /tmp/ready && exit 0; sleep 0.1; done; exit 1`)
	dir := t.TempDir()
	live := filepath.Join(dir, "live.tar.zst")
	mustAmber(t, "capture", "container", "--runtime", "docker", "--volumes", "web", "-o", live)
	// The layer directory of the image's second layer, for the edit.
	lower := strings.TrimSpace(testenv.Run(t, "docker", "image", "inspect", "amber-host:1", "--format", "{{.GraphDriver.Data.LowerDir}}"))

	d.Stop(syscall.SIGKILL)
	data := d.DataRoot()

	// amber host: the states when the engine went down.
	var listed struct {
		Runtimes   []hostRuntime `json:"runtimes"`
		Containers []struct {
			Name, State, Created, Started string
		} `json:"containers"`
		Images []struct{ Refs []string } `json:"images"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "host", "/", "--docker-root", data, "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, c := range listed.Containers {
		states[c.Name] = c.State
	}
	if states["web"] != "running" || states["db"] != "created" || states["job"] != "exited" {
		t.Errorf("amber host states %v; want web running (at the crash), db created, job exited", states)
	}
	if len(listed.Runtimes) == 0 || listed.Runtimes[0].Offline == nil || listed.Runtimes[0].Offline.FSType == "" {
		t.Errorf("amber host runtimes %+v: want the data root's filesystem", listed.Runtimes)
	}

	dead := filepath.Join(dir, "dead.tar.zst")
	mustAmber(t, "capture", "host", "/", "--docker-root", data, "web", "--volumes", "-o", dead)
	mustAmber(t, "verify", "--no-log", dead)
	m := readManifest(t, dead)
	if e := m.Acquisition.Docker; e == nil || e.Offline == nil || e.Offline.DataRoot != data {
		t.Errorf("acquisition %+v: want offline from %s", m.Acquisition.Docker, data)
	}
	sameEvidence(t, live, dead, dir, "dir")

	// The data root in an ext4 disk image, mounted read-only. Copied in
	// with cp -a through a read-write mount first: mkfs.ext4 -d keeps
	// whole seconds of the times only.
	img := filepath.Join(dir, "disk.img")
	testenv.Run(t, "mkfs.ext4", "-q", img, "256M")
	mnt := filepath.Join(dir, "evidence")
	os.MkdirAll(mnt, 0o755)
	testenv.Run(t, "mount", "-o", "loop", img, mnt)
	os.MkdirAll(filepath.Join(mnt, "var/lib"), 0o755)
	testenv.Run(t, "cp", "-a", data, filepath.Join(mnt, "var/lib/docker"))
	testenv.Run(t, "umount", mnt)
	before := sha256File(t, img)
	testenv.Run(t, "mount", "-o", "ro,loop,noload", img, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	if out := mustAmber(t, "host", mnt); !strings.Contains(out, "web") || !strings.Contains(out, "ext4") {
		t.Errorf("amber host of the disk image:\n%s", out)
	}
	disk := filepath.Join(dir, "disk.tar.zst")
	mustAmber(t, "capture", "host", mnt, "web", "--volumes", "-o", disk)
	sameEvidence(t, live, disk, dir, "disk")
	if m := readManifest(t, disk); m.Acquisition.Docker.Offline.FSType != "ext4" || !strings.Contains(m.Acquisition.Docker.Offline.Options, "ro") {
		t.Errorf("acquisition of the disk image: %+v", m.Acquisition.Docker.Offline)
	}
	testenv.Run(t, "umount", mnt)
	if after := sha256File(t, img); after != before {
		t.Errorf("the disk image changed: %s, was %s", after, before)
	}

	// An attacker with root edits the image's first own layer on disk.
	var edited string
	for _, l := range strings.Split(lower, ":") {
		if _, err := os.Stat(filepath.Join(l, "etc/app/app.conf")); err == nil {
			edited = filepath.Join(l, "etc/app/app.conf")
		}
	}
	if edited == "" {
		t.Fatalf("no lower layer holds etc/app/app.conf: %s", lower)
	}
	os.WriteFile(edited, []byte("listen 80; backdoor\n"), 0o644)
	edit := filepath.Join(dir, "edit.tar.zst")
	mustAmber(t, "capture", "host", "/", "--docker-root", data, "web", "db2", "-o", edit)
	mustAmber(t, "verify", "--no-log", edit)
	findingOn(t, edit, "web", "/etc/app/app.conf")
	findingOn(t, edit, "db2", "/etc/app/app.conf")
	if out := mustAmber(t, "diff", edit, "containers/db2", "--path", "etc"); !strings.Contains(out, "! /etc/app/app.conf") {
		t.Errorf("amber diff --path etc hides the finding:\n%s", out)
	}
	if out := mustAmber(t, "diff", edit, "containers/db2", "--path", "/et"); strings.Contains(out, "! /etc/app/app.conf") {
		t.Errorf("amber diff --path /et shows a finding under /etc:\n%s", out)
	}

	// The engine again: it refuses to save the image; the live capture
	// does not refuse, it reads the layers from the engine's files.
	d.Start()
	liveEdit := filepath.Join(dir, "live-edit.tar.zst")
	r := amber(t, "capture", "container", "--runtime", "docker", "web", "-o", liveEdit)
	if r.code != 0 {
		t.Fatalf("live capture of the edited image: exit %d\n%s", r.code, r.stderr)
	}
	findingOn(t, liveEdit, "web", "/etc/app/app.conf")
	// Through the engine's save alone, the image cannot be had at all.
	r = amber(t, "capture", "container", "--runtime", "docker", "--images-from", "engine", "web", "-o", filepath.Join(dir, "engine.tar.zst"))
	if r.code != 8 || !strings.Contains(r.stderr, "file integrity checksum failed") {
		t.Errorf("--images-from engine of the edited image: exit %d %s; want the engine's refusal (exit 8)", r.code, r.stderr)
	}
	if log := mustAmber(t, "log", liveEdit); !strings.Contains(log, "image-read") || !strings.Contains(log, "tar-split") {
		t.Errorf("the custody log does not say the image was rebuilt from the engine's files:\n%s", log)
	}
}

// sameEvidence compares the container's trees in two archives through
// their mounts: listing and diff -r of rootfs, pristine and changes, and
// changes.txt.
func sameEvidence(t *testing.T, a, b, dir, tag string) {
	t.Helper()
	ma := mountArchive(t, a, filepath.Join(dir, tag+"-a"))
	mb := mountArchive(t, b, filepath.Join(dir, tag+"-b"))
	for _, v := range []string{"rootfs", "pristine", "changes"} {
		pa, pb := filepath.Join(ma, "containers/web", v), filepath.Join(mb, "containers/web", v)
		if la, lb := findListing(t, pa, noSkip), findListing(t, pb, noSkip); la != lb {
			t.Errorf("%s: %s differs offline:\n%s", tag, v, lineDiff(la, lb))
		}
		if out, err := exec.Command("diff", "-r", "--no-dereference", pa, pb).CombinedOutput(); err != nil {
			t.Errorf("%s: diff -r of %s: %v\n%s", tag, v, err, out)
		}
	}
	ca, _ := os.ReadFile(filepath.Join(ma, "containers/web/changes.txt"))
	cb, _ := os.ReadFile(filepath.Join(mb, "containers/web/changes.txt"))
	if string(ca) != string(cb) || len(ca) == 0 {
		t.Errorf("%s: changes.txt differs offline:\n%s", tag, lineDiff(string(ca), string(cb)))
	}
	amber(t, "umount", ma)
	amber(t, "umount", mb)
}

func noSkip(string) bool { return false }

// findingOn checks that an archive reports layer-modified-on-disk for
// path, and that amber diff of container ctr shows it.
func findingOn(t *testing.T, arch, ctr, path string) {
	t.Helper()
	found := false
	for _, an := range readManifest(t, arch).Anomalies {
		if an.Kind == "layer-modified-on-disk" && an.Path == path {
			found = true
		}
	}
	if !found {
		t.Errorf("%s: no layer-modified-on-disk finding on %s: %+v", filepath.Base(arch), path, readManifest(t, arch).Anomalies)
	}
	if out := mustAmber(t, "diff", arch, "containers/"+ctr); !strings.Contains(out, "! "+path+"  [layer-modified-on-disk") {
		t.Errorf("amber diff does not show the finding on %s:\n%s", path, out)
	}
}

// TestCaptureHostContainerd: a container of the test's own containerd,
// changed by an "attacker", captured live; containerd killed (a power
// cut); its root captured offline: rootfs, pristine and changes equal the
// live capture's, and amber host lists the container in its namespace.
func TestCaptureHostContainerd(t *testing.T) {
	testenv.FUSE(t)
	const ns = "amber-offline"
	d, id := testContainerd(t, ns)
	d.Ctr(t, ns, "run", "-d", "docker.io/library/amber-test:1", id, "sh", "-c", ctrCommand)
	d.Ctr(t, ns, "tasks", "exec", "--exec-id", "attacker", id, "sh", "-c", "echo planted > /srv/planted; rm -f /srv/data/a.txt")
	dir := t.TempDir()
	live := filepath.Join(dir, "live.tar.zst")
	mustAmber(t, "capture", "container", "--runtime", "containerd", "--address", d.Address, "--namespace", ns, id, "-o", live)
	d.Kill(t, syscall.SIGKILL)

	var listed struct {
		Containers []struct{ ID, Namespace, Runtime string } `json:"containers"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "host", "/", "--runtime", "containerd", "--containerd-root", d.Root, "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range listed.Containers {
		found = found || c.ID == id && c.Namespace == ns
	}
	if !found {
		t.Errorf("amber host does not list %s/%s: %+v", ns, id, listed.Containers)
	}
	dead := filepath.Join(dir, "dead.tar.zst")
	mustAmber(t, "capture", "host", "/", "--runtime", "containerd", "--containerd-root", d.Root, ns+"/"+id, "-o", dead)
	mustAmber(t, "verify", "--no-log", dead)
	ma := mountArchive(t, live, filepath.Join(dir, "a"))
	mb := mountArchive(t, dead, filepath.Join(dir, "b"))
	for _, v := range []string{"rootfs", "pristine", "changes"} {
		pa, pb := filepath.Join(ma, "containers", id, v), filepath.Join(mb, "containers", id, v)
		if la, lb := findListing(t, pa, noSkip), findListing(t, pb, noSkip); la != lb {
			t.Errorf("%s differs offline:\n%s", v, lineDiff(la, lb))
		}
	}
	if got := mustAmber(t, "cat", dead, "containers/"+id+"/rootfs/srv/planted"); got != "planted\n" {
		t.Errorf("the attacker's file offline: %q", got)
	}
	amber(t, "umount", ma)
	amber(t, "umount", mb)

	// An attacker with root edits the image's unpacked layer on disk:
	// every container on it sees the change, its blob does not.
	lowers, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/srv/data/creds"))
	if len(lowers) != 1 {
		t.Fatalf("the image's unpacked layer holding srv/data/creds: %v", lowers)
	}
	os.WriteFile(lowers[0], []byte("backdoor\n"), 0o600)
	edit := filepath.Join(dir, "edit.tar.zst")
	mustAmber(t, "capture", "host", "/", "--runtime", "containerd", "--containerd-root", d.Root, ns+"/"+id, "-o", edit)
	mustAmber(t, "verify", "--no-log", edit)
	findingOn(t, edit, id, "/srv/data/creds")
	if got := mustAmber(t, "cat", edit, "containers/"+id+"/pristine/srv/data/creds"); got != "backdoor\n" {
		t.Errorf("the pristine tree holds the layer as found? %q", got)
	}
}

// TestCaptureHostPodman: a Podman container of the test's own storage,
// changed, captured live from the storage; then Podman stopped and its run
// root deleted (a dead host has none): amber host lists it with the state
// libpod recorded, and amber capture host gives the same trees.
func TestCaptureHostPodman(t *testing.T) {
	testenv.Podman(t)
	testenv.FUSE(t)
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
	const name = "amber-host-podman"
	pm("load", "-q", "-i", save)
	pm("run", "-d", "--name", name, "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "amber-test:1", "sh", "-c",
		"echo planted > /srv/planted; rm -f /srv/data/a.txt; echo ready > /tmp/ready; exec sleep 1000")
	testenv.Shell(t, `for i in $(seq 100); do podman --root '`+root+`' --runroot '`+runRoot+`' exec `+name+` test -f /tmp/ready && exit 0; sleep 0.1; done; exit 1`)
	pm("stop", "-t", "0", name)
	dir := t.TempDir()
	live := filepath.Join(dir, "live.tar.zst")
	mustAmber(t, "capture", "container", "--runtime", "podman", "--podman-root", root, "--podman-runroot", runRoot, name, "--no-memory", "-o", live)
	os.RemoveAll(runRoot)

	var listed struct {
		Containers []struct{ Name, State, Runtime string } `json:"containers"`
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "host", "/", "--runtime", "podman", "--podman-root", root, "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Containers) != 1 || listed.Containers[0].Name != name || listed.Containers[0].State != "exited" {
		t.Errorf("amber host lists %+v; want %s, exited", listed.Containers, name)
	}
	dead := filepath.Join(dir, "dead.tar.zst")
	mustAmber(t, "capture", "host", "/", "--runtime", "podman", "--podman-root", root, name, "-o", dead)
	mustAmber(t, "verify", "--no-log", dead)
	ma := mountArchive(t, live, filepath.Join(dir, "a"))
	mb := mountArchive(t, dead, filepath.Join(dir, "b"))
	for _, v := range []string{"rootfs", "pristine", "changes"} {
		pa, pb := filepath.Join(ma, "containers", name, v), filepath.Join(mb, "containers", name, v)
		if la, lb := findListing(t, pa, noSkip), findListing(t, pb, noSkip); la != lb {
			t.Errorf("%s differs offline:\n%s", v, lineDiff(la, lb))
		}
	}
	if got := mustAmber(t, "cat", dead, "containers/"+name+"/rootfs/srv/planted"); got != "planted\n" {
		t.Errorf("the planted file offline: %q", got)
	}
}

// TestHostCommandLine: amber host on a synthetic dead host (bench/fakehost:
// records only, no layer) lists what its records say; the usage errors
// and an unreadable state have their exit codes.
func TestHostCommandLine(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "host")
	testenv.Run(t, "go", "run", "../../bench/fakehost", "-o", root, "-containers", "3", "-images", "5")
	var listed struct {
		Runtimes   []hostRuntime `json:"runtimes"`
		Containers []struct{ Name, State, Pod, Runtime string }
		Images     []struct{ Refs []string }
	}
	// ROOT given through a link and relative: resolved once, here.
	os.Symlink(root, filepath.Join(dir, "link"))
	cmd := exec.Command(amberBin, "host", "link", "--json")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("amber host: %v", err)
	}
	if err := json.Unmarshal(out, &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Containers) != 3 || len(listed.Images) != 5 || len(listed.Runtimes) != 1 || listed.Runtimes[0].Name != "docker" {
		t.Errorf("amber host lists %d containers, %d images, runtimes %+v; want 3, 5, docker", len(listed.Containers), len(listed.Images), listed.Runtimes)
	}
	if c := listed.Containers[0]; c.Name != "web-0" || c.State != "running" || c.Pod != "default/web-0" {
		t.Errorf("first container %+v; want web-0, running at shutdown, pod default/web-0", c)
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"host", t.TempDir()}, 5, "no container runtime's state"},
		{[]string{"host", filepath.Join(root, "var/lib/docker/image/overlay2/repositories.json")}, exitUsage, "not a directory"},
		{[]string{"capture", "host", root, "web-0"}, exitUsage, "capture host needs -o"},
		{[]string{"capture", "host", root, "-o", filepath.Join(dir, "x.tar.zst")}, exitUsage, "--all"},
		{[]string{"capture", "host", root, "nosuch", "-o", filepath.Join(dir, "x.tar.zst")}, 5, "no such container"},
		{[]string{"host", root, "--runtime", "lxc"}, exitUsage, "--runtime"},
		{[]string{"host", root, "--docker-root", "/nope"}, 5, "--docker-root /nope"},
	} {
		r := amber(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("amber %s: exit %d, %q; want %d saying %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.says)
		}
	}
	// A data root whose state cannot be read: found, named, exit 8.
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(filepath.Join(bad, "var/lib"), 0o755)
	os.WriteFile(filepath.Join(bad, "var/lib/docker"), []byte("not a directory"), 0o644)
	if r := amber(t, "host", bad); r.code != 8 || !strings.Contains(r.stderr, "no runtime's state could be read") {
		t.Errorf("amber host of an unreadable data root: exit %d %q", r.code, r.stderr)
	}
}
