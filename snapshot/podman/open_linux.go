//go:build linux

package podman

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// openBeneath opens rel for reading under root, as the kernel resolves it:
// never above root, through no symbolic link (a link planted in the
// storage or in a layer leads nowhere). noatime keeps the evidence's
// access times (root may always ask it).
func openBeneath(root, rel string, noatime bool) (*os.File, error) {
	dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dfd)
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	if noatime {
		how.Flags |= unix.O_NOATIME
	}
	fd, err := unix.Openat2(dfd, rel, &how)
	if err == unix.EPERM && noatime {
		how.Flags &^= unix.O_NOATIME
		fd, err = unix.Openat2(dfd, rel, &how)
	}
	switch err {
	case nil:
	case unix.ELOOP, unix.EXDEV:
		return nil, engine.Claimf("%s leads out of %s or through a symbolic link: refused", rel, root)
	default:
		return nil, &os.PathError{Op: "open", Path: filepath.Join(root, rel), Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", filepath.Join(root, rel), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, engine.Claimf("%s is not a regular file: refused", filepath.Join(root, rel))
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, rel)), nil
}

// dirBeneath checks that rel is a directory beneath root reached through
// no symbolic link, as the kernel resolves it (openat2 RESOLVE_BENEATH):
// nothing is opened on the examiner's host by a plain path.
func dirBeneath(root, rel string) error {
	dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dfd)
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dfd, rel, &how)
	switch err {
	case nil:
		unix.Close(fd)
		return nil
	case unix.ELOOP, unix.EXDEV:
		return engine.Claimf("podman's storage places %s, through a symbolic link amber does not follow", filepath.Join(root, rel))
	case unix.ENOTDIR:
		return engine.Claimf("podman's storage places %s, which is not a directory", filepath.Join(root, rel))
	}
	return &os.PathError{Op: "open", Path: filepath.Join(root, rel), Err: err}
}
