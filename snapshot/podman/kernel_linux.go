//go:build linux

package podman

import "golang.org/x/sys/unix"

// kernel is this host's kernel release, for the acquisition record.
func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
