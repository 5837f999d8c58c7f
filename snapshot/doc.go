// Package snapshot is the capture: one session (session.go) that every
// entry point uses — image files (CaptureImageFiles), a container runtime
// (CaptureEngine), a container's volumes — to write the manifest and the
// custody log, create the archive under no name, store layers and
// members, seal it and write its sidecars, or leave nothing behind.
//
// What it reads comes through narrow seams, each its own package:
// snapshot/source (image sources: docker-save tarballs, OCI archives and
// layout directories, an engine's save stream, over hardened stores,
// presented as go-containerregistry v1 types), snapshot/engine (the
// Runtime interface: only the calls a capture makes of a runtime;
// snapshot/docker implements it), and snapshot/procmem (process memory as
// ELF cores). A container's filesystem is read by a route — the upper
// directory read directly, the runtime's export, the runtime's copy — each
// an implementation of one interface (container_route.go). OCI layer
// semantics (whiteouts, opaque directories, the change list against the
// image) come from package layers; snapshot never imports the mount
// layout (view) or fusefs.
//
// Sources are hostile input. Names inside a tarball are only ever looked
// up, never used as filesystem paths; an OCI layout directory and an upper
// directory are read through os.Root or directory descriptors, so no
// symlink or ".." leads outside them. Every layer is decompressed and
// checked against the config's diff_id as it streams; a mismatch fails the
// capture and names the layer. Nothing is written to the source, and a
// paused container is always unpaused.
package snapshot
