// Package podman is the Podman runtime read from its storage directly,
// without its API service (rootful Podman on a server has no daemon): the
// containers/storage metadata (overlay-containers/containers.json,
// overlay-images/images.json, overlay-layers/layers.json), the container's
// overlay upper directory, the image layers' tar-split records, the
// runtime files under the run root (the container's pidfile) and /proc.
// Nothing is written there and no podman binary is run: every JSON file is
// read bounded and as hostile, every ID must be 64 hex digits, and every
// path must lie under the graph root or the run root with no symbolic link
// on the way.
package podman
