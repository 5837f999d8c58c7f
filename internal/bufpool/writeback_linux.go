package bufpool

import (
	"os"

	"golang.org/x/sys/unix"
)

// StartWriteback asks the kernel to start writing [off, off+n) of f to disk
// now, without waiting, so the fsync at sealing has little left to do.
func StartWriteback(f *os.File, off, n int64) {
	withFd(f, func(fd int) { _ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE) })
}

// WillNeed starts reading [off, off+n) of f into the page cache.
func WillNeed(f *os.File, off, n int64) {
	withFd(f, func(fd int) { _ = unix.Fadvise(fd, off, n, unix.FADV_WILLNEED) })
}

// withFd runs fn on f's descriptor, held open meanwhile; nothing once f is
// closed (a mount's background work may outlive its archive; f.Fd() would
// race with Close and could name a descriptor reused since).
func withFd(f *os.File, fn func(fd int)) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { fn(int(fd)) })
	}
}
