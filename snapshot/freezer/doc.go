// Package freezer is the cgroup freezer of a container's processes, as
// its runtime freezes it (runc pause, crun pause, a containerd task's
// pause): cgroup v1's freezer/<path>/freezer.state (FROZEN, THAWED), or
// cgroup v2's <path>/cgroup.freeze (1, 0), whose cgroup.events says when
// the processes are frozen. Podman's storage read directly pauses through
// it; containerd's runtime thaws through it when containerd is gone and
// cannot resume a task amber paused.
//
// The cgroup is found from /proc/<pid>/cgroup, which is the kernel's word;
// its directory must name the container and be what it says (no link out
// of the cgroup mount).
package freezer
