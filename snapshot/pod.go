package snapshot

import (
	"fmt"
	"slices"

	"github.com/amber-forensics/amber/manifest"
)

// PodRecord is a Kubernetes pod of a capture: what the CRI said of its
// sandbox and containers, stored as the pod artifact's members. The
// sandbox (pause) container is recorded, not captured.
type PodRecord struct {
	Namespace, Name, UID string
	SandboxID            string
	// Containers maps each of the pod's Kubernetes container names to
	// its runtime ID, one of the capture's Containers.
	Containers map[string]string
	// Files are the pod's members by name (sandbox.json, containers.json):
	// the runtime's answers as it gave them.
	Files map[string][]byte
}

// PodPrefix is where a pod's own files lie in the archive.
func PodPrefix(name string) string { return "amber/pods/" + name + "/" }

// pod stores a pod's members and returns its artifact; its containers
// are named as the capture named them (containers/<name>).
func (e *engineCapture) pod(p PodRecord) (manifest.Artifact, error) {
	name := manifest.PathSafe(p.Namespace + "_" + p.Name)
	pod := &manifest.Pod{Namespace: p.Namespace, Name: p.Name, UID: p.UID, SandboxID: p.SandboxID, Containers: map[string]string{}, Members: []manifest.Member{}}
	for k8s, id := range p.Containers {
		i := slices.IndexFunc(e.ctrs, func(c *ctrCapture) bool { return c.ci.ID == id })
		if i < 0 {
			return manifest.Artifact{}, fmt.Errorf("pod %s/%s: its container %s (%s) is not among the captured", p.Namespace, p.Name, k8s, id)
		}
		pod.Containers[k8s] = e.ctrs[i].name
	}
	files := make([]string, 0, len(p.Files))
	for f := range p.Files {
		files = append(files, f)
	}
	slices.Sort(files)
	for _, f := range files {
		if !manifest.SafeName(f) {
			return manifest.Artifact{}, fmt.Errorf("pod %s/%s: member name %q", p.Namespace, p.Name, f)
		}
		if err := e.mw.add(PodPrefix(name)+f, p.Files[f]); err != nil {
			return manifest.Artifact{}, err
		}
		ent := e.mw.list[len(e.mw.list)-1]
		pod.Members = append(pod.Members, manifest.Member{Path: f, Entry: ent.Name, Size: ent.Size, SHA256: ent.SHA256})
	}
	return manifest.Artifact{Kind: manifest.KindPod, Name: name, Pod: pod}, nil
}
