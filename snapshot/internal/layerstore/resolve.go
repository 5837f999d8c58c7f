package layerstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MaxLinks bounds the symbolic links resolved in a store's path inside a
// root, as the kernel's own bound (ELOOP after 40).
const MaxLinks = 40

// RealRoot is root, the examiner's own path to a dead host's root, made
// absolute and with its symbolic links (this host's) resolved: the mount
// that holds what is found inside it is then known by path.
func RealRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("host root %s: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("host root %s: %w", root, err)
	}
	return real, nil
}

// ResolveIn resolves p inside root as a chroot would: each symbolic link
// met is read (at most MaxLinks of them), an absolute target starts again
// from root, and ".." stops at root. It returns the real path, root
// joined with a path of no symbolic link, which must be a directory.
func ResolveIn(root, p string) (string, error) {
	var done []string // resolved components: real directories under root
	todo := splitPath(p)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := filepath.Join(append([]string{root}, append(done, c)...)...)
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", fmt.Errorf("resolving %s inside %s: %w", p, root, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > MaxLinks {
			return "", fmt.Errorf("resolving %s inside %s: more than %d symbolic links", p, root, MaxLinks)
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return "", fmt.Errorf("resolving %s inside %s: %w", p, root, err)
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(splitPath(target), todo...)
	}
	real := filepath.Join(append([]string{root}, done...)...)
	if fi, err := os.Lstat(real); err != nil {
		return "", fmt.Errorf("resolving %s inside %s: %w", p, root, err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("%s (%s inside %s) is not a directory", real, p, root)
	}
	return real, nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}
