// Package snapshot acquires evidence and writes it into an archive: images
// from a docker-save tarball (legacy or Docker 25+ OCI style) or an OCI image
// layout directory, with gzip, zstd or uncompressed layers.
//
// Sources are hostile input. Names inside a tarball are only ever looked up,
// never used as filesystem paths; an OCI layout directory is read through
// os.Root, so no symlink or ".." leads outside it. Every layer is
// decompressed and checked against the config's diff_id as it streams; a
// mismatch fails the capture and names the layer. Nothing is written to the
// source.
package snapshot
