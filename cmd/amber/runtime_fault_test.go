package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/testenv"
)

// bigMemory is a container command whose shell holds 100 MB (its memory
// dump takes a while) and says when it does.
const bigMemory = `x=$(head -c 100000000 /dev/zero | tr '\0' a); touch /tmp/ready; while :; do sleep 1; done`

// freezerFile is the cgroup freezer file of pid's cgroup: v1's
// freezer.state, or v2's cgroup.freeze ("" when pid has none).
func freezerFile(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	var v2 string
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "freezer" {
				return filepath.Join("/sys/fs/cgroup/freezer", f[2], "freezer.state")
			}
		}
		if f[0] == "0" {
			v2 = filepath.Join("/sys/fs/cgroup", f[2], "cgroup.freeze")
		}
	}
	return v2
}

// frozen says whether the kernel holds pid's cgroup frozen, read from the
// cgroup freezer itself (an independent oracle: no runtime asked).
func frozen(t *testing.T, pid int) bool {
	t.Helper()
	f := freezerFile(pid)
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("the freezer of process %d (%q): %v", pid, f, err)
	}
	v := strings.TrimSpace(string(b))
	return v == "FROZEN" || v == "FREEZING" || v == "1"
}

// ctrTask is one task of `ctr tasks ls`: its PID and status.
func ctrTask(t *testing.T, d *testenv.ContainerdDaemon, ns, id string) (int, string) {
	t.Helper()
	for _, l := range strings.Split(d.Ctr(t, ns, "tasks", "ls"), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return pid, f[2]
		}
	}
	return 0, ""
}

// ctrVictim runs a containerd task holding 100 MB, unless one runs, and
// returns its PID.
func ctrVictim(t *testing.T, d *testenv.ContainerdDaemon, ns, id string) int {
	t.Helper()
	if pid, st := ctrTask(t, d, ns, id); st == "RUNNING" {
		return pid
	}
	exec.Command("ctr", "-a", d.Address, "-n", ns, "tasks", "kill", "-s", "SIGKILL", id).Run()
	time.Sleep(200 * time.Millisecond)
	exec.Command("ctr", "-a", d.Address, "-n", ns, "tasks", "delete", "-f", id).Run()
	exec.Command("ctr", "-a", d.Address, "-n", ns, "containers", "delete", id).Run()
	d.Ctr(t, ns, "run", "-d", "docker.io/library/amber-test:1", id, "sh", "-c", bigMemory)
	for i := 0; i < 400; i++ {
		if exec.Command("ctr", "-a", d.Address, "-n", ns, "tasks", "exec", "--exec-id", fmt.Sprintf("ready%d", i), id, "test", "-e", "/tmp/ready").Run() == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid, st := ctrTask(t, d, ns, id)
	if st != "RUNNING" {
		t.Fatalf("the victim task is %q", st)
	}
	return pid
}

// outputsLeft lists what a capture left at the output name out: the
// archive, its partial file, its sidecars.
func outputsLeft(out string) []string {
	left, _ := filepath.Glob(out + "*")
	return left
}

// TestCaptureContainerdStopped: containerd is stopped (SIGTERM, as
// systemctl stop does, or SIGKILL) at random moments of a --pause capture
// of one of its containers: the capture either finished before (and the
// archive verifies) or fails with exit 8 and a message naming containerd,
// with nothing at the output name (no archive, no partial file, no
// sidecar); either way the container is not left frozen (its cgroup
// freezer read directly): amber thaws it itself when containerd is gone.
func TestCaptureContainerdStopped(t *testing.T) {
	const ns = "amber-fault"
	d, id := testContainerd(t, ns)
	dir := t.TempDir()
	capture := func(out string) *exec.Cmd {
		return ctrdCapture(d, ns, id, out, "--pause")
	}
	pid := ctrVictim(t, d, ns, id)
	start := time.Now()
	if out, err := capture(filepath.Join(dir, "whole.tar.zst")).CombinedOutput(); err != nil {
		t.Fatalf("capture from the test's own containerd: %v\n%s", err, out)
	}
	took := time.Since(start)
	mustAmber(t, "verify", "--no-log", filepath.Join(dir, "whole.tar.zst"))
	if frozen(t, pid) {
		t.Fatal("a whole --pause capture left the container frozen")
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	failed := 0
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL, syscall.SIGTERM, syscall.SIGKILL, syscall.SIGTERM, syscall.SIGKILL} {
		pid := ctrVictim(t, d, ns, id)
		out := filepath.Join(dir, fmt.Sprintf("stopped%d.tar.zst", i))
		cmd := capture(out)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int63n(int64(took)))
		time.Sleep(delay)
		d.Kill(t, sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			<-done
			t.Fatalf("%v of containerd at %v: the capture hangs", sig, delay)
		}
		when := fmt.Sprintf("%v of containerd at %v of %v", sig, delay.Round(time.Millisecond), took.Round(time.Millisecond))
		t.Logf("%s: %v %s", when, err, strings.TrimSpace(stderr.String()))
		if frozen(t, pid) {
			t.Errorf("%s: the container is left frozen", when)
		}
		if err == nil {
			mustAmber(t, "verify", "--no-log", out)
		} else {
			failed++
			if code := cmd.ProcessState.ExitCode(); code != exitEngine {
				t.Errorf("%s: exit %d, want %d\n%s", when, code, exitEngine, stderr.String())
			}
			if !strings.Contains(stderr.String(), "containerd") {
				t.Errorf("%s: the message does not name containerd: %s", when, stderr.String())
			}
			if left := outputsLeft(out); len(left) > 0 {
				t.Errorf("%s: left at the output name: %v", when, left)
			}
		}
		noLeftovers(t, dir, when)
		// A task amber thawed itself while containerd was away is still
		// paused in its shim's record (runc resume refuses a thawed
		// cgroup): its processes run, which is what matters; the next
		// round starts a new task.
		d.Restart(t)
		if p, st := ctrTask(t, d, ns, id); p != pid || frozen(t, pid) {
			t.Errorf("%s: after containerd's restart the task is %q (pid %d, was %d), frozen", when, st, p, pid)
		} else {
			t.Logf("%s: after containerd's restart containerd says %s; the cgroup is thawed", when, st)
		}
	}
	if failed == 0 {
		t.Errorf("containerd never stopped before a capture ended (captures take %v): the test proved nothing", took)
	}
}

// TestCaptureContainerdTaskKilled: the container's main process (holding
// 100 MB) is killed at random moments of a capture, mostly during its
// memory dump: the capture goes on and records the loss (a process whose
// dump is not whole says what was lost) into an archive that verifies, or
// fails as the container gone (exit 10) with nothing at the output name;
// it never hangs.
func TestCaptureContainerdTaskKilled(t *testing.T) {
	const ns = "amber-fault"
	d, id := testContainerd(t, ns)
	dir := t.TempDir()
	capture := func(out string) *exec.Cmd {
		return ctrdCapture(d, ns, id, out)
	}
	ctrVictim(t, d, ns, id)
	start := time.Now()
	if out, err := capture(filepath.Join(dir, "whole.tar.zst")).CombinedOutput(); err != nil {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	took := time.Since(start)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	lost := 0
	for i := 0; i < 5; i++ {
		pid := ctrVictim(t, d, ns, id)
		out := filepath.Join(dir, fmt.Sprintf("killed%d.tar.zst", i))
		cmd := capture(out)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int63n(int64(took) / 2))
		time.Sleep(delay)
		syscall.Kill(pid, syscall.SIGKILL)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			<-done
			t.Fatalf("the task killed at %v: the capture hangs", delay)
		}
		when := fmt.Sprintf("the task killed at %v of %v", delay.Round(time.Millisecond), took.Round(time.Millisecond))
		t.Logf("%s: %v %s", when, err, strings.TrimSpace(stderr.String()))
		if err != nil {
			if code := cmd.ProcessState.ExitCode(); code != exitGone {
				t.Errorf("%s: exit %d, want 0 or %d\n%s", when, code, exitGone, stderr.String())
			}
			if left := outputsLeft(out); len(left) > 0 {
				t.Errorf("%s: left at the output name: %v", when, left)
			}
			noLeftovers(t, dir, when)
		} else {
			mustAmber(t, "verify", "--no-log", out)
			lost += lostOf(t, out, pid, when)
		}
		// Its end seen by containerd before the next round starts one.
		for j := 0; j < 100; j++ {
			if _, st := ctrTask(t, d, ns, id); st != "RUNNING" {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("%d captures recorded a loss", lost)
}

// lostOf checks the record of process pid's memory in the archive out: a
// dump that is not whole (100 MB) says what was lost. It returns 1 when
// a loss is recorded.
func lostOf(t *testing.T, out string, pid int, when string) int {
	t.Helper()
	lost := 0
	{
		m := readManifest(t, out)
		for _, a := range m.Artifacts {
			if a.Container == nil {
				continue
			}
			for _, p := range a.Container.Processes {
				if p.PID != pid {
					continue
				}
				t.Logf("%s: process %d: %d bytes, lost %q", when, p.PID, p.Bytes, p.Lost)
				if p.Lost != "" {
					lost = 1
				} else if p.Bytes < 100_000_000 {
					t.Errorf("%s: process %d's memory is %d bytes and nothing is said lost: a silent partial dump", when, p.PID, p.Bytes)
				}
			}
		}
	}
	return lost
}

// sigintPaused sends SIGINT to amber at random moments of --pause
// captures (capture returns the command, pid the container's PID): each
// ends with an archive that verifies or exit 130 and nothing at the output
// name, and the container's cgroup is never left frozen.
func sigintPaused(t *testing.T, capture func(out string) *exec.Cmd, pid func() int) {
	dir := t.TempDir()
	p := pid()
	start := time.Now()
	if out, err := capture(filepath.Join(dir, "whole.tar.zst")).CombinedOutput(); err != nil {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	took := time.Since(start)
	if frozen(t, p) {
		t.Fatal("a whole --pause capture left the container frozen")
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	interrupted := 0
	for i := 0; i < 6; i++ {
		p := pid()
		out := filepath.Join(dir, fmt.Sprintf("int%d.tar.zst", i))
		cmd := capture(out)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int63n(int64(took)))
		time.Sleep(delay)
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			<-done
			t.Fatalf("SIGINT at %v: the capture hangs", delay)
		}
		when := fmt.Sprintf("SIGINT at %v of %v", delay.Round(time.Millisecond), took.Round(time.Millisecond))
		t.Logf("%s: %v %s", when, err, strings.TrimSpace(stderr.String()))
		if frozen(t, p) {
			t.Errorf("%s: the container is left frozen", when)
		}
		if err == nil {
			mustAmber(t, "verify", "--no-log", out)
			continue
		}
		interrupted++
		// -1: the signal came before amber installed its handler (it had
		// done nothing yet), as TestCaptureSignalsRandom allows.
		if code := cmd.ProcessState.ExitCode(); code != exitInterrupted && code != -1 {
			t.Errorf("%s: exit %d, want %d\n%s", when, code, exitInterrupted, stderr.String())
		}
		if left := outputsLeft(out); len(left) > 0 {
			t.Errorf("%s: left at the output name: %v", when, left)
		}
		noLeftovers(t, dir, when)
	}
	if interrupted == 0 {
		t.Errorf("no SIGINT came before a capture ended (captures take %v): the test proved nothing", took)
	}
}

// TestCaptureContainerdPauseInterrupted: SIGINT at random moments of a
// --pause capture of a containerd task never leaves it frozen, nor paused
// in containerd's record.
func TestCaptureContainerdPauseInterrupted(t *testing.T) {
	const ns = "amber-fault"
	d, id := testContainerd(t, ns)
	sigintPaused(t, func(out string) *exec.Cmd {
		return ctrdCapture(d, ns, id, out, "--pause")
	}, func() int {
		if _, st := ctrTask(t, d, ns, id); st != "" && st != "RUNNING" {
			t.Errorf("containerd's record of the task after an interrupted capture: %s", st)
			exec.Command("ctr", "-a", d.Address, "-n", ns, "tasks", "resume", id).Run()
		}
		return ctrVictim(t, d, ns, id)
	})
	if _, st := ctrTask(t, d, ns, id); st != "RUNNING" {
		t.Errorf("containerd's record of the task at the end: %s", st)
	}
}

// TestCapturePodmanPauseInterrupted: SIGINT at random moments of a
// --pause capture of a Podman container (its storage read directly, its
// cgroup frozen by amber) never leaves it frozen.
func TestCapturePodmanPauseInterrupted(t *testing.T) {
	testenv.Podman(t)
	save := dockerImage(t)
	// Podman refuses a run root of more than 50 characters: t.TempDir's
	// names this test.
	base, err := os.MkdirTemp("", "amber-pm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	root, runRoot := filepath.Join(base, "root"), filepath.Join(base, "run")
	pmArgs := func(a ...string) []string {
		return append([]string{"--root", root, "--runroot", runRoot, "--tmpdir", filepath.Join(base, "tmp")}, a...)
	}
	pm := func(a ...string) string {
		t.Helper()
		return strings.TrimSpace(testenv.Run(t, "podman", pmArgs(a...)...))
	}
	t.Cleanup(func() {
		exec.Command("podman", pmArgs("rm", "-f", "-a", "-t", "0")...).Run()
		exec.Command("podman", pmArgs("system", "reset", "-f")...).Run()
	})
	const name = "amber-fault-podman"
	pm("load", "-q", "-i", save)
	pm("run", "-d", "--name", name, "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"amber-test:1", "sh", "-c", bigMemory)
	for i := 0; i < 400 && exec.Command("podman", pmArgs("exec", name, "test", "-e", "/tmp/ready")...).Run() != nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	sigintPaused(t, func(out string) *exec.Cmd {
		return exec.Command(amberBin, "capture", "container", "--runtime", "podman", "--podman-root", root, "--podman-runroot", runRoot, name, "--pause", "-o", out)
	}, func() int {
		pid, err := strconv.Atoi(pm("inspect", "--format", "{{.State.Pid}}", name))
		if err != nil || pid <= 0 {
			t.Fatalf("podman's container pid: %v", err)
		}
		return pid
	})
}
