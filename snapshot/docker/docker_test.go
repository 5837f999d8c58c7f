//go:build linux

package docker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
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
		if real, err := e.inRoot(p, kind, name, leaf); !errors.Is(err, engine.ErrEngineClaim) || !errors.Is(err, engine.ErrEngine) {
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

// TestUpperDirsClaims: the upper directory and init layer that inspect
// reports are read directly only as <root>/overlay2/<64 hex>/diff and
// <root>/overlay2/<same>-init/diff; ".." in them, another ID or another
// driver is refused (a claim) or unavailable (a reason), never read.
func TestUpperDirsClaims(t *testing.T) {
	root := t.TempDir()
	id, other := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	for _, d := range []string{id + "/diff", id + "-init/diff", other + "/diff"} {
		if err := os.MkdirAll(filepath.Join(root, "overlay2", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &Engine{root: root}
	upper := filepath.Join(root, "overlay2", id, "diff")
	init := filepath.Join(root, "overlay2", id+"-init", "diff")
	ctr := func(driver, up, lower string) *engine.Container {
		return &engine.Container{Driver: driver, Storage: map[string]string{"UpperDir": up, "LowerDir": lower}}
	}
	dirs, err := e.UpperDirs(ctr("overlay2", upper, init+":/elsewhere"))
	if err != nil || len(dirs) != 2 || dirs[0] != upper || dirs[1] != init {
		t.Errorf("the engine's own directories: %q %v", dirs, err)
	}
	var un *engine.Unavailable
	for _, c := range []*engine.Container{ctr("btrfs", upper, ""), ctr("overlay2", "", "")} {
		if dirs, err := e.UpperDirs(c); !errors.As(err, &un) || dirs != nil {
			t.Errorf("%+v: %q %v, want unavailable", c, dirs, err)
		}
	}
	for _, c := range []*engine.Container{
		ctr("overlay2", filepath.Join(root, "overlay2", id, "..", other, "diff", "..", "..", id, "diff", ".."), ""),
		ctr("overlay2", filepath.Join(root, "overlay2", "..", "..", "etc", "diff"), ""),
		ctr("overlay2", "/etc/"+id+"/diff", ""),
		ctr("overlay2", upper, filepath.Join(root, "overlay2", other+"-init", "diff")),
		ctr("overlay2", upper, filepath.Join(root, "overlay2", id+"-init", "..", other, "-init/diff")),
	} {
		if dirs, err := e.UpperDirs(c); !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("%v: %q %v, want refused", c.Storage, dirs, err)
		}
	}
}

// TestPodmanUpperDirs: through Podman's service, the upper directory is
// read directly only as <graph root>/overlay/<64 hex>/diff, with no init
// layer (the first lower directory is an image layer); Docker's overlay2
// places, ".." and a link out are refused or unavailable, never read.
func TestPodmanUpperDirs(t *testing.T) {
	root := t.TempDir()
	id, lower := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	for _, d := range []string{"overlay/" + id + "/diff", "overlay/" + lower + "/diff", "overlay2/" + id + "/diff"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	linked := strings.Repeat("ef", 32)
	os.MkdirAll(filepath.Join(root, "overlay", linked), 0o755)
	os.Symlink(t.TempDir(), filepath.Join(root, "overlay", linked, "diff"))
	e := &Engine{root: root, info: manifestPodman}
	upper := filepath.Join(root, "overlay", id, "diff")
	ctr := func(driver, up string) *engine.Container {
		return &engine.Container{Driver: driver, Storage: map[string]string{"UpperDir": up, "LowerDir": filepath.Join(root, "overlay", lower, "diff")}}
	}
	if dirs, err := e.UpperDirs(ctr("overlay", upper)); err != nil || len(dirs) != 1 || dirs[0] != upper {
		t.Errorf("podman's own upper directory: %q %v", dirs, err)
	}
	var un *engine.Unavailable
	for _, c := range []*engine.Container{ctr("overlay2", filepath.Join(root, "overlay2", id, "diff")), ctr("vfs", upper), ctr("overlay", "")} {
		if dirs, err := e.UpperDirs(c); !errors.As(err, &un) || dirs != nil {
			t.Errorf("%+v: %q %v, want unavailable", c, dirs, err)
		}
	}
	for _, c := range []*engine.Container{
		ctr("overlay", filepath.Join(root, "overlay2", id, "diff")),
		ctr("overlay", filepath.Join(root, "overlay", lower, "..", "..", "..", id, "diff")),
		ctr("overlay", "/etc/overlay/"+id+"/diff"),
		ctr("overlay", filepath.Join(root, "overlay", "l", "diff")),
		ctr("overlay", filepath.Join(root, "overlay", linked, "diff")),
	} {
		if dirs, err := e.UpperDirs(c); !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("%v: %q %v, want refused", c.Storage, dirs, err)
		}
	}
}

var manifestPodman = manifest.Engine{Runtime: "podman"}
