// Package containerdroot reads a dead host's containerd root directory
// (/var/lib/containerd on a disk image mounted read-only) as an
// engine.Runtime: no containerd runs, its state is read from its files.
//
// What it reads: the metadata database
// (io.containerd.metadata.v1.bolt/meta.db: every namespace's containers,
// images and snapshot keys), the content store
// (io.containerd.content.v1.content/blobs/sha256: manifests, configs and
// layers, each checked against its digest when read), the overlayfs
// snapshotter's database and directories
// (io.containerd.snapshotter.v1.overlayfs: a container's active snapshot's
// fs directory is its upper directory), and a Kubernetes container's CRI
// log files under the host's /var/log/pods. Each layer of an image saved
// is compared with its committed snapshot's fs directory, the files its
// containers run on: one edited on disk is saved as found and reported
// (engine.LayerChecker). Docker's own namespace, moby, is passed over
// unless named.
//
// The root is evidence and hostile: the data root is found with chroot
// semantics (a symbolic link's absolute target is taken inside the root,
// ".." never goes above it), every file is then opened beneath the real
// data root with openat2 (RESOLVE_BENEATH, no symbolic link followed),
// read-only and without touching access times; nothing is ever written.
// The databases are bbolt files opened read-only through those same
// descriptors; a corrupt one is an error, never a crash. Every size is
// bounded.
package containerdroot
