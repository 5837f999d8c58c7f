//go:build unix

package manifest

import "golang.org/x/sys/unix"

// kernelName is uname's system, release and version ("" if it fails).
func kernelName() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
}
