package kube

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// fakeCRI answers as a (possibly lying) runtime: one sandbox and its
// containers, each changed by a test.
type fakeCRI struct {
	sandboxes  []*runtimeapi.PodSandbox
	sbStatus   *runtimeapi.PodSandboxStatus
	containers []*runtimeapi.Container
	status     map[string]*runtimeapi.ContainerStatus
	err        error
}

func (f *fakeCRI) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest, ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: f.sandboxes}, f.err
}

func (f *fakeCRI) PodSandboxStatus(context.Context, *runtimeapi.PodSandboxStatusRequest, ...grpc.CallOption) (*runtimeapi.PodSandboxStatusResponse, error) {
	return &runtimeapi.PodSandboxStatusResponse{Status: f.sbStatus, Info: map[string]string{"info": "not json{"}}, nil
}

func (f *fakeCRI) ListContainers(context.Context, *runtimeapi.ListContainersRequest, ...grpc.CallOption) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: f.containers}, nil
}

func (f *fakeCRI) ContainerStatus(_ context.Context, in *runtimeapi.ContainerStatusRequest, _ ...grpc.CallOption) (*runtimeapi.ContainerStatusResponse, error) {
	return &runtimeapi.ContainerStatusResponse{Status: f.status[in.ContainerId]}, nil
}

var (
	sbID = strings.Repeat("a", 64)
	cID  = strings.Repeat("c", 64)
)

func honest() *fakeCRI {
	md := &runtimeapi.PodSandboxMetadata{Namespace: "prod", Name: "web", Uid: "u-1"}
	return &fakeCRI{
		sandboxes: []*runtimeapi.PodSandbox{
			{Id: strings.Repeat("b", 64), Metadata: md, State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY, CreatedAt: 9},
			{Id: sbID, Metadata: md, CreatedAt: 5}},
		sbStatus:   &runtimeapi.PodSandboxStatus{Id: sbID, Metadata: md},
		containers: []*runtimeapi.Container{{Id: cID, PodSandboxId: sbID}},
		status: map[string]*runtimeapi.ContainerStatus{cID: {Id: cID, Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Labels: map[string]string{LabelContainerName: "app", LabelPodName: "web"}}},
	}
}

// TestFindPodHostileAnswers: a runtime's answer that names another pod,
// an ID that is not one, a name or UID that is a path: refused as an
// ErrEngineClaim; the honest answer is taken (the ready sandbox, not the
// newer dead one); an unreachable runtime is an ErrEngine saying so.
func TestFindPodHostileAnswers(t *testing.T) {
	p, err := FindPod(context.Background(), honest(), "prod", "web")
	if err != nil || p.Sandbox.ID != sbID || len(p.Containers) != 1 || p.Containers[0].Name != "app" {
		t.Fatalf("honest runtime: %+v %v", p, err)
	}
	for name, lie := range map[string]func(f *fakeCRI){
		"sandbox ID": func(f *fakeCRI) { f.sandboxes[1].Id = "../../x"; f.sbStatus.Id = "../../x" },
		"UID a path": func(f *fakeCRI) { f.sandboxes[1].Metadata.Uid = "../../../etc" },
		"status of another": func(f *fakeCRI) {
			f.sbStatus.Metadata = &runtimeapi.PodSandboxMetadata{Namespace: "kube-system", Name: "web", Uid: "u-1"}
		},
		"sandbox labels": func(f *fakeCRI) { f.sbStatus.Labels = map[string]string{LabelPodNamespace: "kube-system"} },
		"container ID":   func(f *fakeCRI) { f.containers[0].Id = "c/../../x" },
		"container name path": func(f *fakeCRI) {
			f.status[cID].Metadata.Name = "../x"
			f.status[cID].Labels[LabelContainerName] = "../x"
		},
		"container label":      func(f *fakeCRI) { f.status[cID].Labels[LabelContainerName] = "other" },
		"container other pod":  func(f *fakeCRI) { f.status[cID].Labels[LabelPodName] = "db" },
		"container status lie": func(f *fakeCRI) { f.status[cID].Id = strings.Repeat("d", 64) },
	} {
		f := honest()
		lie(f)
		if _, err := FindPod(context.Background(), f, "prod", "web"); !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("%s: %v, want an ErrEngineClaim", name, err)
		}
	}
	f := honest()
	f.containers[0].PodSandboxId = strings.Repeat("e", 64)
	if p, err := FindPod(context.Background(), f, "prod", "web"); err != nil || len(p.Containers) != 0 {
		t.Errorf("a container of another sandbox was taken: %+v %v", p, err)
	}
	f = honest()
	f.sandboxes[0].Metadata = &runtimeapi.PodSandboxMetadata{Namespace: "prod", Name: "other"}
	f.sandboxes = f.sandboxes[:1]
	if _, err := FindPod(context.Background(), f, "prod", "web"); !errors.Is(err, engine.ErrNoSuchObject) {
		t.Errorf("the filter's word was taken: %v", err)
	}
	f = honest()
	f.err = status.Error(codes.Unavailable, "connection refused")
	if _, err := FindPod(context.Background(), f, "prod", "web"); !errors.Is(err, engine.ErrEngine) || !strings.Contains(err.Error(), "is containerd running") {
		t.Errorf("unreachable runtime: %v", err)
	}
}
