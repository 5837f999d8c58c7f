//go:build linux || darwin

package treediff

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
)

// DirTree is a directory on local disk (an extracted tree, a mounted
// disk image), read through os.Root: its symlinks are compared, never
// followed. A file's content is hashed only when its size equals the
// other side's.
type DirTree struct {
	root *os.Root
	path string
}

// OpenDir opens a local directory as a tree.
func OpenDir(p string) (*DirTree, error) {
	r, err := os.OpenRoot(p)
	if err != nil {
		return nil, err
	}
	return &DirTree{root: r, path: p}, nil
}

// Close releases the directory.
func (t *DirTree) Close() error { return t.root.Close() }

// Root is the directory itself.
func (t *DirTree) Root() (*Node, error) { return t.node(".", "") }

// ReadDir lists a directory, sorted by name.
func (t *DirTree) ReadDir(n *Node) ([]*Node, error) {
	key := n.key.(string)
	f, err := t.root.Open(key)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]*Node, 0, len(names))
	for _, name := range names {
		k, err := t.node(path.Join(key, name), name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // gone meanwhile
			}
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func (t *DirTree) node(key, name string) (*Node, error) {
	fi, err := t.root.Lstat(key)
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: no stat information", key)
	}
	n := &Node{Name: name, Mode: uint32(st.Mode & 0o7777), UID: st.Uid, GID: st.Gid, HasOwner: true,
		ModTime: fi.ModTime(), key: key}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		n.Type = fileindex.TypeDir
	case syscall.S_IFLNK:
		n.Type = fileindex.TypeSymlink
		if n.Link, err = t.root.Readlink(key); err != nil {
			return nil, err
		}
	case syscall.S_IFCHR, syscall.S_IFBLK:
		n.Type = fileindex.TypeChar
		if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
			n.Type = fileindex.TypeBlock
		}
		n.DevMajor, n.DevMinor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	case syscall.S_IFIFO:
		n.Type = fileindex.TypeFifo
	default:
		n.Type = fileindex.TypeReg
		n.Size = st.Size
		n.sum = func() (hashing.Digest, error) {
			f, err := t.root.Open(key)
			if err != nil {
				return hashing.Digest{}, err
			}
			defer f.Close()
			h := hashing.NewMulti(false, false)
			if _, err := io.Copy(h, f); err != nil {
				return hashing.Digest{}, fmt.Errorf("hashing %s: %w", key, err)
			}
			return h.SHA256(), nil
		}
	}
	n.Xattrs = localXattrs(filepath.Join(t.path, key))
	return n, nil
}

// localXattrs reads a path's xattrs but the security label, which a local
// file system adds and an image never has.
func localXattrs(p string) map[string]string {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return nil
	}
	b := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, b); err != nil {
		return nil
	}
	var out map[string]string
	for _, k := range strings.Split(strings.TrimRight(string(b[:sz]), "\x00"), "\x00") {
		if k == "" || k == "security.selinux" {
			continue
		}
		v, err := lgetxattr(p, k)
		if err != nil {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = string(v)
	}
	return out
}

// lgetxattr reads one xattr whatever its size (ext4 allows a block, XFS
// and tmpfs 64 KiB): asked for its size first, and again if it grew.
func lgetxattr(p, k string) ([]byte, error) {
	for try := 0; try < 4; try++ {
		sz, err := unix.Lgetxattr(p, k, nil)
		if err != nil {
			return nil, err
		}
		v := make([]byte, sz)
		n, err := unix.Lgetxattr(p, k, v)
		if errors.Is(err, unix.ERANGE) {
			continue // it grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		return v[:n], nil
	}
	return nil, unix.ERANGE
}
