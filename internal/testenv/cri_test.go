package testenv

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCRIPod: the harness's private containerd runs a pod of two
// containers through the CRI, and the CRI reports the sandbox ready and
// both containers running.
func TestCRIPod(t *testing.T) {
	r := CRI(t)
	p := r.RunPod("amber-ns", "web", "0b6f2a9e-1c4d-4e8f-9a7b-3d5c6e7f8a90",
		CRIContainer{Name: "app", Command: []string{"sh", "-c", "echo hello; exec sleep 2147483647"}},
		CRIContainer{Name: "side", Command: []string{"sleep", "2147483647"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := r.RS.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.SandboxID})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("sandbox state %v", st.Status.State)
	}
	if len(p.Containers) != 2 {
		t.Fatalf("containers %v", p.Containers)
	}
	for name, id := range p.Containers {
		cs, err := r.RS.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if cs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s: state %v", name, cs.Status.State)
		}
	}
}
