package tmpfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// OpenUnnamed creates a file in dir with no name (O_TMPFILE): whatever
// ends the process, kill -9 included, nothing is left behind. It returns
// nil, nil where the file system cannot (then a named file is used).
func OpenUnnamed(dir string, perm os.FileMode) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			return nil, nil
		}
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	// A new name: the umask applies as to open(2) with O_CREAT.
	return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)")), nil
}

// LinkUnnamed gives an unnamed file its name; it fails (EEXIST) rather
// than replace anything there.
func LinkUnnamed(f *os.File, name string) error {
	err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: name, Err: err}
	}
	return nil
}

// LockPartial takes an exclusive lock on a named partial file for as long
// as it is open: a partial whose lock can be taken was left by a capture
// that died (kill -9 on a file system without unnamed files).
func LockPartial(f *os.File) bool {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// TempFile creates a temporary file in dir that has no name, or loses it
// at once: nothing is left whatever ends the process. ReopenPath opens it
// again.
func TempFile(dir, pattern string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, pattern+"(unnamed)")), nil
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReopenPath is a path that opens f again, even once it has no name.
func ReopenPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }
