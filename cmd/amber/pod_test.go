package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestCapturePod: a pod of two containers that the test's own containerd
// runs through its CRI as kubelet would, captured with amber capture pod:
// both containers as containers/<ns>_<pod>_<container> (rootfs, memory,
// the logs from the CRI log files with their times), the pod's metadata
// under pods/<ns>_<pod>/, the archive verifies, the custody log names the
// pod and containerd, and the sandbox is recorded, not captured; with
// --sandbox it is captured too, as containers/<ns>_<pod>_POD.
func TestCapturePod(t *testing.T) {
	r := testenv.CRI(t)
	const ns, name, uid = "prod", "web-7d9f", "0b9a8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
	p := r.RunPod(ns, name, uid,
		testenv.CRIContainer{Name: "app", Command: []string{"sh", "-c", "echo app-out; echo app-err >&2; echo planted > /tmp/planted; exec sleep 2147483647"}},
		testenv.CRIContainer{Name: "sidecar", Command: []string{"sh", "-c", "echo side-out; exec sleep 2147483647"}})
	// The containers have written their lines once their files show them.
	testenv.Shell(t, `for i in $(seq 100); do grep -q app-err `+filepath.Join(p.LogDir, "app", "0.log")+` 2>/dev/null && exit 0; sleep 0.1; done; exit 1`)

	arch := filepath.Join(t.TempDir(), "pod.tar.zst")
	mustAmber(t, "capture", "pod", ns+"/"+name, "-o", arch, "--cri", r.Socket, "--address", r.Socket, "--pod-log-root", r.LogRoot)
	mustAmber(t, "verify", "--no-log", arch)

	app, side := "containers/prod_web-7d9f_app/", "containers/prod_web-7d9f_sidecar/"
	if got := mustAmber(t, "cat", arch, app+"rootfs/tmp/planted"); got != "planted\n" {
		t.Errorf("the app container's file: %q", got)
	}
	if out := mustAmber(t, "cat", arch, app+"logs/stdout"); !strings.Contains(out, "app-out") || !strings.HasPrefix(out, "20") {
		t.Errorf("app stdout (from the CRI log file, each line timed): %q", out)
	}
	if errs := mustAmber(t, "cat", arch, app+"logs/stderr"); !strings.Contains(errs, "app-err") {
		t.Errorf("app stderr: %q", errs)
	}
	if out := mustAmber(t, "cat", arch, side+"logs/stdout"); !strings.Contains(out, "side-out") {
		t.Errorf("sidecar stdout: %q", out)
	}
	if ls := mustAmber(t, "ls", arch, app+"memory"); !strings.Contains(ls, "sleep") {
		t.Errorf("no memory of the app's process:\n%s", ls)
	}

	if sum := mustAmber(t, "ls", arch); !strings.Contains(sum, "pods/prod_web-7d9f  pod prod/web-7d9f  uid "+uid) || !strings.Contains(sum, "app=containers/prod_web-7d9f_app") {
		t.Errorf("amber ls summary:\n%s", sum)
	}
	// The pod's own directory: the CRI's word on the sandbox and its
	// containers.
	if ls := mustAmber(t, "ls", arch, "pods/prod_web-7d9f"); !strings.Contains(ls, "sandbox.json") || !strings.Contains(ls, "containers.json") {
		t.Errorf("pods/prod_web-7d9f:\n%s", ls)
	}
	var sb struct {
		ID     string
		Labels map[string]string
	}
	if err := json.Unmarshal([]byte(mustAmber(t, "cat", arch, "pods/prod_web-7d9f/sandbox.json")), &sb); err != nil {
		t.Fatal(err)
	}
	if sb.ID != p.SandboxID || sb.Labels["io.kubernetes.pod.name"] != name {
		t.Errorf("sandbox.json: %+v, want sandbox %s", sb, p.SandboxID)
	}
	m := readManifest(t, arch)
	pods, ctrs := 0, 0
	for _, a := range m.Artifacts {
		switch a.Kind {
		case "pod":
			pods++
			if a.Pod == nil || a.Pod.SandboxID != p.SandboxID || a.Pod.Containers["app"] != "prod_web-7d9f_app" || a.Pod.Containers["sidecar"] != "prod_web-7d9f_sidecar" {
				t.Errorf("pod artifact %+v", a.Pod)
			}
		case "container":
			ctrs++
			if a.Container.ID == p.SandboxID {
				t.Error("the sandbox (pause) container was captured")
			}
		}
	}
	if pods != 1 || ctrs != 2 {
		t.Errorf("%d pods and %d containers in the archive, want 1 and 2", pods, ctrs)
	}
	custody := mustAmber(t, "log", arch)
	if !strings.Contains(custody, "prod/web-7d9f") || !strings.Contains(custody, "containerd") {
		t.Errorf("the custody log does not name the pod and containerd:\n%s", custody)
	}

	// With --sandbox, the sandbox (pause) container is captured too, by
	// kubelet's name for it.
	withSB := filepath.Join(t.TempDir(), "pod-sandbox.tar.zst")
	mustAmber(t, "capture", "pod", ns+"/"+name, "--sandbox", "--no-memory", "-o", withSB, "--cri", r.Socket, "--address", r.Socket, "--pod-log-root", r.LogRoot)
	mustAmber(t, "verify", "--no-log", withSB)
	if ls := mustAmber(t, "ls", withSB, "containers"); !strings.Contains(ls, "prod_web-7d9f_POD") || !strings.Contains(ls, "prod_web-7d9f_app") {
		t.Errorf("containers/ with --sandbox:\n%s", ls)
	}
	if ls := mustAmber(t, "ls", withSB, "containers/prod_web-7d9f_POD"); !strings.Contains(ls, "rootfs") || !strings.Contains(ls, "inspect.json") {
		t.Errorf("containers/prod_web-7d9f_POD:\n%s", ls)
	}
	sbCaptured := false
	for _, a := range readManifest(t, withSB).Artifacts {
		switch {
		case a.Kind == "pod" && (a.Pod == nil || a.Pod.Containers["POD"] != "prod_web-7d9f_POD" || a.Pod.Containers["app"] != "prod_web-7d9f_app"):
			t.Errorf("pod artifact with --sandbox: %+v", a.Pod)
		case a.Kind == "container" && a.Container.ID == p.SandboxID:
			sbCaptured = true
		}
	}
	if !sbCaptured {
		t.Error("with --sandbox, the sandbox container was not captured")
	}
}

// TestCapturePodByLabels: with no CRI to ask (--cri /nonexistent, then
// --cri ""), the pod is found by the labels kubelet set on containerd's
// own containers: both containers captured and named as through the CRI,
// the sandbox recorded (not captured), sandbox.json saying the pod was
// found by labels, and no log file known.
func TestCapturePodByLabels(t *testing.T) {
	r := testenv.CRI(t)
	const ns, name, uid = "prod", "web-7d9f", "0b9a8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
	p := r.RunPod(ns, name, uid,
		testenv.CRIContainer{Name: "app", Command: []string{"sh", "-c", "echo planted > /tmp/planted; echo app-by-labels; exec sleep 2147483647"}},
		testenv.CRIContainer{Name: "sidecar", Command: []string{"sh", "-c", "exec sleep 2147483647"}})
	testenv.Shell(t, `for i in $(seq 100); do grep -q app-by-labels `+filepath.Join(p.LogDir, "app", "0.log")+` 2>/dev/null && exit 0; sleep 0.1; done; exit 1`)
	// Another pod of the same node: not to be taken.
	other := r.RunPod(ns, "web-other", "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
		testenv.CRIContainer{Name: "app", Command: []string{"sleep", "2147483647"}})

	for _, cri := range []string{"/nonexistent/containerd.sock", ""} {
		arch := filepath.Join(t.TempDir(), "pod.tar.zst")
		mustAmber(t, "capture", "pod", ns+"/"+name, "--no-memory", "-o", arch, "--cri", cri, "--address", r.Socket, "--pod-log-root", r.LogRoot)
		mustAmber(t, "verify", "--no-log", arch)
		if got := mustAmber(t, "cat", arch, "containers/prod_web-7d9f_app/rootfs/tmp/planted"); got != "planted\n" {
			t.Errorf("--cri %q: the app container's file: %q", cri, got)
		}
		// The log file the CRI plugin's own record names (containerd's
		// container extension), read as through the CRI.
		if out := mustAmber(t, "cat", arch, "containers/prod_web-7d9f_app/logs/stdout"); !strings.Contains(out, "app-by-labels") {
			t.Errorf("--cri %q: app stdout found by labels: %q", cri, out)
		}
		var sb struct {
			ID, FoundBy string
			Labels      map[string]string
		}
		if err := json.Unmarshal([]byte(mustAmber(t, "cat", arch, "pods/prod_web-7d9f/sandbox.json")), &sb); err != nil {
			t.Fatal(err)
		}
		if sb.ID != p.SandboxID || sb.FoundBy != "labels" || sb.Labels["io.kubernetes.pod.uid"] != uid {
			t.Errorf("--cri %q: sandbox.json: %+v, want sandbox %s found by labels", cri, sb, p.SandboxID)
		}
		pods, ctrs := 0, 0
		for _, a := range readManifest(t, arch).Artifacts {
			switch a.Kind {
			case "pod":
				pods++
				if a.Pod == nil || a.Pod.UID != uid || a.Pod.SandboxID != p.SandboxID || len(a.Pod.Containers) != 2 ||
					a.Pod.Containers["app"] != "prod_web-7d9f_app" || a.Pod.Containers["sidecar"] != "prod_web-7d9f_sidecar" {
					t.Errorf("--cri %q: pod artifact %+v", cri, a.Pod)
				}
			case "container":
				ctrs++
				if id := a.Container.ID; id != p.Containers["app"] && id != p.Containers["sidecar"] {
					t.Errorf("--cri %q: captured container %s, not one of the pod's (sandbox %s, other pod's sandbox %s)", cri, id, p.SandboxID, other.SandboxID)
				}
			}
		}
		if pods != 1 || ctrs != 2 {
			t.Errorf("--cri %q: %d pods and %d containers in the archive, want 1 and 2", cri, pods, ctrs)
		}
	}
}
