//go:build linux

package containerdroot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/amber-forensics/amber/internal/testenv"
)

// TestOfflinePod: a pod run through containerd's CRI plugin (as kubelet
// runs it), stopped; its containerd root and pod log directory, copied to
// the same paths inside a dead host's root, read offline: the list names
// the pod and its container, Logs reads its CRI log file's stdout and
// stderr, the container's name is kubelet's.
func TestOfflinePod(t *testing.T) {
	r := testenv.CRI(t)
	testenv.Tool(t, "cp")
	p := r.RunPod("prod", "web", "uid-1", testenv.CRIContainer{Name: "app", Command: []string{"sh", "-c", "echo out-one; echo err-one >&2; exec sleep 2147483647"}})
	logFile := filepath.Join(p.LogDir, "app", "0.log")
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if b, _ := os.ReadFile(logFile); bytes.Contains(b, []byte("out-one")) && bytes.Contains(b, []byte("err-one")) {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the pod's log %s never held its lines", logFile)
		}
	}
	ctx := context.Background()
	if _, err := r.RS.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.SandboxID}); err != nil {
		t.Fatal(err)
	}
	// The dead host: the root and the log root at the paths containerd
	// and kubelet recorded, inside it.
	host := t.TempDir()
	for _, d := range []string{"root", "pods"} {
		dst := filepath.Join(host, r.Dir, d)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		testenv.Run(t, "cp", "-a", filepath.Join(r.Dir, d), dst)
	}
	s, err := Open(host, filepath.Join(r.Dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Containers["app"]
	var app, sandbox bool
	for _, c := range list {
		switch {
		case c.ID == id && c.Name == "app" && c.Pod == "prod/web" && c.Namespace == testenv.CRINamespace && c.Image != "":
			app = true
		case c.ID == p.SandboxID && c.Name == "(sandbox)" && c.Pod == "prod/web":
			sandbox = true
		}
	}
	if !app || !sandbox {
		t.Errorf("List() = %+v: want the app container %s and its sandbox %s of pod prod/web", list, id, p.SandboxID)
	}
	c, err := s.Container(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "app" || c.Image == "" || !strings.HasPrefix(c.Image, "sha256:") {
		t.Errorf("Container = %+v", c)
	}
	if _, err := s.UpperDirs(c); err != nil {
		t.Errorf("UpperDirs: %v", err)
	}
	l, err := s.Logs(ctx, id, c.Tty)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out, errb bytes.Buffer
	if err := l.Copy(&out, &errb); err != nil {
		t.Fatal(err)
	}
	ts := `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z `
	if !regexp.MustCompile(ts+"out-one\n$").MatchString(out.String()) || !regexp.MustCompile(ts+"err-one\n$").MatchString(errb.String()) {
		t.Errorf("logs: stdout %q, stderr %q", out.String(), errb.String())
	}
}
