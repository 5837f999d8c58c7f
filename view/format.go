// How entries are shown: type names, ls -l modes, rebased symlinks.

package view

import (
	"os"
	"path"
	"strings"

	"github.com/amber-forensics/amber/fileindex"
)

// TypeName names an entry type as amber's JSON outputs do.
func TypeName(t byte) string {
	switch t {
	case fileindex.TypeDir:
		return "dir"
	case fileindex.TypeSymlink:
		return "symlink"
	case fileindex.TypeChar:
		return "char"
	case fileindex.TypeBlock:
		return "block"
	case fileindex.TypeFifo:
		return "fifo"
	case fileindex.TypeLink:
		return "hardlink"
	}
	return "file"
}

// ModeString renders type and permissions as ls -l does.
func ModeString(typ byte, mode uint32) string {
	// ls folds setuid/setgid/sticky into the execute columns.
	perm := []byte(os.FileMode(mode & 0o777).String())[1:]
	if mode&0o4000 != 0 {
		perm[2] = sOr(perm[2], 's', 'S')
	}
	if mode&0o2000 != 0 {
		perm[5] = sOr(perm[5], 's', 'S')
	}
	if mode&0o1000 != 0 {
		perm[8] = sOr(perm[8], 't', 'T')
	}
	letter := byte('-')
	switch typ {
	case fileindex.TypeDir:
		letter = 'd'
	case fileindex.TypeSymlink:
		letter = 'l'
	case fileindex.TypeChar:
		letter = 'c'
	case fileindex.TypeBlock:
		letter = 'b'
	case fileindex.TypeFifo:
		letter = 'p'
	case fileindex.TypeLink:
		letter = 'h'
	}
	return string(letter) + string(perm)
}

func sOr(x byte, set, unset byte) byte {
	if x == 'x' {
		return set
	}
	return unset
}

// RebaseLink returns the target a symlink at p (a path inside a tree) has
// once resolved as inside a container's root, as a path relative to p's
// directory: an absolute target starts at the tree's root, and ".." never
// climbs above it (as under chroot). Followed on a mount, it stays inside
// the view wherever the view is mounted, instead of reaching into the
// examiner's own host ("/etc/shadow", "../../../../etc/shadow").
func RebaseLink(p, target string) string {
	dir := path.Dir("/" + strings.Trim(p, "/"))
	abs := target
	if !strings.HasPrefix(target, "/") {
		abs = path.Join(dir, target)
	}
	abs = path.Clean("/" + abs) // "/.." is "/": the root's parent is itself
	from, to := clean(dir), clean(abs)
	i := 0
	for i < len(from) && i < len(to) && from[i] == to[i] {
		i++
	}
	var parts []string
	for range from[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, to[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
