package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// modesDockerfile has files and directories of the modes a mount must
// show as they are: 0000 (/etc/shadow on RHEL and Fedora), 0001, setuid
// alone and all twelve bits; RUN rm leaves a .wh. marker in layer 2.
const modesDockerfile = `FROM amber-test-base:1
RUN mkdir /m && cd /m \
 && for m in 0000 0001 4000 7777; do echo "secret $m" > f$m && mkdir d$m && echo in > d$m/in && chmod $m f$m d$m; done \
 && echo doomed > doomed
RUN rm /m/doomed
`

// modesImage builds amber-test-modes:1 on the engine.
func modesImage(t *testing.T) string {
	t.Helper()
	dockerImage(t) // the base
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(modesDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "docker", "build", "-q", "-t", "amber-test-modes:1", dir)
	return "amber-test-modes:1"
}

// statMode is one path's mode as stat(1) prints it.
type statMode struct {
	raw  string // %f: type and permissions, in hex
	perm uint64 // %a
	str  string // %A, as ls -l
}

// statModes runs GNU stat on the paths below dir.
func statModes(t *testing.T, dir string, paths []string) map[string]statMode {
	t.Helper()
	args := []string{"-c", "%f|%a|%A|%n"}
	for _, p := range paths {
		args = append(args, filepath.Join(dir, p))
	}
	got := map[string]statMode{}
	for _, l := range strings.Split(strings.TrimSpace(testenv.Run(t, "stat", args...)), "\n") {
		f := strings.SplitN(l, "|", 4)
		if len(f) != 4 {
			t.Fatalf("stat line %q", l)
		}
		perm, err := strconv.ParseUint(f[1], 8, 32)
		if err != nil {
			t.Fatalf("stat line %q: %v", l, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(f[3], dir), "/")
		if rel == "" {
			rel = "."
		}
		got[rel] = statMode{f[0], perm, f[2]}
	}
	return got
}

// lsModes runs amber ls -r --json on a view path: each entry's perm and
// mode string.
func lsModes(t *testing.T, arch, p string) map[string]statMode {
	t.Helper()
	got := map[string]statMode{}
	sc := bufio.NewScanner(strings.NewReader(mustAmber(t, "ls", "-r", "--json", arch, p)))
	for sc.Scan() {
		var e struct{ Path, Mode, Perm string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("ls --json line %q: %v", sc.Text(), err)
		}
		perm, err := strconv.ParseUint(e.Perm, 8, 32)
		if err != nil {
			t.Fatalf("ls --json %s: perm %q", e.Path, e.Perm)
		}
		got[e.Path] = statMode{perm: perm, str: e.Mode}
	}
	return got
}

func modePaths(m map[string]statMode) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	sort.Strings(k)
	return k
}

// engineModes runs stat in a container of image on the paths abs (under
// /m) and returns each one's raw mode (hex), by its path under /m ("." for
// /m itself).
func engineModes(t *testing.T, image string, abs []string) map[string]string {
	t.Helper()
	engine := map[string]string{}
	out := testenv.Run(t, "docker", append([]string{"run", "--rm", image, "stat", "-c", "%f|%n"}, abs...)...)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		raw, p, _ := strings.Cut(l, "|")
		engine[strings.TrimPrefix(strings.TrimPrefix(p, "/m"), "/")] = raw
	}
	engine["."] = engine[""]
	return engine
}

// layerTarModes lists the layer blob hex of archive arch with GNU tar and
// returns each member's mode string by its path.
func layerTarModes(t *testing.T, arch, hex string) map[string]string {
	t.Helper()
	modes := map[string]string{}
	out := testenv.Shell(t, fmt.Sprintf("zstd -dc %q | tar -xO blobs/sha256/%s | tar -tv --numeric-owner", arch, hex))
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		modes[strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "./"), "/")] = f[0]
	}
	return modes
}

// TestMountShowsModesAsStored: files and directories of modes 0000, 0001,
// 4000 and 7777 have the same mode through the mount (rootfs/ and
// layers/N/, a .wh. marker included) as in amber ls, in a container of the
// image (docker run stat) and in the layer's tar headers (GNU tar); amber's
// own files and directories stay 0444 and 0555; root still reads a file of
// mode 0000 through the mount.
func TestMountShowsModesAsStored(t *testing.T) {
	testenv.FUSE(t)
	testenv.Root(t) // reads files of mode 0000 through the mount
	testenv.Tool(t, "zstd")
	image := modesImage(t)
	dir := t.TempDir()
	arch := filepath.Join(dir, "modes.tar.zst")
	mustAmber(t, "capture", "image", image, "-o", arch)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	mustAmber(t, "mount", "--background", arch, mnt)
	t.Cleanup(func() { amber(t, "umount", mnt) })
	img := "images/amber-test-modes_1"

	// rootfs/: the mount against amber ls and against a container.
	ls := lsModes(t, arch, img+"/rootfs/m")
	paths := modePaths(ls)
	if len(paths) != 13 {
		t.Fatalf("ls rootfs/m: %v", paths)
	}
	got := statModes(t, filepath.Join(mnt, img, "rootfs/m"), paths)
	var abs []string
	for _, p := range paths {
		abs = append(abs, filepath.Join("/m", p))
	}
	engine := engineModes(t, image, abs)
	for _, p := range paths {
		g, want := got[p], ls[p]
		if g.perm != want.perm || g.str != want.str {
			t.Errorf("rootfs/m/%s: mount %04o %s, amber ls %04o %s", p, g.perm, g.str, want.perm, want.str)
		}
		if g.raw != engine[p] {
			t.Errorf("rootfs/m/%s: mount %s, docker run stat %s (raw modes, hex)", p, g.raw, engine[p])
		}
	}
	for _, p := range []string{"f0000", "d0000", "f0001", "d0001", "f4000", "d4000", "f7777", "d7777"} {
		if want, _ := strconv.ParseUint(p[1:], 8, 32); got[p].perm != want {
			t.Errorf("rootfs/m/%s: mount shows %04o", p, got[p].perm)
		}
	}

	// layers/N/ as stored, .wh. marker included: the mount against amber
	// ls and the layer's own tar headers.
	m := readManifest(t, arch)
	a, _ := m.Artifact(manifest.KindImage, "amber-test-modes_1")
	if len(a.Layers) != 3 {
		t.Fatalf("%d layers", len(a.Layers))
	}
	for n := 1; n < 3; n++ {
		view := fmt.Sprintf("%s/layers/%d", img, n)
		tarModes := layerTarModes(t, arch, a.Layers[n].Digest.Hex())
		ls := lsModes(t, arch, view)
		delete(ls, ".") // the layer's root: not in its tar
		paths := modePaths(ls)
		if len(paths) != len(tarModes) {
			t.Errorf("%s: amber ls %v, tar %v", view, paths, tarModes)
		}
		got := statModes(t, filepath.Join(mnt, view), paths)
		for _, p := range paths {
			g, want := got[p], ls[p]
			if g.perm != want.perm || g.str != want.str || g.str != tarModes[p] {
				t.Errorf("%s/%s: mount %04o %s, amber ls %04o %s, tar %s", view, p, g.perm, g.str, want.perm, want.str, tarModes[p])
			}
		}
		if n == 2 && got["m/.wh.doomed"].str == "" {
			t.Errorf("%s: no .wh. marker: %v", view, paths)
		}
	}

	// amber's own entries keep their modes.
	own := map[string]uint64{"": 0o555, "images": 0o555, img: 0o555, img + "/layers": 0o555, img + "/stages": 0o555,
		"manifest.json": 0o444, img + "/config.json": 0o444, img + "/history": 0o444, img + "/Dockerfile": 0o444}
	var ownPaths []string
	for p := range own {
		ownPaths = append(ownPaths, p)
	}
	for p, s := range statModes(t, mnt, ownPaths) {
		if p == "." {
			p = ""
		}
		if s.perm != own[p] {
			t.Errorf("%s: mode %04o, want %04o", p, s.perm, own[p])
		}
	}

	// Root reads and lists what mode 0000 closes to others.
	for p, want := range map[string]string{"rootfs/m/f0000": "secret 0000\n", "rootfs/m/d0000/in": "in\n", "layers/1/m/f0000": "secret 0000\n"} {
		if b, err := os.ReadFile(filepath.Join(mnt, img, p)); err != nil || string(b) != want {
			t.Errorf("reading %s as root: %q %v", p, b, err)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(mnt, img, "rootfs/m/d0000")); err != nil || len(ents) != 1 {
		t.Errorf("listing rootfs/m/d0000 as root: %v %v", ents, err)
	}
	if out, err := exec.Command("cat", filepath.Join(mnt, img, "rootfs/m/f0000")).CombinedOutput(); err != nil || string(out) != "secret 0000\n" {
		t.Errorf("cat rootfs/m/f0000: %v %s", err, out)
	}
}
