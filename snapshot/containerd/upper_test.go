package containerd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// TestUpperDirsClaims: containerd's word on where a container's upper
// directory lies is taken only for <overlayfs root>/snapshots/<number>/fs
// with the real directories (symbolic links resolved, none leading out);
// anything else is refused as a claim, and another snapshotter or no
// overlay mount makes the route unavailable.
func TestUpperDirsClaims(t *testing.T) {
	root := filepath.Join(t.TempDir(), "io.containerd.snapshotter.v1.overlayfs")
	outside := t.TempDir()
	for _, d := range []string{"snapshots/3/fs", "snapshots/abc/fs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "snapshots/4"), 0o755)
	if err := os.Symlink(outside, filepath.Join(root, "snapshots/4/fs")); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{overlayRoot: root}
	ctr := func(driver, upper string) *engine.Container {
		st := map[string]string{}
		if upper != "" {
			st["UpperDir"] = upper
		}
		return &engine.Container{Driver: driver, Storage: st}
	}
	got, err := r.UpperDirs(ctr("overlayfs", filepath.Join(root, "snapshots/3/fs")))
	if err != nil || len(got) != 1 || got[0] != filepath.Join(root, "snapshots/3/fs") {
		t.Errorf("the snapshotter's own upper directory: %v %v", got, err)
	}
	for name, upper := range map[string]string{
		"outside":       outside,
		"dot-dot":       filepath.Join(root, "snapshots/3/fs/../../../..", filepath.Base(outside)),
		"not a number":  filepath.Join(root, "snapshots/abc/fs"),
		"symlink out":   filepath.Join(root, "snapshots/4/fs"),
		"not fs":        filepath.Join(root, "snapshots/3"),
		"relative":      "snapshots/3/fs",
		"missing":       filepath.Join(root, "snapshots/9/fs"),
		"host /etc":     "/etc",
		"root of roots": root,
	} {
		if _, err := r.UpperDirs(ctr("overlayfs", upper)); !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("%s (%s): %v, want a refused claim", name, upper, err)
		}
	}
	var un *engine.Unavailable
	if _, err := r.UpperDirs(ctr("native", filepath.Join(root, "snapshots/3/fs"))); !errors.As(err, &un) || !strings.Contains(un.Why, "native") {
		t.Errorf("native snapshotter: %v, want unavailable", err)
	}
	if _, err := r.UpperDirs(ctr("overlayfs", "")); !errors.As(err, &un) {
		t.Errorf("no upper directory: %v, want unavailable", err)
	}
	if _, err := (&Runtime{overlayRoot: "rel/root"}).UpperDirs(ctr("overlayfs", "rel/root/snapshots/3/fs")); !errors.Is(err, engine.ErrEngineClaim) {
		t.Errorf("a relative snapshotter root: %v, want a refused claim", err)
	}
}

// TestOverlayStorage: the upper, lower and work directories come from the
// one overlay mount of a snapshot; a bind mount, or several mounts, give
// none (and the route is then unavailable).
func TestOverlayStorage(t *testing.T) {
	st := map[string]string{}
	overlayStorage(st, []snapshotMount{{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/r/snapshots/3/work", "upperdir=/r/snapshots/3/fs", "lowerdir=/r/snapshots/2/fs:/r/snapshots/1/fs"}}})
	if st["UpperDir"] != "/r/snapshots/3/fs" || st["LowerDir"] != "/r/snapshots/2/fs:/r/snapshots/1/fs" || st["WorkDir"] != "/r/snapshots/3/work" {
		t.Errorf("overlay mount: %v", st)
	}
	for _, ms := range [][]snapshotMount{
		{{Type: "bind", Source: "/r/snapshots/1/fs", Options: []string{"rbind", "ro"}}},
		{{Type: "overlay", Options: []string{"upperdir=/a"}}, {Type: "overlay", Options: []string{"upperdir=/b"}}},
	} {
		st := map[string]string{}
		overlayStorage(st, ms)
		if st["UpperDir"] != "" {
			t.Errorf("%+v: upper directory %q", ms, st["UpperDir"])
		}
	}
}
