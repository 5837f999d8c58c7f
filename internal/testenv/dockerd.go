package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// DockerDaemon is a dockerd of the test's own (data root, exec root with
// its own containerd, socket, bridge), so that the test can stop it and
// read what it left.
type DockerDaemon struct {
	t       testing.TB
	dockerd string
	dir     string
	host    string
	bridge  string
	cmd     *exec.Cmd
}

// Dockerd starts a private dockerd, failing in CI and skipping elsewhere
// when it cannot (not root, no dockerd); it is stopped and its directory
// removed when the test ends. The host's engine is never touched: the
// daemon has a bridge of its own (with --bridge none dockerd deletes the
// host's docker0, and sharing docker0 with the host's engine would
// clash), named and numbered at random so that two tests' daemons do not
// meet.
func Dockerd(t testing.TB) *DockerDaemon {
	t.Helper()
	Root(t)
	dockerd := Tool(t, "dockerd")
	Tool(t, "docker")
	dir, err := os.MkdirTemp("", "amber-dockerd")
	if err != nil {
		t.Fatal(err)
	}
	var r [4]byte
	rand.Read(r[:])
	d := &DockerDaemon{t: t, dockerd: dockerd, dir: dir, host: "unix://" + filepath.Join(dir, "sock"), bridge: "amber-" + hex.EncodeToString(r[:])}
	os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o644)
	subnet := fmt.Sprintf("10.213.%d.1/24", r[0])
	for _, c := range [][]string{{"link", "add", d.bridge, "type", "bridge"}, {"addr", "add", subnet, "dev", d.bridge}, {"link", "set", d.bridge, "up"}} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			exec.Command("ip", "link", "del", d.bridge).Run()
			os.RemoveAll(dir)
			t.Fatalf("ip %v: %v %s", c, err, out)
		}
	}
	t.Cleanup(func() {
		d.Stop(syscall.SIGKILL)
		exec.Command("ip", "link", "del", d.bridge).Run()
		// Its containerd, shims and mounts go with it: every process
		// named with this daemon's own directory.
		exec.Command("pkill", "-9", "-f", dir).Run()
		exec.Command("sh", "-c", fmt.Sprintf("grep -o ' %s[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l", dir)).Run()
		os.RemoveAll(dir)
	})
	d.Start()
	return d
}

// Host is the daemon's address, for docker -H or DOCKER_HOST.
func (d *DockerDaemon) Host() string { return d.host }

// DataRoot is the daemon's data root (its /var/lib/docker).
func (d *DockerDaemon) DataRoot() string { return filepath.Join(d.dir, "root") }

// Dir is the directory holding all of the daemon's state (data root,
// exec root, socket, log).
func (d *DockerDaemon) Dir() string { return d.dir }

// Start starts dockerd (again, after Stop) and waits until it answers.
func (d *DockerDaemon) Start() {
	d.t.Helper()
	if d.cmd != nil {
		return
	}
	dir := d.dir
	cmd := exec.Command(d.dockerd, "--config-file", filepath.Join(dir, "daemon.json"),
		"--data-root", d.DataRoot(), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"), "-H", d.host, "--bridge", d.bridge,
		"--iptables=false", "--ip-masq=false", "--shutdown-timeout", "2")
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.cmd = cmd
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if exec.Command("docker", "-H", d.host, "version").Run() == nil {
			return
		}
		if time.Since(start) > 60*time.Second {
			log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			d.t.Fatalf("own dockerd did not come up:\n%s", log)
		}
	}
}

// Stop signals dockerd and waits for it to exit (SIGTERM as systemctl
// stop does, SIGKILL as a crash).
func (d *DockerDaemon) Stop(sig syscall.Signal) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(sig)
	d.cmd.Wait()
	d.cmd = nil
	if sig == syscall.SIGKILL {
		// Its containerd outlives it and a new dockerd cannot take it
		// over: stop it as a reboot would (the shims it leaves are taken
		// over by the next containerd).
		pat := filepath.Join(d.dir, "exec", "containerd", "containerd.toml")
		exec.Command("pkill", "-f", pat).Run()
		for i := 0; i < 100 && exec.Command("pgrep", "-f", pat).Run() == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		// Its pid may live on as a zombie (this machine's init does not
		// reap), which dockerd would take for a running containerd.
		os.Remove(filepath.Join(d.dir, "exec", "containerd", "containerd.pid"))
	}
}

// Docker runs the docker CLI against this daemon, failing the test on
// error, and returns its output.
func (d *DockerDaemon) Docker(args ...string) string {
	d.t.Helper()
	return Run(d.t, "docker", append([]string{"-H", d.host}, args...)...)
}
