// Package dockerroot reads a dead host's Docker data root (its
// /var/lib/docker, on a disk image attached to the examiner's machine)
// as one more engine.Runtime: containers from their config.v2.json,
// images from the image store (imagedb, layerdb), layers rebuilt from the
// overlay2 directories with their stored tar-split, logs from the
// json-file driver's files. No engine runs: nothing is asked, everything
// is read.
//
// The data root is evidence, and hostile: every file is opened beneath the
// real data root with openat2 (RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS),
// read-only and O_NOATIME, and every file read whole is bounded. No path
// read from a JSON, id or link file, and no symbolic link, is followed out
// of the data root to the examiner's host. Nothing is ever written.
package dockerroot
