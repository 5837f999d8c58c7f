// Package view resolves paths of amber's mount layout (DESIGN.md "The
// mount") over an opened archive, without mounting: images/<name>/rootfs,
// layers/<N>, stages/<N>, config.json and manifest.json. Merged views are
// package layers' stacks (OCI whiteouts and opaque directories applied as
// the runtime does); layers/<N> shows a layer exactly as stored, .wh.
// markers included.
//
// The same resolution serves "amber ls", "amber cat" and the FUSE mount, so
// they can never disagree about what a path holds.
package view
