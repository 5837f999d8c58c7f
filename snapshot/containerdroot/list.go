//go:build linux

package containerdroot

import (
	"context"
	"fmt"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// StateOffline is a container's state as a dead host's containerd root
// tells it: containerd keeps its tasks' state under /run, gone with the
// host; its root holds only what the container is made of.
const StateOffline = "unknown (offline)"

// nameOf is a container's name: the kubelet's or nerdctl's label, else
// its ID; a pod's sandbox is "(sandbox)".
func nameOf(c container) string {
	if c.Labels["io.cri-containerd.kind"] == "sandbox" {
		return "(sandbox)"
	}
	for _, l := range []string{engine.LabelContainerName, "nerdctl/name"} {
		if n := c.Labels[l]; n != "" && len(n) <= 253 {
			return n
		}
	}
	return c.ID
}

// List lists every container of every namespace but Docker's own (moby),
// from the metadata database alone (no spec, no layer is read): its
// namespace, image name, pod, creation time; its state is StateOffline. A
// record that cannot be read whole is listed with what could be, its
// state saying what is wrong.
func (s *Store) List(ctx context.Context) ([]engine.Summary, error) {
	cs, err := s.containers(false)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]engine.Summary, 0, len(cs))
	for _, c := range cs {
		if c.Namespace == dockerNamespace {
			continue
		}
		sum := engine.Summary{Runtime: "containerd", Namespace: c.Namespace, ID: c.ID, Name: nameOf(c), Image: c.Image,
			State: StateOffline, Pod: engine.PodOf(c.Labels)}
		if !c.CreatedAt.IsZero() {
			sum.Created = c.CreatedAt.UTC().Format(timeLayout)
		}
		if c.Err != nil {
			sum.State = fmt.Sprintf("unreadable record: %.200s", c.Err)
		}
		out = append(out, sum)
	}
	return out, nil
}
