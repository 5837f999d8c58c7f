package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// The labels kubelet puts on every sandbox and container it asks the
// runtime for: how a pod's containers are found without the CRI too.
const (
	LabelPodNamespace  = engine.LabelPodNamespace
	LabelPodName       = engine.LabelPodName
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = engine.LabelContainerName
)

// RuntimeService is the part of the CRI runtime service FindPod calls
// (runtimeapi.RuntimeServiceClient has it): a test gives its own.
type RuntimeService interface {
	ListPodSandbox(ctx context.Context, in *runtimeapi.ListPodSandboxRequest, opts ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error)
	PodSandboxStatus(ctx context.Context, in *runtimeapi.PodSandboxStatusRequest, opts ...grpc.CallOption) (*runtimeapi.PodSandboxStatusResponse, error)
	ListContainers(ctx context.Context, in *runtimeapi.ListContainersRequest, opts ...grpc.CallOption) (*runtimeapi.ListContainersResponse, error)
	ContainerStatus(ctx context.Context, in *runtimeapi.ContainerStatusRequest, opts ...grpc.CallOption) (*runtimeapi.ContainerStatusResponse, error)
}

// CRI is a connection to a runtime's CRI socket.
type CRI struct {
	RuntimeService
	Socket string
	conn   *grpc.ClientConn
}

// Dial connects to the CRI socket (containerd's is its own socket,
// /run/containerd/containerd.sock). Nothing is sent until the first call.
func Dial(socket string) (*CRI, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("%w: CRI socket %s: %v", engine.ErrEngine, socket, err)
	}
	return &CRI{RuntimeService: runtimeapi.NewRuntimeServiceClient(conn), Socket: socket, conn: conn}, nil
}

// Close ends the connection.
func (c *CRI) Close() error { return c.conn.Close() }

// Pod is a Kubernetes pod as its node's runtime knows it: its sandbox and
// its containers, every answer checked (see FindPod).
type Pod struct {
	Namespace, Name, UID string
	Sandbox              Sandbox
	Containers           []Container // by name, then attempt
}

// Sandbox is the pod's sandbox (pause) container.
type Sandbox struct {
	ID          string
	Attempt     uint32
	State       string // SANDBOX_READY or SANDBOX_NOTREADY
	CreatedAt   time.Time
	Pid         int // of its process, from the runtime's verbose info; 0 when not given
	Labels      map[string]string
	Annotations map[string]string
	// LogDirectory is the pod's log directory as the runtime reports it
	// (kubelet asks for /var/log/pods/<namespace>_<name>_<uid>); empty
	// when it does not say.
	LogDirectory string
	// Status is the runtime's PodSandboxStatus answer, verbose info
	// included, as JSON (protojson): recorded as the runtime gave it.
	Status json.RawMessage
	// FoundBy is how the pod was found: FoundByCRI or FoundByLabels.
	FoundBy string
}

// Container is one container of the pod.
type Container struct {
	ID          string
	Name        string // io.kubernetes.container.name
	Attempt     uint32 // restart count: kubelet makes a new container per restart
	Image       string // the image as asked
	ImageRef    string // the image the runtime resolved it to
	State       string // CONTAINER_CREATED, _RUNNING, _EXITED or _UNKNOWN
	CreatedAt   time.Time
	StartedAt   time.Time
	FinishedAt  time.Time
	ExitCode    int32
	Pid         int    // from the runtime's verbose info; 0 when not given
	LogPath     string // as the runtime reports it: checked when opened (OpenLog)
	Labels      map[string]string
	Annotations map[string]string
	Status      json.RawMessage // the ContainerStatus answer, verbose, as JSON
}

// FindPod finds the pod namespace/name through the CRI: its sandbox by
// kubelet's labels (the ready one; the newest when several), then its
// containers with their verbose status. Every answer is checked: IDs are
// 64 hex digits, the metadata and labels name the pod asked for, names
// and the UID are single path elements (they name directories), a
// container belongs to the sandbox. An unknown pod is
// engine.ErrNoSuchObject; an unreachable or lying runtime engine.ErrEngine
// (an ErrEngineClaim for a refused answer).
func FindPod(ctx context.Context, rs RuntimeService, namespace, name string) (*Pod, error) {
	what := fmt.Sprintf("pod %s/%s", namespace, name)
	if !dnsLabel.MatchString(namespace) || !dnsSubdomain.MatchString(name) {
		return nil, fmt.Errorf("%w: %q/%q is not a Kubernetes namespace/name", engine.ErrNoSuchObject, namespace, name)
	}
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{LabelPodNamespace: namespace, LabelPodName: name}}})
	if err != nil {
		return nil, engine.Wrap(classify(err), "listing the sandboxes of "+what)
	}
	var best *runtimeapi.PodSandbox
	for _, s := range list.GetItems() {
		md := s.GetMetadata()
		// The runtime's filter is its word: the pod must say it is this one.
		if md.GetNamespace() != namespace || md.GetName() != name {
			continue
		}
		if best == nil || ready(s) && !ready(best) || ready(s) == ready(best) && s.GetCreatedAt() > best.GetCreatedAt() {
			best = s
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: no sandbox of %s", engine.ErrNoSuchObject, what)
	}
	p := &Pod{Namespace: namespace, Name: name, UID: best.GetMetadata().GetUid()}
	if !hexID.MatchString(best.GetId()) {
		return nil, engine.Claimf("the sandbox of %s has the ID %q, not 64 hex digits", what, best.GetId())
	}
	if !pathElement(p.UID) {
		return nil, engine.Claimf("the sandbox of %s has the UID %q, not a single path element", what, p.UID)
	}
	if err := p.sandbox(ctx, rs, best); err != nil {
		return nil, err
	}
	cl, err := rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: best.GetId()}})
	if err != nil {
		return nil, engine.Wrap(classify(err), "listing the containers of "+what)
	}
	for _, c := range cl.GetContainers() {
		if c.GetPodSandboxId() != best.GetId() {
			continue // not this pod's, whatever the filter let through
		}
		ct, err := p.container(ctx, rs, c)
		if err != nil {
			return nil, err
		}
		p.Containers = append(p.Containers, ct)
	}
	sort.Slice(p.Containers, func(i, j int) bool {
		a, b := p.Containers[i], p.Containers[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Attempt < b.Attempt
	})
	return p, nil
}

func ready(s *runtimeapi.PodSandbox) bool {
	return s.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY
}

// sandbox fills p.Sandbox from the sandbox's verbose status.
func (p *Pod) sandbox(ctx context.Context, rs RuntimeService, s *runtimeapi.PodSandbox) error {
	st, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: s.GetId(), Verbose: true})
	if err != nil {
		return engine.Wrap(classify(err), fmt.Sprintf("status of the sandbox %s of pod %s/%s", s.GetId(), p.Namespace, p.Name))
	}
	ss := st.GetStatus()
	if ss.GetId() != s.GetId() || ss.GetMetadata().GetUid() != p.UID ||
		ss.GetMetadata().GetNamespace() != p.Namespace || ss.GetMetadata().GetName() != p.Name {
		return engine.Claimf("the status of sandbox %s names another pod (%s %s/%s uid %s)", s.GetId(),
			ss.GetId(), ss.GetMetadata().GetNamespace(), ss.GetMetadata().GetName(), ss.GetMetadata().GetUid())
	}
	if err := p.sameLabels(ss.GetLabels(), "sandbox "+s.GetId()); err != nil {
		return err
	}
	raw, _ := statusJSON.Marshal(st)
	var info struct {
		Pid    int `json:"pid"`
		Config struct {
			LogDirectory string `json:"log_directory"`
		} `json:"config"`
	}
	json.Unmarshal([]byte(st.GetInfo()["info"]), &info) // absent or not JSON: nothing learnt
	p.Sandbox = Sandbox{ID: s.GetId(), Attempt: ss.GetMetadata().GetAttempt(), State: ss.GetState().String(),
		CreatedAt: nanos(ss.GetCreatedAt()), Pid: max(info.Pid, 0), Labels: ss.GetLabels(), Annotations: ss.GetAnnotations(),
		LogDirectory: info.Config.LogDirectory, Status: raw, FoundBy: FoundByCRI}
	return nil
}

// container checks one container of the sandbox and reads its verbose
// status.
func (p *Pod) container(ctx context.Context, rs RuntimeService, c *runtimeapi.Container) (Container, error) {
	if !hexID.MatchString(c.GetId()) {
		return Container{}, engine.Claimf("a container of pod %s/%s has the ID %q, not 64 hex digits", p.Namespace, p.Name, c.GetId())
	}
	st, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.GetId(), Verbose: true})
	if err != nil {
		return Container{}, engine.Wrap(classify(err), fmt.Sprintf("status of container %s of pod %s/%s", c.GetId(), p.Namespace, p.Name))
	}
	cs := st.GetStatus()
	if cs.GetId() != c.GetId() {
		return Container{}, engine.Claimf("the status of container %s is that of %q", c.GetId(), cs.GetId())
	}
	if err := p.sameLabels(cs.GetLabels(), "container "+c.GetId()); err != nil {
		return Container{}, err
	}
	name := cs.GetMetadata().GetName()
	if l, ok := cs.GetLabels()[LabelContainerName]; ok && l != name {
		return Container{}, engine.Claimf("container %s is named %q but labelled %q", c.GetId(), name, l)
	}
	if !dnsLabel.MatchString(name) {
		return Container{}, engine.Claimf("container %s of pod %s/%s has the name %q, not a Kubernetes container name", c.GetId(), p.Namespace, p.Name, name)
	}
	raw, _ := statusJSON.Marshal(st)
	var info struct {
		Pid int `json:"pid"`
	}
	json.Unmarshal([]byte(st.GetInfo()["info"]), &info)
	return Container{ID: c.GetId(), Name: name, Attempt: cs.GetMetadata().GetAttempt(),
		Image: cs.GetImage().GetImage(), ImageRef: cs.GetImageRef(), State: cs.GetState().String(),
		CreatedAt: nanos(cs.GetCreatedAt()), StartedAt: nanos(cs.GetStartedAt()), FinishedAt: nanos(cs.GetFinishedAt()),
		ExitCode: cs.GetExitCode(), Pid: max(info.Pid, 0), LogPath: cs.GetLogPath(),
		Labels: cs.GetLabels(), Annotations: cs.GetAnnotations(), Status: raw}, nil
}

// sameLabels refuses an object whose kubelet labels name another pod
// (absent labels are no claim).
func (p *Pod) sameLabels(l map[string]string, what string) error {
	for k, want := range map[string]string{LabelPodNamespace: p.Namespace, LabelPodName: p.Name, LabelPodUID: p.UID} {
		if v, ok := l[k]; ok && v != want {
			return engine.Claimf("%s of pod %s/%s is labelled %s=%q", what, p.Namespace, p.Name, k, v)
		}
	}
	return nil
}

func nanos(n int64) time.Time {
	if n <= 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// classify gives a CRI call's error its class: an unreachable runtime or
// an unknown object.
func classify(err error) error {
	switch status.Code(err) {
	case codes.Unavailable:
		return &engine.Fault{Kind: engine.ErrEngine, Note: "cannot connect (is containerd running? is this its CRI socket?)", Err: err}
	case codes.NotFound:
		return &engine.Fault{Kind: engine.ErrNoSuchObject, Err: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &engine.Fault{Kind: engine.ErrEngine, Err: err}
}

// statusJSON writes a CRI answer whole: zero values too (a ready
// sandbox's state is the enum's zero, which protojson leaves out).
var statusJSON = protojson.MarshalOptions{EmitUnpopulated: true}

var (
	hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// dnsLabel is a Kubernetes namespace or container name (RFC 1123
	// label); dnsSubdomain a pod name. Neither holds "/" or is "..".
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	uidChars     = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// pathElement: a pod UID (a UUID, or a static pod's hash) names a
// directory of /var/log/pods.
func pathElement(s string) bool { return uidChars.MatchString(s) && s != "." && s != ".." }
