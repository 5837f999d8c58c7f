// Package layerstore checks and streams image layers kept unpacked in a
// store read from disk (a dead host's Docker data root, Podman's
// containers/storage): each layer rebuilt from its directory with the
// tar-split its store kept, checked file by file, and streamed as recorded
// or, when changed on disk, as found. It also resolves a store's path
// inside a dead host's root as a chroot would, and opens paths beneath a
// directory as the kernel resolves them (openat2 RESOLVE_BENEATH, no
// symbolic link). Each store supplies its layers' directories, tar-split
// files and recorded sizes.
package layerstore
