// Package source reads image sources — a docker-save tarball (either
// layout), an OCI archive tarball, an OCI layout directory, an engine's
// save stream — over amber's own hardened stores: every member is found
// once and read in place, JSON is bounded, links are resolved without
// leaving the source, and every blob is checked against its descriptor.
// What a source holds is described with go-containerregistry's types
// (v1.Descriptor, v1.Manifest, v1.Platform, types.MediaType) and is
// presented as a v1.ImageIndex of v1.Images (v1.go); go-containerregistry's
// own tarball and layout readers are not used: they rescan, follow
// symlinks and have no bounds.
package source
