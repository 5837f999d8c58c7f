// Package fusefs serves an opened archive read-only through FUSE, in the
// mount layout of DESIGN.md, so that diff, grep, find and sha256sum work on
// evidence as on any directory.
//
// # Tree
//
// Every path is resolved by package view, the same code behind "amber ls"
// and "amber cat": images/<name>/{rootfs,layers/<N>,stages/<N>,config.json}
// and manifest.json. Inodes are created lazily on lookup and forgotten when
// the kernel forgets them, so memory does not grow with what was listed.
// Inode numbers are stable across mounts: a tree entry's number is built
// from its view, its layer and its index record.
//
// # Trust
//
// Content is served only after the file's SHA-256 matches its index record;
// a mismatch answers EIO and is logged with the file's path. Every mutating
// operation answers EROFS, and the mount itself is ro,nosuid,nodev.
//
// # Speed
//
// Content never changes, so entries, attributes and negative lookups are
// cached by the kernel for hours, page cache is kept across opens, and OPEN
// and FLUSH answer ENOSYS so the kernel stops sending them. Reads share one
// bounded cache of decoded frames, with the next frame decoded ahead.
//
// # Lifecycle
//
// Serve is the whole life of a mount: the process's memory settings
// (Options.GCPercent, Options.MemoryFloor), the archive opened under them,
// the mount, and a Session whose Wait serves until the mount is unmounted
// from outside or the context ends (SIGINT, SIGTERM), which unmounts it,
// retrying while it is busy. UnmountAmber is amber umount's: it unmounts
// amber's mounts only, live or stale, unless forced. cmd/amber wires flags
// to Options, records custody and prints.
//
// # Linux only
//
// The mount relies on Linux's FUSE (mount flags, CAP_NO_OPENDIR_SUPPORT,
// umount2, /proc/self/mountinfo), so everything but this page and the
// sentinel errors is built for Linux only; on other systems amber mount
// says so (cmd/amber/mount_other.go) and the archive is read with amber ls,
// cat, diff and extract.
package fusefs
