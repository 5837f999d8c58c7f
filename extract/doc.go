// Package extract copies a tree or a file of the mount layout out of an
// archive onto local disk, as docker cp does, but for hostile evidence:
// every write goes through an os.Root on the destination, so no name, ".."
// or symlink (from the archive or already in the destination) leads
// outside it; nothing is overwritten unless asked; each file's content is
// checked against its SHA-256 as it is written, and removed if it does
// not match.
package extract
