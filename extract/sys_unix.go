//go:build !windows

package extract

import (
	"io/fs"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setLinkTimes sets a symlink's own times, not its target's; best effort.
func setLinkTimes(p string, t time.Time) {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// modeOwner is what the file system holds: the Unix mode bits and owner.
func modeOwner(fi fs.FileInfo) (mode, uid, gid uint32, ok bool) {
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, false
	}
	return uint32(sys.Mode), sys.Uid, sys.Gid, true
}
