package kube

// SandboxName is kubelet's own name for a pod's sandbox (pause) container
// (its Docker containers were named k8s_POD_...): the name a captured
// sandbox is given. No Kubernetes container can take it (upper case).
const SandboxName = "POD"
