//go:build linux

package layerstore

import (
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// OpenAt opens rel beneath the directory dfd (named dir in errors) as the
// kernel resolves it: never above dfd, through no symbolic link, the
// last element included (an O_PATH open of a non-directory opens a link
// itself). A read (not O_PATH) keeps the evidence's access time
// (O_NOATIME, dropped where it is refused). A path leading out or through
// a link is a refused claim (engine.ErrEngineClaim).
func OpenAt(dfd int, dir, rel string, flags int) (*os.File, error) {
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	if flags&(unix.O_PATH|unix.O_DIRECTORY) == unix.O_PATH {
		// A symbolic link itself (to stat it, read its target).
		how.Flags |= unix.O_NOFOLLOW
	}
	if flags&unix.O_PATH == 0 {
		// openat2 takes no other flag with O_PATH. O_NONBLOCK: a FIFO
		// planted where a file is expected does not hang the open.
		how.Flags |= unix.O_NOATIME | unix.O_NONBLOCK
	}
	fd, err := unix.Openat2(dfd, rel, &how)
	if err == unix.EPERM && how.Flags&unix.O_NOATIME != 0 {
		how.Flags &^= unix.O_NOATIME
		fd, err = unix.Openat2(dfd, rel, &how)
	}
	switch err {
	case nil:
	case unix.ELOOP, unix.EXDEV:
		return nil, engine.Claimf("%s leads out of %s or through a symbolic link: refused", rel, dir)
	default:
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir, rel), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, rel)), nil
}

// ReadHostname is the dead host's name from its etc/hostname, read beneath
// root through no symbolic link; "" when there is none.
func ReadHostname(root string) string {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	f, err := OpenAt(fd, root, "etc/hostname", unix.O_RDONLY)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 256))
	h := strings.TrimSpace(string(b))
	if i := strings.IndexByte(h, '\n'); i >= 0 {
		h = h[:i]
	}
	for _, r := range h {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	return h
}
