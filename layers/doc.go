// Package layers is the one home of OCI layer semantics in amber: the
// whiteout and opaque markers of the OCI image spec's layer format, the
// merge of a stack of layers (what a container starts from) as the
// runtime's overlayfs shows it, what each layer added, modified and
// deleted with the space later layers waste (Reports), which layers
// touched a path (Blame), and a container's changes against its image
// (ContainerChanges: the content-aware "docker diff", changes.txt). Capture, the views, the mount and the
// examination commands all ask it, so they cannot disagree about what a
// stack of layers holds.
//
// It reads layers through their file indexes (fileindex records and
// flags), never their bytes.
package layers
