// Package engine is the seam between a capture and a container runtime:
// the Runtime interface lists only the calls a capture makes of one
// (inspect, image save, a container's filesystem by route, its change
// list, logs, pause and unpause), and the small types that cross it are
// amber's own, not a runtime's client types. The Docker implementation is
// snapshot/docker; containerd, Podman and a dead host's disk follow
// behind the same interface, and tests use a fake.
//
// It is a leaf of its own, imported by snapshot and by every runtime
// package, so that a runtime package needs nothing of snapshot (and
// snapshot nothing of any runtime): only cmd chooses and dials one.
// The errors a runtime answers with are classified here (ErrEngine,
// ErrNoSuchObject, ErrEngineClaim), and snapshot re-exports them, so
// cmd's exit codes do not depend on which runtime failed.
package engine
