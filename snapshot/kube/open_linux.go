//go:build linux

package kube

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// openBeneath opens rel under dir for reading, the kernel resolving every
// link of rel beneath dir (openat2 RESOLVE_BENEATH): a link, or a "..",
// that leads out fails, also if it is planted between a check and the
// open. The access time is left alone where the kernel lets us.
func openBeneath(dir, rel string) (*os.File, error) {
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("the pod's log directory: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(dfd)
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK | unix.O_NOATIME,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dfd, rel, &how)
	if errors.Is(err, unix.EPERM) {
		how.Flags &^= unix.O_NOATIME // not the file's owner, without CAP_FOWNER
		fd, err = unix.Openat2(dfd, rel, &how)
	}
	if errors.Is(err, unix.EXDEV) {
		return nil, engine.Claimf("the log file %s leads out of the pod's log directory %s", rel, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("log file: %w", &os.PathError{Op: "open", Path: filepath.Join(dir, rel), Err: err})
	}
	// O_NONBLOCK keeps a FIFO planted there from blocking the open; the
	// file is read with it cleared.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("log file: %w", err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, rel)), nil
}
