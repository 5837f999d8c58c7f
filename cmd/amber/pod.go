package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/snapshot"
	"github.com/amber-forensics/amber/snapshot/containerd"
	"github.com/amber-forensics/amber/snapshot/kube"
)

// podFlags locate a Kubernetes node's runtime.
type podFlags struct {
	cri, address, namespace, logRoot string
	// sandbox: capture the pod's sandbox (pause) container too.
	sandbox bool
}

func (e *env) newCapturePodCmd() *cobra.Command {
	o := &captureOptions{}
	pf := &podFlags{}
	c := &cobra.Command{
		Use:   "pod NAMESPACE/NAME -o ARCHIVE.tar.zst",
		Short: "Capture every container of a Kubernetes pod (containerd)",
		Long: `Capture every container of the Kubernetes pod NAMESPACE/NAME running on this
node, as capture container does for each (memory first, then images,
filesystems, metadata), into one sealed archive. The pod is found through
the CRI (--cri, containerd's socket by default) by the labels kubelet sets;
with --cri "", or a CRI that cannot be asked, by those labels on
containerd's own containers (then no log file is known: logs are recorded
as unavailable, and sandbox.json says "FoundBy": "labels");
its containers are read from containerd (--address, namespace k8s.io) and
named containers/<namespace>_<pod>_<container>; their logs are the CRI log
files kubelet keeps (--pod-log-root, /var/log/pods), read only beneath the
pod's own log directory. pods/<namespace>_<pod>/ holds what the CRI said
of the pod: sandbox.json (its sandbox, labels, annotations and status) and
containers.json (its containers and their statuses). The sandbox (pause)
container is recorded, not captured, unless --sandbox is given: then it is
captured too, as containers/<namespace>_<pod>_POD (kubelet's own name for
it); of a container restarted by kubelet,
the latest attempt is captured and the earlier ones are listed.`,
		Example: `  amber capture pod prod/web-7d9f -o web.tar.zst --case 2026-041
  amber capture pod prod/web-7d9f --pause -o web.tar.zst
  amber capture pod kube-system/coredns-abc --cri /run/k3s/containerd/containerd.sock --address /run/k3s/containerd/containerd.sock -o dns.tar.zst`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needsLinux("capture pod", "a pod's files and memory are read on its node"); err != nil {
				return err
			}
			return e.runCapturePod(o, pf, args[0])
		},
	}
	o.addFlags(c)
	c.Flags().BoolVar(&o.pause, "pause", false, "freeze the containers during the capture (always thawed afterwards)")
	c.Flags().BoolVar(&o.noMemory, "no-memory", false, "do not take the processes' memory")
	c.Flags().BoolVar(&pf.sandbox, "sandbox", false, "capture the sandbox (pause) container too, as <namespace>_<pod>_POD")
	c.Flags().StringVar(&pf.cri, "cri", containerd.DefaultAddress, "the CRI socket (containerd's); \"\": find the pod by its labels in containerd")
	c.Flags().StringVar(&pf.address, "address", containerd.DefaultAddress, "containerd's socket")
	c.Flags().StringVar(&pf.namespace, "namespace", "k8s.io", "containerd's namespace of the pod's containers")
	c.Flags().StringVar(&pf.logRoot, "pod-log-root", kube.DefaultLogRoot, "where kubelet keeps pod logs")
	return c
}

func (e *env) runCapturePod(o *captureOptions, pf *podFlags, ref string) error {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return usageError{fmt.Errorf("pod %q: give NAMESPACE/NAME", ref)}
	}
	rt, err := containerd.Dial(e.ctx, pf.address, pf.namespace)
	if err != nil {
		return err
	}
	defer rt.Close()
	pod, err := e.findPod(rt, pf.cri, ns, name)
	if err != nil {
		return err
	}
	// Of a container kubelet restarted, its latest attempt.
	latest := map[string]kube.Container{}
	for _, c := range pod.Containers {
		if l, ok := latest[c.Name]; !ok || c.Attempt > l.Attempt {
			latest[c.Name] = c
		}
	}
	if len(latest) == 0 {
		return fmt.Errorf("pod %s/%s has no containers to capture", ns, name)
	}
	rec := snapshot.PodRecord{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, SandboxID: pod.Sandbox.ID,
		Containers: map[string]string{}, Files: map[string][]byte{}}
	names := make([]string, 0, len(latest))
	for k8s := range latest {
		names = append(names, k8s)
	}
	slices.Sort(names)
	var ids []string
	for _, k8s := range names {
		rec.Containers[k8s] = latest[k8s].ID
		ids = append(ids, latest[k8s].ID)
	}
	for file, v := range map[string]any{"sandbox.json": pod.Sandbox, "containers.json": pod.Containers} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		rec.Files[file] = append(b, '\n')
	}
	// The sandbox is added after the CRI's word is recorded: it is named
	// by kubelet's own name for it, and the CRI gives it no log file.
	rtPod := *pod
	if pf.sandbox {
		rec.Containers[kube.SandboxName] = pod.Sandbox.ID
		ids = append(ids, pod.Sandbox.ID)
		rtPod.Containers = append(slices.Clone(pod.Containers), kube.Container{ID: pod.Sandbox.ID, Name: kube.SandboxName,
			Attempt: pod.Sandbox.Attempt, CreatedAt: pod.Sandbox.CreatedAt, Pid: pod.Sandbox.Pid,
			Labels: pod.Sandbox.Labels, Annotations: pod.Sandbox.Annotations})
	}
	req, err := e.engineRequest(o, nil, ids)
	if err != nil {
		return err
	}
	req.Pods = []snapshot.PodRecord{rec}
	return e.captureWith(o, &kube.PodRuntime{Runtime: rt, Pod: &rtPod, LogRoot: pf.logRoot}, req)
}

// findPod finds the pod through the CRI at socket; with no socket, or a
// CRI that cannot be asked (none there, or no CRI service behind it), by
// the labels kubelet set on containerd's own containers, and says so.
func (e *env) findPod(rt *containerd.Runtime, socket, ns, name string) (*kube.Pod, error) {
	if socket != "" {
		cri, err := kube.Dial(socket)
		if err != nil {
			return nil, err
		}
		defer cri.Close()
		err = cri.Ping(e.ctx)
		if !kube.CRIUnreachable(err) {
			return kube.FindPod(e.ctx, cri, ns, name)
		}
		fmt.Fprintf(e.stderr, "amber: the CRI at %s cannot be asked (%v): finding pod %s/%s by its labels in containerd\n", escapeName(socket), escapeName(err.Error()), ns, name)
	}
	return kube.FindPodByLabels(e.ctx, rt, ns, name)
}
