package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI names: the sandbox (pause) image and the image the harness's pod
// containers run, both one busybox-static image imported into the
// private containerd under these references.
const (
	CRIPauseImage   = "amber.test/cri-pause:1"
	CRIBusyboxImage = "amber.test/cri-busybox:1"
	// CRINamespace is the containerd namespace the CRI plugin keeps
	// pods in, as on every Kubernetes node.
	CRINamespace = "k8s.io"
)

// CRIRuntime is a containerd of the test's own with its CRI plugin
// enabled: own root, state and socket under Dir, so that it never touches
// the machine's /run/containerd. Its socket is both the containerd API
// and the CRI API, as on a Kubernetes node.
type CRIRuntime struct {
	t       testing.TB
	Dir     string
	Socket  string // grpc socket: containerd's API and the CRI
	LogRoot string // where pods' log directories go (kubelet's /var/log/pods)
	cmd     *exec.Cmd
	conn    *grpc.ClientConn
	RS      runtimeapi.RuntimeServiceClient
}

// CRI starts a private containerd (Debian's /usr/bin/containerd) with its
// CRI plugin, the sandbox image and the busybox image imported; it is
// stopped, with its shims and mounts, when the test ends. Without
// containerd, docker (to build the image) or root, CI fails the test.
func CRI(t testing.TB) *CRIRuntime {
	t.Helper()
	Root(t)
	containerd := Tool(t, "containerd")
	ctr := Tool(t, "ctr")
	Tool(t, "containerd-shim-runc-v2")
	Tool(t, "runc")
	image := criImage(t)

	dir, err := os.MkdirTemp("", "amber-cri")
	if err != nil {
		t.Fatal(err)
	}
	r := &CRIRuntime{t: t, Dir: dir, Socket: filepath.Join(dir, "containerd.sock"), LogRoot: filepath.Join(dir, "pods")}
	t.Cleanup(r.stop)
	for _, d := range []string{"root", "state", "cni", "opt", "runc", "pods"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Host network only: the CRI plugin never calls CNI for such pods, but
	// it wants a configuration to call itself network-ready.
	conflist := `{"cniVersion": "0.4.0", "name": "amber-lo", "plugins": [{"type": "loopback"}]}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-amber.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Pods ask for oom_score_adj -998 (kubelet's for the sandbox); lowering
  # it needs CAP_SYS_RESOURCE, which a CI sandbox may not give root.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = %[8]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), r.Socket, r.Socket+".ttrpc",
		filepath.Join(dir, "opt"), CRIPauseImage, filepath.Join(dir, "cni"), filepath.Join(dir, "runc"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r.cmd = exec.Command(containerd, "--config", filepath.Join(dir, "config.toml"))
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C of go test reaches it through
	// cleanup, not half-way through a pod's start.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	r.conn, err = grpc.NewClient("unix://"+r.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("CRI client: %v", err)
	}
	r.RS = runtimeapi.NewRuntimeServiceClient(r.conn)
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := r.RS.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("private containerd's CRI did not answer: %v\n%s", err, r.Log())
		}
	}
	tar := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(tar, image, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ctr, "-a", r.Socket, "-n", CRINamespace, "images", "import", tar).CombinedOutput(); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	os.Remove(tar)
	return r
}

// Log is what the private containerd has logged so far.
func (r *CRIRuntime) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "containerd.log"))
	return string(b)
}

// Ctr runs ctr against the private containerd in namespace k8s.io.
func (r *CRIRuntime) Ctr(args ...string) string {
	r.t.Helper()
	return Run(r.t, "ctr", append([]string{"-a", r.Socket, "-n", CRINamespace}, args...)...)
}

// CRIContainer is one container of a pod the harness runs: its name and
// the command it runs in the busybox image.
type CRIContainer struct {
	Name    string
	Command []string
}

// CRIPod is a pod the harness started.
type CRIPod struct {
	Namespace, Name, UID string
	SandboxID            string
	LogDir               string            // the sandbox's log directory
	Containers           map[string]string // container name -> ID
}

// RunPod runs a pod the way kubelet does through the CRI: RunPodSandbox
// (host network, kubelet's labels and log directory
// <LogRoot>/<ns>_<name>_<uid>), then CreateContainer (log path
// <container>/0.log) and StartContainer for each container.
func (r *CRIRuntime) RunPod(namespace, name, uid string, containers ...CRIContainer) *CRIPod {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := &CRIPod{Namespace: namespace, Name: name, UID: uid, Containers: map[string]string{},
		LogDir: filepath.Join(r.LogRoot, namespace+"_"+name+"_"+uid)}
	// kubelet makes the pod's log directory; the runtime only writes in it.
	if err := os.MkdirAll(p.LogDir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	hostNet := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	podLabels := map[string]string{
		"io.kubernetes.pod.namespace": namespace,
		"io.kubernetes.pod.name":      name,
		"io.kubernetes.pod.uid":       uid,
		"app":                         name,
	}
	sandboxConfig := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid},
		LogDirectory: p.LogDir,
		Labels:       podLabels,
		Annotations: map[string]string{
			"kubernetes.io/config.source": "api",
			"amber.test/note":             "a pod of the amber harness",
		},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: hostNet},
		},
	}
	sb, err := r.RS.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig})
	if err != nil {
		r.t.Fatalf("RunPodSandbox %s/%s: %v\n%s", namespace, name, err, r.Log())
	}
	p.SandboxID = sb.PodSandboxId
	for _, c := range containers {
		if err := os.MkdirAll(filepath.Join(p.LogDir, c.Name), 0o755); err != nil {
			r.t.Fatal(err)
		}
		labels := map[string]string{
			"io.kubernetes.pod.namespace":  namespace,
			"io.kubernetes.pod.name":       name,
			"io.kubernetes.pod.uid":        uid,
			"io.kubernetes.container.name": c.Name,
		}
		cc, err := r.RS.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: p.SandboxID,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: c.Name},
				Image:    &runtimeapi.ImageSpec{Image: CRIBusyboxImage},
				Command:  c.Command,
				LogPath:  filepath.Join(c.Name, "0.log"),
				Labels:   labels,
				Annotations: map[string]string{
					"io.kubernetes.container.restartCount":           "0",
					"io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
				},
				Linux: &runtimeapi.LinuxContainerConfig{
					SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: hostNet},
				},
			},
			SandboxConfig: sandboxConfig,
		})
		if err != nil {
			r.t.Fatalf("CreateContainer %s: %v\n%s", c.Name, err, r.Log())
		}
		if _, err := r.RS.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cc.ContainerId}); err != nil {
			r.t.Fatalf("StartContainer %s: %v\n%s", c.Name, err, r.Log())
		}
		p.Containers[c.Name] = cc.ContainerId
	}
	return p
}

// stop removes the pods, stops containerd, then ends what it leaves:
// shims (found by the socket on their command line, ended by PID) and
// mounts under Dir.
func (r *CRIRuntime) stop() {
	if r.RS != nil && r.cmd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if l, err := r.RS.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, s := range l.Items {
				r.RS.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id})
				r.RS.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id})
			}
		}
		cancel()
	}
	if r.conn != nil {
		r.conn.Close()
	}
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-done
		}
	}
	for _, pid := range pidsMentioning(r.Socket) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	unmountUnder(r.Dir)
	os.RemoveAll(r.Dir)
}

// pidsMentioning lists the processes whose command line contains s.
func pidsMentioning(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder detaches every mount under dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var under []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			under = append(under, f[1])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		exec.Command("umount", "-l", under[i]).Run() // lazily: a busy mount must not keep the test's directory
	}
}

var (
	criImageOnce  sync.Once
	criImageBytes []byte
	criImageErr   error
)

// criImage is a `docker save` of a busybox-static image (command: sleep,
// the pause container's job) tagged as both CRI images; built once per
// test binary, the build directory and the engine's tags removed at once.
func criImage(t testing.TB) []byte {
	t.Helper()
	Docker(t)
	busybox := Tool(t, "busybox")
	criImageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "amber-cri-image")
		if err != nil {
			criImageErr = err
			return
		}
		defer os.RemoveAll(dir)
		script := fmt.Sprintf(`set -e
cd %q
mkdir -p rootfs/bin rootfs/etc rootfs/tmp rootfs/proc rootfs/sys rootfs/dev
cp %q rootfs/bin/busybox
for a in $(rootfs/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox rootfs/bin/$a; done
echo 'root:x:0:0:root:/root:/bin/sh' > rootfs/etc/passwd
tar -C rootfs -c . | docker import -c 'CMD ["/bin/sleep", "2147483647"]' - %s >/dev/null
docker tag %s %s
docker save -o image.tar %s %s
docker rmi %s %s >/dev/null
`, dir, busybox, CRIPauseImage, CRIPauseImage, CRIBusyboxImage, CRIPauseImage, CRIBusyboxImage, CRIPauseImage, CRIBusyboxImage)
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			criImageErr = fmt.Errorf("building the CRI test image: %v\n%s", err, out)
			return
		}
		criImageBytes, criImageErr = os.ReadFile(filepath.Join(dir, "image.tar"))
	})
	if criImageErr != nil {
		t.Fatal(criImageErr)
	}
	return criImageBytes
}
