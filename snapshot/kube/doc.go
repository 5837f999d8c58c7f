// Package kube finds a Kubernetes pod's containers on its node and reads
// their logs: through the CRI API of the node's runtime (FindPod: the
// sandbox and containers kubelet made, every answer checked), and from the
// CRI log files under /var/log/pods (OpenLog: a path the runtime reports,
// opened only beneath the pod's log directory; LogReader: the CRI log
// format, partial lines joined, bounded, malformed lines flagged).
//
// It captures nothing itself: a pod's containers are captured by the
// containerd runtime (snapshot/containerd) like any other container.
package kube
