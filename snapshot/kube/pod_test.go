package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// TestFindPodCRI: a pod of two containers made through the CRI of the
// test's own containerd, as kubelet makes it: FindPod finds its sandbox
// and both containers; their CRI log files read back what they printed
// (a line longer than containerd's 16 KiB split joined again), with
// their times; a log path outside the pod's log directory, or a link
// leading out of it, is refused; a malformed line is flagged, not fatal.
func TestFindPodCRI(t *testing.T) {
	r := testenv.CRI(t)
	const ns, name, uid = "prod", "web-7d9f", "5e1c0d6a-2b3f-4c8e-9d7a-1f2e3d4c5b6a"
	long := strings.Repeat("x", 40000)
	start := time.Now()
	p := r.RunPod(ns, name, uid,
		testenv.CRIContainer{Name: "app", Command: []string{"sh", "-c",
			"echo out-one; echo err-one >&2; printf '%s\\n' " + long + "; echo out-done; exec sleep 2147483647"}},
		testenv.CRIContainer{Name: "sidecar", Command: []string{"sh", "-c", "echo side-out; exec sleep 2147483647"}})
	cri, err := Dial(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer cri.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	pod, err := FindPod(ctx, cri, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if pod.UID != uid || pod.Sandbox.ID != p.SandboxID || pod.Sandbox.State != "SANDBOX_READY" || pod.Sandbox.Labels["app"] != name ||
		pod.Sandbox.Annotations["amber.test/note"] == "" || pod.Sandbox.Pid <= 0 || pod.Sandbox.LogDirectory != p.LogDir {
		t.Errorf("sandbox %+v (pod uid %s), want %s ready, pid, labels, log directory %s", pod.Sandbox, pod.UID, p.SandboxID, p.LogDir)
	}
	if !strings.Contains(string(pod.Sandbox.Status), `"SANDBOX_READY"`) || !strings.Contains(string(pod.Sandbox.Status), "runtimeSpec") {
		t.Errorf("sandbox status JSON lacks the state or the verbose info: %.300s", pod.Sandbox.Status)
	}
	if len(pod.Containers) != 2 {
		t.Fatalf("containers %+v", pod.Containers)
	}
	for i, want := range []string{"app", "sidecar"} {
		c := pod.Containers[i]
		if c.Name != want || c.ID != p.Containers[want] || c.State != "CONTAINER_RUNNING" || c.Pid <= 0 ||
			!strings.Contains(c.Image, "cri-busybox") || c.LogPath != filepath.Join(p.LogDir, want, "0.log") ||
			c.Labels[LabelContainerName] != want || len(c.Status) == 0 {
			t.Errorf("container %d: %+v, want %s %s running with pid, image, log path", i, c, want, p.Containers[want])
		}
	}

	app := pod.Containers[0]
	waitFor(t, app.LogPath, "out-done")
	waitFor(t, pod.Containers[1].LogPath, "side-out")
	// A line the runtime never wrote: flagged, and the rest still read.
	f, err := os.OpenFile(app.LogPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("this is not a CRI log line\n")
	f.Close()

	lf, err := pod.OpenLog(r.LogRoot, app, 0)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr []LogLine
	for {
		l, err := lf.Next()
		if err != nil {
			break
		}
		if l.Time.Before(start.Add(-time.Second)) || l.Time.After(time.Now()) {
			t.Errorf("line %q has the time %v, not during the test", l.Text, l.Time)
		}
		if l.Stream == "stdout" {
			stdout = append(stdout, l)
		} else {
			stderr = append(stderr, l)
		}
	}
	lf.Close()
	if len(stdout) != 3 || string(stdout[0].Text) != "out-one" || string(stdout[1].Text) != long || string(stdout[2].Text) != "out-done" {
		t.Errorf("stdout: %d lines %.300v", len(stdout), stdout)
	}
	if len(stderr) != 1 || string(stderr[0].Text) != "err-one" {
		t.Errorf("stderr %v", stderr)
	}
	if lf.MalformedLines() != 1 || !strings.Contains(lf.Problems()[0].Reason, "not a CRI") {
		t.Errorf("malformed line not flagged: %d %v", lf.MalformedLines(), lf.Problems())
	}

	lf, err = pod.OpenLog(r.LogRoot, pod.Containers[1], 0)
	if err != nil {
		t.Fatal(err)
	}
	var out, errs strings.Builder
	if err := lf.Copy(&out, &errs); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	if !strings.HasSuffix(out.String(), "Z side-out\n") || errs.Len() != 0 {
		t.Errorf("sidecar's logs: %q / %q", out.String(), errs.String())
	}

	// The log path is the runtime's word.
	secret := filepath.Join(r.Dir, "host-secret")
	os.WriteFile(secret, []byte("2026-12-02T02:46:07Z stdout F host secret\n"), 0o600)
	os.Symlink(secret, filepath.Join(p.LogDir, "app", "1.log"))
	os.Symlink("../../../host-secret", filepath.Join(p.LogDir, "app", "2.log"))
	os.Mkdir(filepath.Join(p.LogDir, "fifo"), 0o755)
	for _, bad := range []string{secret, filepath.Join(p.LogDir, "..", "host-secret"), filepath.Join(p.LogDir, "app", "1.log"),
		filepath.Join(p.LogDir, "app", "2.log"), p.LogDir, "app/0.log", filepath.Join(p.LogDir, "app")} {
		c := app
		c.LogPath = bad
		lf, err := pod.OpenLog(r.LogRoot, c, 0)
		if err == nil {
			lf.Close()
			t.Errorf("log path %s was opened", bad)
		} else if !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("log path %s: %v, want an ErrEngineClaim", bad, err)
		}
	}

	if _, err := FindPod(ctx, cri, ns, "no-such-pod"); !errors.Is(err, engine.ErrNoSuchObject) {
		t.Errorf("unknown pod: %v", err)
	}
	if _, err := FindPod(ctx, cri, "../etc", name); !errors.Is(err, engine.ErrNoSuchObject) {
		t.Errorf("a namespace that is a path: %v", err)
	}
}

// waitFor waits until the file holds s.
func waitFor(t *testing.T, path, s string) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(100 * time.Millisecond) {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), s) {
			return
		}
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("%s never held %q: %.500q", path, s, b)
}
