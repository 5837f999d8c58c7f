package freezer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// TestOf finds a process's freezer in a made-up /proc and cgroup mount,
// v1 and v2, and refuses a cgroup that does not name the container (a
// look-alike of a short ID included) or that is a link out.
func TestOf(t *testing.T) {
	full := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		cgroup, id, file string
		ok               bool
	}{
		{"4:freezer:/docker/" + full + "\n0::/docker/" + full + "\n", full, "freezer/docker/" + full + "/freezer.state", true},
		{"0::/machine.slice/libpod-" + full + ".scope\n", full, "machine.slice/libpod-" + full + ".scope/cgroup.freeze", true},
		{"0::/ns/web\n", "web", "ns/web/cgroup.freeze", true},
		{"0::/system.slice/cri-containerd-web.scope\n", "web", "system.slice/cri-containerd-web.scope/cgroup.freeze", true},
		{"0::/ns/webapp\n", "web", "", false},
		{"0::/system.slice/web-server.service\n", "web", "", false},
		{"0::/docker/" + full[:63] + "\n", full, "", false},
		{"0::/\n", full, "", false},
	} {
		proc, cg := t.TempDir(), t.TempDir()
		os.MkdirAll(filepath.Join(proc, "42"), 0o755)
		os.WriteFile(filepath.Join(proc, "42", "cgroup"), []byte(tc.cgroup), 0o644)
		if tc.file != "" {
			os.MkdirAll(filepath.Join(cg, filepath.Dir(tc.file)), 0o755)
			os.WriteFile(filepath.Join(cg, tc.file), []byte("0\n"), 0o644)
		} else {
			// Make the look-alike's directory exist: only the name refuses it.
			dir := strings.TrimPrefix(strings.TrimSpace(strings.SplitN(tc.cgroup, ":", 3)[2]), "/")
			os.MkdirAll(filepath.Join(cg, dir), 0o755)
			os.WriteFile(filepath.Join(cg, dir, "cgroup.freeze"), []byte("0\n"), 0o644)
		}
		f, err := Of(proc, cg, 42, tc.id)
		if tc.ok && (err != nil || f.File() != filepath.Join(cg, tc.file)) {
			t.Errorf("%q: %v %v, want %s", tc.cgroup, f.File(), err, tc.file)
		}
		if !tc.ok && (err == nil || !errors.Is(err, engine.ErrEngineClaim) && !strings.Contains(err.Error(), "no freezer")) {
			t.Errorf("%q (id %s): %v %v, want refused", tc.cgroup, tc.id, f.File(), err)
		}
	}
}

// TestThawAndHold thaws a frozen v2 freezer and says ErrNotPaused for one
// that was not frozen.
func TestThawAndHold(t *testing.T) {
	dir := t.TempDir()
	f := Freezer{dir: dir}
	os.WriteFile(f.File(), []byte("1\n"), 0o644)
	if frozen, _ := f.Frozen(); !frozen {
		t.Fatal("not frozen to begin with")
	}
	if err := f.ThawAndHold(50e6); err != nil {
		t.Fatal(err)
	}
	if frozen, _ := f.Frozen(); frozen {
		t.Error("still frozen")
	}
	if err := f.ThawAndHold(50e6); !errors.Is(err, engine.ErrNotPaused) {
		t.Errorf("thawing a thawed cgroup: %v", err)
	}
}
