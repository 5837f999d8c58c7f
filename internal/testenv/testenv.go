package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the CI variable is set: then nothing may be skipped.
func InCI() bool { return os.Getenv("CI") != "" }

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...) // outside CI only: missing() fails the test in CI
}

// Tool returns the path of an external program, failing in CI and skipping
// elsewhere when it is not installed.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s is not installed (make deps installs it)", name)
	}
	return p
}

// Docker checks that a Docker engine answers, failing in CI and skipping
// elsewhere when it does not.
func Docker(t testing.TB) {
	t.Helper()
	Tool(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.APIVersion}}").CombinedOutput()
	if err != nil {
		missing(t, "no Docker engine: %v: %s", err, strings.TrimSpace(string(out)))
	}
}

// Run runs a command and fails the test on error, returning stdout.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// Shell runs a shell pipeline and fails the test on error.
func Shell(t testing.TB, script string) string {
	t.Helper()
	return Run(t, "sh", "-c", "set -e; "+script)
}

// FUSE checks that this process can mount FUSE file systems: /dev/fuse,
// and root (direct mount) or fusermount3.
func FUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing(t, "no /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		Tool(t, "fusermount3")
	}
}

// Root checks that the test runs as root (to keep owners when extracting).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root")
	}
}

// ContainerdDaemon is a containerd of the test's own: its root, state
// directory and socket under a temporary directory, stopped (its tasks
// killed, its mounts undone, the directory removed) when the test ends.
type ContainerdDaemon struct {
	Address, Root, State string
	dir, bin             string
	cmd                  *exec.Cmd
}

// Containerd starts a private containerd (Debian's containerd package,
// without its CRI plugin), failing in CI and skipping elsewhere when it
// cannot. The system's own containerd (/run/containerd) is never touched.
func Containerd(t testing.TB) *ContainerdDaemon {
	t.Helper()
	Root(t)
	bin := Tool(t, "containerd")
	Tool(t, "ctr")
	Tool(t, "runc")
	dir, err := os.MkdirTemp("", "amber-containerd")
	if err != nil {
		t.Fatal(err)
	}
	d := &ContainerdDaemon{Address: filepath.Join(dir, "sock"), Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), dir: dir}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, d.Root, d.State, d.Address, d.Address+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d.bin = bin
	t.Cleanup(d.stop)
	if err := d.start(); err != nil {
		missing(t, "starting containerd: %v", err)
	}
	return d
}

// start starts containerd on the daemon's directory and waits until it
// answers.
func (d *ContainerdDaemon) start() error {
	logf, err := os.OpenFile(filepath.Join(d.dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, "--config", filepath.Join(d.dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd = cmd
	for start := time.Now(); exec.Command("ctr", "-a", d.Address, "version").Run() != nil; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			log, _ := os.ReadFile(filepath.Join(d.dir, "containerd.log"))
			return fmt.Errorf("own containerd did not come up:\n%s", log)
		}
	}
	return nil
}

// Pid is the running containerd's process ID (0 when stopped).
func (d *ContainerdDaemon) Pid() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Kill sends sig to containerd and waits for it to exit, as systemctl
// stop (SIGTERM) or a crash (SIGKILL) would: its tasks and their shims
// live on, as they do when containerd stops.
func (d *ContainerdDaemon) Kill(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}

// Restart starts containerd again after Kill, on the same root, state
// and socket: it takes its running tasks' shims over.
func (d *ContainerdDaemon) Restart(t testing.TB) {
	t.Helper()
	if d.cmd != nil {
		return
	}
	if err := d.start(); err != nil {
		t.Fatalf("restarting containerd: %v", err)
	}
}

// Ctr runs ctr against this containerd in namespace ns, failing the test
// on error, and returns its output.
func (d *ContainerdDaemon) Ctr(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return Run(t, "ctr", append([]string{"-a", d.Address, "-n", ns}, args...)...)
}

// stop kills every task (their shims exit with them), stops containerd
// and removes what it left.
func (d *ContainerdDaemon) stop() {
	// A containerd a test stopped comes back to kill its tasks.
	if d.cmd == nil {
		d.start()
	}
	ctr := func(args ...string) string {
		out, _ := exec.Command("ctr", append([]string{"-a", d.Address}, args...)...).Output()
		return string(out)
	}
	for _, ns := range strings.Fields(ctr("namespaces", "ls", "-q")) {
		for _, id := range strings.Fields(ctr("-n", ns, "tasks", "ls", "-q")) {
			// A frozen task (a test that failed) takes no signal.
			ctr("-n", ns, "tasks", "resume", id)
			ctr("-n", ns, "tasks", "kill", "-s", "SIGKILL", id)
			for i := 0; i < 50; i++ {
				if !strings.Contains(ctr("-n", ns, "tasks", "ls"), "RUNNING") {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			ctr("-n", ns, "tasks", "delete", "-f", id)
		}
	}
	if d.cmd != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		lines := strings.Split(string(b), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if f := strings.Fields(lines[i]); len(f) > 1 && strings.HasPrefix(f[1], d.dir+"/") {
				exec.Command("umount", "-l", f[1]).Run()
			}
		}
	}
	os.RemoveAll(d.dir)
}

// Podman checks that Podman is installed and the test runs as root
// (rootful Podman, the storage the capture reads), failing in CI and
// skipping elsewhere. Tests give it their own --root, --runroot and
// --tmpdir, never the machine's storage.
func Podman(t testing.TB) string {
	t.Helper()
	Root(t)
	return Tool(t, "podman")
}

// BusyboxImage builds a test image with the host's Docker engine (no
// registry): a base image named base of busybox-static (the binary, its
// applet links, /etc/passwd) from docker import, then image from
// dockerfile (whose FROM names base) in dir, saved there with docker save;
// it returns the tar's path. keep leaves both images in the engine (tests
// that run containers of them); else they are removed once saved. busybox
// is the static binary's path (Tool(t, "busybox")).
func BusyboxImage(busybox, dir, base, image, dockerfile string, keep bool) (string, error) {
	rmi := ""
	if !keep {
		rmi = fmt.Sprintf("docker rmi %s %s >/dev/null\n", image, base)
	}
	script := fmt.Sprintf(`set -e
cd %q
mkdir -p rootfs/bin rootfs/etc rootfs/tmp
cp %q rootfs/bin/busybox
for a in $(rootfs/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox rootfs/bin/$a; done
echo 'root:x:0:0:root:/root:/bin/sh' > rootfs/etc/passwd
tar -C rootfs -c . | docker import - %s >/dev/null
cat > Dockerfile <<'DOCKERFILE'
%sDOCKERFILE
docker build -q -t %s . >/dev/null
docker save -o image.tar %s
%s`, dir, busybox, base, dockerfile, image, image, rmi)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the test image %s: %v\n%s", image, err, out)
	}
	return filepath.Join(dir, "image.tar"), nil
}
