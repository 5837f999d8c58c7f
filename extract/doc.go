// Package extract copies a tree or a file of the mount layout out of an
// archive onto local disk, as docker cp does, but for hostile evidence:
// every write goes through an os.Root on the destination, so no name, ".."
// or symlink (from the archive or already in the destination) leads
// outside it; nothing is overwritten unless asked; each file's content is
// checked against its SHA-256 as it is written, and removed if it does
// not match. Unless asked, the copy drops the setuid, setgid and sticky
// bits and write for others, and keeps no owner, so evidence extracted by
// root hands no one root; every entry whose mode or owner differs from the
// record is reported. An entry whose name the destination's file system
// refuses is skipped and reported, and the rest written.
package extract
