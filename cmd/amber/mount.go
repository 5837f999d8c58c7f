package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/manifest"
)

type mountOptions struct {
	background bool
	allowOther bool
	debug      bool
	noLog      bool
	logFile    string
	// rebaseLinks: symlinks resolved inside their view (fusefs.Options).
	rebaseLinks bool
}

func (e *env) newMountCmd() *cobra.Command {
	o := &mountOptions{}
	c := &cobra.Command{
		Use:   "mount ARCHIVE DIR",
		Short: "Mount an archive read-only (FUSE) in the mount layout",
		Long: `mount shows ARCHIVE at DIR, read-only (ro,nosuid,nodev; every write gets
EROFS), in the layout of DESIGN.md:

  DIR/manifest.json
  DIR/images/<name>/rootfs/       all layers merged (OCI whiteouts applied)
  DIR/images/<name>/layers/<N>/   layer N as stored, .wh. markers visible
  DIR/images/<name>/stages/<N>/   layers 0..N merged
  DIR/images/<name>/config.json
  DIR/containers/<name>/rootfs/   the container's filesystem at capture time
  DIR/containers/<name>/pristine/ its image merged, for diff -r
  DIR/containers/<name>/changes/  only what it added or changed (.wh. markers visible)
  DIR/containers/<name>/inspect.json, changes.txt, engine-changes.txt, logs/
  DIR/containers/<name>/memory/<pid>-<comm>/core, maps, environ, cmdline, ...
  DIR/volumes/<name>/             a named volume's contents

Files are served only after their SHA-256 matches the index (else EIO, and
the file is named on stderr); each file's SHA-256 is the xattr
user.amber.sha256.

Symlinks are shown as captured, and a tool that follows them follows them
on THIS machine: an evidence link /etc/passwd -> /etc/shadow read with
'diff -r' or 'cat' reads the examiner's own /etc/shadow, and a link to
/dev/zero never ends. Use 'diff -r --no-dereference', 'grep -r' (not -R),
'find' (not -L). --rebase-links shows every symlink resolved inside its
view's root instead, as the container sees it: readlink then gives a
relative target ("../etc/shadow") that cannot leave the view; the
captured targets are what 'amber ls' shows (and a plain mount), the mount
says on start that links are rebased, and its custody event records it. It runs in the foreground until Ctrl-C, SIGTERM or
'amber umount DIR'; --background returns once the mount is ready. The
mount and unmount are recorded in ARCHIVE.custody.jsonl.`,
		Example: `  amber mount case.tar.zst /mnt/case
  amber mount image.tar /mnt/img           # a plain docker save tarball or OCI layout: indexed at mount
  amber mount --background case.tar.zst /mnt/case && grep -r AKIA /mnt/case/images/app_v1/layers/3
  diff -r --no-dereference /mnt/case/images/app_v1/stages/0 /mnt/case/images/app_v1/rootfs
  diff -r --no-dereference /mnt/case/containers/wordpress/pristine /mnt/case/containers/wordpress/rootfs
  amber mount --rebase-links case.tar.zst /mnt/case   # links resolve inside their view, never on this host
  sha256sum /mnt/case/containers/wordpress/memory/*/core
  getfattr -n user.amber.sha256 /mnt/case/images/app_v1/rootfs/etc/passwd
  amber umount /mnt/case`,
		Args: argsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runMount(o, args[0], args[1]) },
	}
	c.Flags().BoolVar(&o.background, "background", false, "return once mounted; the mount keeps running")
	c.Flags().BoolVar(&o.allowOther, "allow-other", false, "let other users read the mount (needs user_allow_other in /etc/fuse.conf when not root)")
	c.Flags().BoolVar(&o.debug, "debug", false, "log every FUSE request to stderr")
	c.Flags().BoolVar(&o.noLog, "no-log", false, "do not record the mount in the custody log")
	c.Flags().BoolVar(&o.rebaseLinks, "rebase-links", false, "show symlinks resolved inside their view's root, as in the container (relative targets that cannot leave the view); amber ls shows the captured targets")
	c.Flags().StringVar(&o.logFile, "log", "", "append the mount's messages (files refused for a bad hash) to this file; a background mount otherwise writes them to the terminal, if any")
	return c
}

func (e *env) newUmountCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "umount DIR",
		Short: "Unmount an amber mount, also a stale one left by a killed process",
		Long: `umount unmounts DIR when it is an amber mount, live or left stale by a
killed amber. Any other mount point (a tmpfs, a bind mount, another FUSE
file system) is refused, exit 14, unless --force: a mistyped path must not
unmount the evidence disk or the system's own mounts.`,
		Example: `  amber umount /mnt/case
  amber umount --force /mnt/other   # whatever is mounted there`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runUmount(args[0], force) },
	}
	c.Flags().BoolVar(&force, "force", false, "unmount DIR whatever is mounted there, not only an amber mount")
	return c
}

func (e *env) custodyEvent(archive string, a *archive.Archive, action string, details map[string]string) {
	if _, _, err := manifest.NewRecorder().Record(archive, a.Manifest, action, details); err != nil {
		fmt.Fprintf(e.stderr, "amber: warning: could not record %q in the custody log: %s\n", action, escapeName(err.Error()))
	}
}

// childError carries the background child's exit code through.
type childError struct{ code, msg string }

func (c *childError) Error() string { return c.msg }

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
