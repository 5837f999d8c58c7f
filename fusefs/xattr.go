//go:build linux

package fusefs

import (
	"context"
	"strings"
	"syscall"
)

func (n *node) xattrs() map[string]string {
	m := map[string]string{}
	if n.e.Node != nil {
		for k, v := range n.e.Node.Rec.Xattrs {
			m[k] = v
		}
	}
	if d := n.e.SHA256(); !d.IsZero() {
		m[XattrSHA256] = d.Hex()
	}
	return m
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	// ls -l asks every file for security.selinux: answer without building
	// anything.
	var v string
	var ok bool
	if attr == XattrSHA256 {
		if d := n.e.SHA256(); !d.IsZero() {
			v, ok = d.Hex(), true
		}
	} else if n.e.Node != nil && n.e.Node.Rec.Xattrs != nil {
		v, ok = n.e.Node.Rec.Xattrs[attr]
	}
	if !ok {
		if strings.HasPrefix(attr, "security.") || strings.HasPrefix(attr, "system.") {
			// ls -l asks every file for security.selinux and
			// system.posix_acl_access; ENOTSUP (unlike ENODATA) lets it
			// remember that for the whole file system instead of asking
			// again for every file. Captured attributes of these names
			// (capabilities, ACLs) are still returned above.
			return 0, syscall.EOPNOTSUPP
		}
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	for k := range n.xattrs() {
		b = append(append(b, k...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}
