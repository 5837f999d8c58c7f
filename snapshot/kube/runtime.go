package kube

import (
	"context"
	"fmt"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// PodRuntime is the runtime of a pod's containers (containerd's k8s.io
// namespace) as a capture of the pod sees it: each container named
// <namespace>_<pod>_<container> (the name kubelet knows it by, not its
// ID), and its logs read from the CRI log file the runtime reports,
// beneath the pod's log directory under LogRoot (the runtime itself keeps
// none). Every other call is the runtime's.
type PodRuntime struct {
	engine.Runtime
	Pod *Pod
	// LogRoot is where kubelet keeps pod logs (/var/log/pods).
	LogRoot string
	// MaxLine bounds one log line (0: the reader's default).
	MaxLine int
}

func (r *PodRuntime) byID(id string) (Container, bool) {
	for _, c := range r.Pod.Containers {
		if c.ID == id {
			return c, true
		}
	}
	return Container{}, false
}

// ArchiveName is the name a pod's container is captured by.
func (r *PodRuntime) ArchiveName(c Container) string {
	return r.Pod.Namespace + "_" + r.Pod.Name + "_" + c.Name
}

// Container is the runtime's container, named as the pod's.
func (r *PodRuntime) Container(ctx context.Context, ref string) (*engine.Container, error) {
	ec, err := r.Runtime.Container(ctx, ref)
	if err != nil {
		return nil, err
	}
	if c, ok := r.byID(ec.ID); ok {
		ec.Name = r.ArchiveName(c)
	}
	return ec, nil
}

// Logs reads the container's CRI log file; a container of no known log
// file is said so, as a runtime with no logs says it.
func (r *PodRuntime) Logs(ctx context.Context, id string, tty bool) (engine.LogStream, error) {
	c, ok := r.byID(id)
	if !ok || c.LogPath == "" {
		why := fmt.Sprintf("the CRI reports no log file for container %s", id)
		if r.Pod.Sandbox.FoundBy == FoundByLabels {
			why = fmt.Sprintf("pod found by its labels, without the CRI: the runtime's record names no log file for container %s", id)
		}
		return nil, &engine.Unavailable{Why: why}
	}
	root := r.LogRoot
	if root == "" {
		root = DefaultLogRoot
	}
	return r.Pod.OpenLog(root, c, r.MaxLine)
}

// CheckID is the pod's runtime's own ID rule, when it has one; else the
// 64 hex digits of a runtime that has none.
func (r *PodRuntime) CheckID(id string) error {
	if c, ok := r.Runtime.(engine.IDChecker); ok {
		return c.CheckID(id)
	}
	if engine.IsFullID(id) {
		return nil
	}
	return engine.Claimf("the engine answers with container ID %q, not 64 hex digits", id)
}

// SnapshotMounts are the pod's runtime's, when it gives them (a snapshotter
// with no upper directory).
func (r *PodRuntime) SnapshotMounts(ctx context.Context, c *engine.Container) ([]engine.SnapshotMount, error) {
	if m, ok := r.Runtime.(engine.SnapshotMounter); ok {
		return m.SnapshotMounts(ctx, c)
	}
	return nil, &engine.Unavailable{Why: "the runtime gives no snapshot mounts"}
}

var (
	_ engine.IDChecker       = (*PodRuntime)(nil)
	_ engine.SnapshotMounter = (*PodRuntime)(nil)
)
