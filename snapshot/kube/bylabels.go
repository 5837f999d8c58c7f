package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// SandboxName is kubelet's own name for a pod's sandbox (pause) container
// (its Docker containers were named k8s_POD_...): the name a captured
// sandbox is given. No Kubernetes container can take it (upper case).
const SandboxName = "POD"

// How a pod was found: FindPod through the CRI, FindPodByLabels from the
// labels on the runtime's own containers (Sandbox.FoundBy).
const (
	FoundByCRI    = "cri"
	FoundByLabels = "labels"
)

// The labels and annotations containerd's CRI plugin puts on its own
// containers.
const (
	labelKind           = "io.cri-containerd.kind" // sandbox or container
	annotationSandboxID = "io.kubernetes.cri.sandbox-id"
	annotationLogDir    = "io.kubernetes.cri.sandbox-log-directory"
)

// Labelled is a runtime whose containers carry kubelet's labels and can
// be listed (containerd's k8s.io namespace).
type Labelled interface {
	engine.Runtime
	engine.Lister
}

// Ping asks the CRI its version: the gRPC error as it came, for
// CRIUnreachable.
func (c *CRI) Ping(ctx context.Context) error {
	_, err := runtimeapi.NewRuntimeServiceClient(c.conn).Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

// CRIUnreachable says a CRI call (Ping's) could not reach a CRI at all (no
// socket, or no CRI service behind it), as opposed to an answer refused
// or a pod not found: a pod may then be found by its labels.
func CRIUnreachable(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.Unimplemented
}

// record is the part of the runtime's inspect record (containerd's
// inspect.json) the labels route reads.
type record struct {
	ID        string            `json:"ID"`
	Labels    map[string]string `json:"Labels"`
	Image     string            `json:"Image"`
	ImageID   string            `json:"ImageID"`
	CreatedAt time.Time         `json:"CreatedAt"`
	Spec      struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"Spec"`
	// CRIMetadata is containerd's CRI plugin's record of the container
	// ({"Version":"v1","Metadata":{...,"LogPath":...}}): where its log
	// file is, as the runtime reports it (checked when opened).
	CRIMetadata json.RawMessage `json:"CRIMetadata"`
}

// logPath is the log file the CRI plugin's record names ("" when the
// record says none, or is not what it should be).
func (r record) logPath() string {
	var m struct {
		Metadata struct {
			LogPath string `json:"LogPath"`
		} `json:"Metadata"`
	}
	if json.Unmarshal(r.CRIMetadata, &m) != nil {
		return ""
	}
	return m.Metadata.LogPath
}

type labelled struct {
	sum engine.Summary
	rec record
}

// FindPodByLabels finds the pod namespace/name without the CRI, from the
// labels kubelet sets and containerd's CRI plugin keeps on the runtime's
// own containers: its sandbox is the one labelled io.cri-containerd.kind=
// sandbox (the running one; the newest when several), its containers
// those labelled as containers of that sandbox (its ID in their
// io.kubernetes.cri.sandbox-id annotation, or, without one, its UID in
// their labels). Checked as FindPod checks the CRI's answers: IDs are 64
// hex digits, the labels name the pod asked for, names and the UID are
// single path elements. What only the CRI knows is not given: no
// container has a log path (its logs are then unavailable), no status is
// recorded, and a container's Attempt is its rank among the containers of
// its name by creation time (the restart count is the CRI's).
// Sandbox.FoundBy is FoundByLabels.
func FindPodByLabels(ctx context.Context, rt Labelled, namespace, name string) (*Pod, error) {
	what := fmt.Sprintf("pod %s/%s", namespace, name)
	if !dnsLabel.MatchString(namespace) || !dnsSubdomain.MatchString(name) {
		return nil, fmt.Errorf("%w: %q/%q is not a Kubernetes namespace/name", engine.ErrNoSuchObject, namespace, name)
	}
	list, err := rt.List(ctx)
	if err != nil {
		return nil, engine.Wrap(err, "listing the containers of "+what)
	}
	var sandboxes, ctrs []labelled
	for _, s := range list {
		if s.Pod != namespace+"/"+name {
			continue
		}
		if !hexID.MatchString(s.ID) {
			return nil, engine.Claimf("a container labelled as of %s has the ID %q, not 64 hex digits", what, s.ID)
		}
		ec, err := rt.Container(ctx, s.ID)
		if errors.Is(err, engine.ErrNoSuchObject) {
			continue // gone since the list
		}
		if err != nil {
			return nil, err
		}
		var rec record
		if err := json.Unmarshal(ec.Raw, &rec); err != nil {
			return nil, engine.Claimf("the record of container %s cannot be read: %v", s.ID, err)
		}
		if ec.ID != s.ID || rec.ID != s.ID {
			return nil, engine.Claimf("container %s is answered with the record of %q", s.ID, rec.ID)
		}
		// The list's word is not enough: the record's own labels must name
		// the pod.
		if rec.Labels[LabelPodNamespace] != namespace || rec.Labels[LabelPodName] != name {
			continue
		}
		switch rec.Labels[labelKind] {
		case "sandbox":
			sandboxes = append(sandboxes, labelled{s, rec})
		case "container":
			ctrs = append(ctrs, labelled{s, rec})
		}
	}
	var best *labelled
	for i := range sandboxes {
		s := &sandboxes[i]
		if best == nil || s.sum.Pid > 0 && best.sum.Pid == 0 || (s.sum.Pid > 0) == (best.sum.Pid > 0) && s.rec.CreatedAt.After(best.rec.CreatedAt) {
			best = s
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: no sandbox labelled as of %s", engine.ErrNoSuchObject, what)
	}
	p := &Pod{Namespace: namespace, Name: name, UID: best.rec.Labels[LabelPodUID]}
	if !pathElement(p.UID) {
		return nil, engine.Claimf("the sandbox of %s has the UID %q, not a single path element", what, p.UID)
	}
	state := "SANDBOX_NOTREADY"
	if best.sum.Pid > 0 {
		state = "SANDBOX_READY"
	}
	p.Sandbox = Sandbox{ID: best.sum.ID, State: state, CreatedAt: best.rec.CreatedAt.UTC(), Pid: best.sum.Pid,
		Labels: best.rec.Labels, Annotations: best.rec.Spec.Annotations, LogDirectory: best.rec.Spec.Annotations[annotationLogDir],
		FoundBy: FoundByLabels}
	for _, c := range ctrs {
		if sb, ok := c.rec.Spec.Annotations[annotationSandboxID]; ok && sb != p.Sandbox.ID ||
			!ok && c.rec.Labels[LabelPodUID] != p.UID {
			continue // of another sandbox of the same pod name
		}
		if err := p.sameLabels(c.rec.Labels, "container "+c.sum.ID); err != nil {
			return nil, err
		}
		cn := c.rec.Labels[LabelContainerName]
		if !dnsLabel.MatchString(cn) {
			return nil, engine.Claimf("container %s of %s is labelled with the name %q, not a Kubernetes container name", c.sum.ID, what, cn)
		}
		p.Containers = append(p.Containers, Container{ID: c.sum.ID, Name: cn, Image: c.rec.Image, ImageRef: c.rec.ImageID,
			State: containerState(c.sum.State), CreatedAt: c.rec.CreatedAt.UTC(), Pid: c.sum.Pid,
			Labels: c.rec.Labels, Annotations: c.rec.Spec.Annotations, LogPath: c.rec.logPath()})
	}
	sort.SliceStable(p.Containers, func(i, j int) bool {
		a, b := p.Containers[i], p.Containers[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.CreatedAt.Before(b.CreatedAt)
	})
	for i := 1; i < len(p.Containers); i++ {
		if p.Containers[i].Name == p.Containers[i-1].Name {
			p.Containers[i].Attempt = p.Containers[i-1].Attempt + 1
		}
	}
	return p, nil
}

// containerState is the CRI's name of a task state as List gives it.
func containerState(s string) string {
	switch s {
	case "created":
		return "CONTAINER_CREATED"
	case "running", "paused", "pausing":
		return "CONTAINER_RUNNING"
	case "stopped":
		return "CONTAINER_EXITED"
	}
	return "CONTAINER_UNKNOWN"
}
