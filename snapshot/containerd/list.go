package containerd

import (
	"context"
	"slices"
	"strings"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/amber-forensics/amber/snapshot/engine"
)

var _ engine.Lister = (*Runtime)(nil)

// DockerNamespace is the namespace where a Docker engine keeps its
// containers' tasks in a containerd it shares: they are Docker's, captured
// through Docker (their files are in Docker's storage, not in a snapshot).
const DockerNamespace = "moby"

// Namespaces lists containerd's namespaces, sorted.
func (r *Runtime) Namespaces(ctx context.Context) ([]string, error) {
	ns, err := r.c.NamespaceService().List(namespaces.WithNamespace(ctx, r.ns))
	if err != nil {
		return nil, r.wrap(err, "listing containerd's namespaces")
	}
	slices.Sort(ns)
	return ns, nil
}

// List lists the containers of the runtime's namespace (amber ps), each
// with its task's state and first process, its image, its pod (from the
// kubelet's labels) and its name (the kubelet's or nerdctl's label, else
// its ID).
func (r *Runtime) List(ctx context.Context) ([]engine.Summary, error) {
	ctx = r.nsCtx(ctx)
	cs, err := r.c.ContainerService().List(ctx)
	if err != nil {
		return nil, r.wrap(err, "listing containers in namespace "+r.ns)
	}
	out := make([]engine.Summary, 0, len(cs))
	for _, c := range cs {
		s := engine.Summary{Runtime: "containerd", Namespace: r.ns, ID: c.ID, Name: c.ID, Image: c.Image, State: "created",
			Pod: engine.PodOf(c.Labels)}
		for _, l := range []string{engine.LabelContainerName, "nerdctl/name"} {
			if n := c.Labels[l]; n != "" {
				s.Name = n
				break
			}
		}
		if c.Labels["io.cri-containerd.kind"] == "sandbox" {
			s.Name = "(sandbox)"
		}
		resp, err := r.c.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: c.ID})
		if err == nil && resp.GetProcess() != nil {
			p := resp.GetProcess()
			s.State = strings.ToLower(p.GetStatus().String())
			if st := p.GetStatus(); st == task.Status_RUNNING || st == task.Status_PAUSED || st == task.Status_PAUSING {
				s.Pid = int(p.GetPid())
			}
		}
		out = append(out, s)
	}
	return out, nil
}
