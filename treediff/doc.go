// Package treediff compares two trees of the mount layout (an image's
// rootfs, a stage, a layer, a container's pristine and rootfs, from one
// archive or two) by what the file indexes record: content SHA-256, size,
// type, mode, owner, mtime, link target, xattrs. No file content is read,
// so a container against its image costs the same whatever their size.
// A path is C only when something about it changed; a directory that is
// listed only because something below it changed says so.
package treediff
