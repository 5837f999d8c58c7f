// Package containerd is the containerd implementation of engine.Runtime,
// through containerd's own client (github.com/containerd/containerd/v2,
// which speaks to containerd 1.6 and later): a container is a containerd
// container of one namespace and its task; an image is an image of that
// namespace, read from the content store; the container's own files are
// the overlayfs snapshotter's upper directory of its active snapshot.
//
// What containerd does not have, this package says so rather than
// imitate: no change list (Changes answers *engine.Unavailable, and the
// capture lists the changes by content comparison alone), no export of a
// container's filesystem and no copy from it (only the overlayfs upper
// directory is read, locally), no logs (ctr run discards them; CRI keeps
// them in files of its own), no named volumes.
//
// Every answer is the daemon's word and is checked: the blobs read from
// the content store against their digests and bounds, the upper directory
// against the overlayfs snapshotter's own root with symbolic links
// resolved. An image save holds its content in a lease of its own for the
// capture's length, deleted at the end (also on failure), so that nothing
// of the capture stays in containerd.
package containerd
