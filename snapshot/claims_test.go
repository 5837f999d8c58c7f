//go:build linux

package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInRoot: an engine's path is read directly only when it is
// <root>/<kind>/<name>/<leaf> with real directories; the root itself may
// be reached through a symbolic link.
func TestInRoot(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "docker")
	id := strings.Repeat("ab", 32)
	for _, d := range []string{"overlay2/" + id + "/diff", "volumes/v1/_data", "volumes/v2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	elsewhere := filepath.Join(base, "host")
	os.MkdirAll(filepath.Join(elsewhere, "_data"), 0o755)
	os.Symlink(elsewhere, filepath.Join(root, "volumes/v2/_data"))
	os.Symlink(root, filepath.Join(base, "link"))
	e := &Engine{root: root}
	ok := func(p, kind, name, leaf string) {
		t.Helper()
		real, err := e.inRoot(p, kind, name, leaf)
		if err != nil || real != filepath.Join(root, kind, name, leaf) {
			t.Errorf("%s: %q %v", p, real, err)
		}
	}
	refused := func(e *Engine, p, kind, name, leaf string) {
		t.Helper()
		if real, err := e.inRoot(p, kind, name, leaf); !errors.Is(err, ErrEngineClaim) || !errors.Is(err, ErrEngine) {
			t.Errorf("%s (root %s): %q %v, want refused", p, e.root, real, err)
		}
	}
	ok(filepath.Join(root, "overlay2", id, "diff"), "overlay2", id, "diff")
	ok(filepath.Join(root, "volumes/v1/_data"), "volumes", "v1", "_data")
	ok(filepath.Join(root, "volumes/v1/./_data/"), "volumes", "v1", "_data")
	linked := &Engine{root: filepath.Join(base, "link")}
	if real, err := linked.inRoot(filepath.Join(base, "link", "volumes/v1/_data"), "volumes", "v1", "_data"); err != nil || real != filepath.Join(root, "volumes/v1/_data") {
		t.Errorf("a root reached through a link: %q %v", real, err)
	}
	refused(e, filepath.Join(root, "volumes/v2/_data"), "volumes", "v2", "_data")
	refused(e, filepath.Join(root, "volumes/v1/_data"), "volumes", "v2", "_data")
	refused(e, filepath.Join(root, "volumes/v1/../v1/_data/.."), "volumes", "v1", "_data")
	refused(e, filepath.Join(root, "volumes/../volumes/_data"), "volumes", "..", "_data")
	refused(e, filepath.Join(elsewhere, "_data"), "volumes", "v1", "_data")
	refused(e, filepath.Join(root, "overlay2", id), "overlay2", id, "diff")
	refused(&Engine{}, filepath.Join(root, "volumes/v1/_data"), "volumes", "v1", "_data")
	refused(&Engine{root: "docker"}, "docker/volumes/v1/_data", "volumes", "v1", "_data")
	refused(&Engine{root: "/"}, filepath.Join(root, "volumes/v1/_data"), "volumes", "v1", "_data")
}
