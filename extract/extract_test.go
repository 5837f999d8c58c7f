package extract_test

import (
	"archive/tar"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amber-forensics/amber/extract"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// These tests call extract.To on archives captured from crafted layers and
// check what it wrote with tools that do not share amber's code: GNU tar
// (extracting the same layer is the reference), find, stat and diff.

var (
	t1 = time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	t2 = time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
)

// treeEntries is a layer with what a tree copy must get right: nested
// directories, modes an attacker would plant for root (setuid, setgid,
// world-writable, sticky), owners, times, symlinks pointing outside
// (absolute and by ..), a hard link, and special files.
func treeEntries() []fixture.Entry {
	return []fixture.Entry{
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755, ModTime: t1},
		{Name: "bin/suid", Body: "#!/bin/sh\nid\n", Mode: 0o4755, ModTime: t2},
		{Name: "bin/sgid", Body: "sgid\n", Mode: 0o2755, UID: 1234, GID: 1234},
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o750, UID: 0, GID: 42, ModTime: t2},
		{Name: "etc/passwd", Body: "root:x:0:0::/root:/bin/sh\n", Mode: 0o640, GID: 42, ModTime: t1},
		{Name: "etc/empty", Body: "", Mode: 0o600},
		{Name: "pub/", Type: tar.TypeDir, Mode: 0o777, UID: 1234, GID: 1234},
		{Name: "pub/plain", Body: "plain\n", Mode: 0o644, UID: 1234, GID: 5678},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "abs", Type: tar.TypeSymlink, Link: "/etc/shadow", ModTime: t1},
		{Name: "up", Type: tar.TypeSymlink, Link: "../../../../../../../tmp", ModTime: t2},
		{Name: "hard/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "hard/a", Body: "shared inode\n", Mode: 0o644, ModTime: t1},
		fixture.Hardlink("hard/b", "hard/a"),
		{Name: "dev/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666},
		{Name: "dev/pipe", Type: tar.TypeFifo, Mode: 0o644},
	}
}

// capture captures one image of the given layers and returns its view.
func capture(t *testing.T, tag string, layers ...[]byte) *view.View {
	t.Helper()
	p := fixture.Capture(t, t.TempDir(), "x", fixture.Image{Tags: []string{tag}, Layers: layers})
	return &view.View{A: fixture.Open(t, p)}
}

func stat(t *testing.T, v *view.View, p string) *view.Entry {
	t.Helper()
	e, err := v.Stat(p)
	if err != nil {
		t.Fatalf("Stat(%s): %v", p, err)
	}
	return e
}

// listing is find's account of a tree, one line per entry but the top:
// path, type, mode, owner, size (regular files), mtime, link target,
// number of links.
func listing(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := testenv.Run(t, "find", dir, "-mindepth", "1", "-printf", `%P|%y|%m|%U:%G|%s|%T@|%l|%n\n`)
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		f := strings.Split(l, "|")
		if f[1] != "f" {
			f[4] = "-" // a directory's or link's size is the file system's
		}
		m[f[0]] = strings.Join(f[1:], "|")
	}
	return m
}

func diffKeys(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s %s: find says %q, want %q", what, k, got[k], want[k])
		}
	}
}

// TestToMatchesTar: a tree extracted with PreserveAll (KeepModes and
// Owners) is what GNU tar makes of the same layer as root (-p
// --same-owner): same entries, types, modes, owners, times (symlinks'
// own included), link targets, hard links and content, less the device
// and fifo, which extract lists instead of creating. By default the same
// tree comes out without setuid, setgid, sticky and write for others, and
// owned by the user extracting.
func TestToMatchesTar(t *testing.T) {
	testenv.Root(t)
	tarBin := testenv.Tool(t, "tar")
	layer := fixture.Layer(treeEntries()...)
	v := capture(t, "tree:1", layer)
	e := stat(t, v, "images/tree_1/rootfs")

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "layer.tar"), layer, 0o600)
	ref := filepath.Join(dir, "ref")
	os.Mkdir(ref, 0o755)
	testenv.Run(t, tarBin, "-xpf", filepath.Join(dir, "layer.tar"), "--same-owner", "-C", ref)
	want := listing(t, ref)
	for p, l := range want {
		if typ := l[0]; typ == 'c' || typ == 'p' {
			delete(want, p)
			os.Remove(filepath.Join(ref, p)) // for diff -r
		}
	}
	if len(want) != 15 {
		t.Fatalf("tar's reference has %d entries, want 15: %v", len(want), want)
	}

	for _, tc := range []struct {
		name string
		opts extract.Options
		want func(line string) string // from tar's line to extract's
	}{
		{"preserve-all", extract.Options{KeepModes: true, Owners: true}, func(l string) string { return l }},
		{"default", extract.Options{}, func(l string) string {
			f := strings.Split(l, "|")
			if f[0] == "l" {
				return l // a symlink's mode is always 0777 on Linux
			}
			m, _ := strconv.ParseUint(f[1], 8, 32)
			f[1] = strconv.FormatUint(m&^0o7002, 8)
			f[2] = "0:0"
			return strings.Join(f, "|")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := t.TempDir()
			var progress []string
			tc.opts.Progress = func(p string) { progress = append(progress, p) }
			res, err := extract.To(v, e, dest, "out", tc.opts)
			if err != nil {
				t.Fatalf("To: %v", err)
			}
			out := filepath.Join(dest, "out")
			exp := map[string]string{}
			for p, l := range want {
				exp[p] = tc.want(l)
			}
			diffKeys(t, tc.name, listing(t, out), exp)
			if o, err := runDiff(ref, out); err != nil {
				t.Errorf("diff -r --no-dereference %s %s: %v\n%s", ref, out, err, o)
			}
			if res.Files != 6 || res.Dirs != 7 || res.Symlinks != 2 || res.Hardlinks != 1 || res.Bytes != 63 {
				t.Errorf("result %+v, want 6 files of 63 bytes, 7 directories (the top too), 2 symlinks, 1 hard link", res)
			}
			if s := strings.Join(res.Skipped, "; "); len(res.Skipped) != 2 ||
				!strings.Contains(s, "out/dev/null: a character device, not created") || !strings.Contains(s, "out/dev/pipe: a fifo, not created") {
				t.Errorf("skipped %q, want the device and the fifo", res.Skipped)
			}
			if len(res.NotWritten) != 0 {
				t.Errorf("not written: %+v", res.NotWritten)
			}
			// Progress names every entry, the skipped ones too.
			if len(progress) != 18 || progress[0] != "out" || !slices.Contains(progress, "out/dev/pipe") || !slices.Contains(progress, "out/hard/b") {
				t.Errorf("progress %q, want the 18 entries from out down", progress)
			}
		})
	}
}

func runDiff(a, b string) (string, error) {
	out, err := exec.Command("diff", "-r", "--no-dereference", a, b).CombinedOutput()
	return string(out), err
}

// TestToAltered: Result.Altered names each entry whose mode or owner on
// disk is not the recorded one, with both, as stat sees them; with
// PreserveAll nothing is altered.
func TestToAltered(t *testing.T) {
	testenv.Root(t)
	v := capture(t, "tree:1", fixture.Layer(treeEntries()...))
	e := stat(t, v, "images/tree_1/rootfs")
	for _, tc := range []struct {
		name string
		opts extract.Options
		want map[string]extract.Altered
	}{
		{"default", extract.Options{}, map[string]extract.Altered{
			"out/bin/suid":   {RecordedMode: 0o4755, Mode: 0o755},
			"out/bin/sgid":   {RecordedMode: 0o2755, Mode: 0o755, RecordedUID: 1234, RecordedGID: 1234},
			"out/etc":        {RecordedMode: 0o750, Mode: 0o750, RecordedGID: 42},
			"out/etc/passwd": {RecordedMode: 0o640, Mode: 0o640, RecordedGID: 42},
			"out/pub":        {RecordedMode: 0o777, Mode: 0o775, RecordedUID: 1234, RecordedGID: 1234},
			"out/pub/plain":  {RecordedMode: 0o644, Mode: 0o644, RecordedUID: 1234, RecordedGID: 5678},
			"out/tmp":        {RecordedMode: 0o1777, Mode: 0o775},
		}},
		{"keep-modes", extract.Options{KeepModes: true}, map[string]extract.Altered{
			"out/bin/sgid":   {RecordedMode: 0o2755, Mode: 0o2755, RecordedUID: 1234, RecordedGID: 1234},
			"out/etc":        {RecordedMode: 0o750, Mode: 0o750, RecordedGID: 42},
			"out/etc/passwd": {RecordedMode: 0o640, Mode: 0o640, RecordedGID: 42},
			"out/pub":        {RecordedMode: 0o777, Mode: 0o777, RecordedUID: 1234, RecordedGID: 1234},
			"out/pub/plain":  {RecordedMode: 0o644, Mode: 0o644, RecordedUID: 1234, RecordedGID: 5678},
		}},
		{"preserve-all", extract.Options{KeepModes: true, Owners: true}, map[string]extract.Altered{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := t.TempDir()
			res, err := extract.To(v, e, dest, "out", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]extract.Altered{}
			for _, a := range res.Altered {
				p := a.Path
				a.Path = ""
				got[p] = a
				// What it says was written is what stat(1) sees.
				if s, w := strings.TrimSpace(testenv.Run(t, "stat", "-c", "%a %u %g", filepath.Join(dest, p))),
					strconv.FormatUint(uint64(a.Mode), 8)+" "+strconv.Itoa(int(a.UID))+" "+strconv.Itoa(int(a.GID)); s != w {
					t.Errorf("%s: stat says %q, Altered says %q", p, s, w)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("%d entries altered, want %d: %+v", len(got), len(tc.want), res.Altered)
			}
			for p, w := range tc.want {
				if g, ok := got[p]; !ok || g != w {
					t.Errorf("altered %s: %+v (listed %v), want %+v", p, g, ok, w)
				}
			}
		})
	}
}

// TestToBadName: the destination name is one path component; anything
// else is refused before DEST is touched, even with Force (which would
// otherwise merge a directory into DEST itself, or into one below it).
func TestToBadName(t *testing.T) {
	v := capture(t, "tree:1", fixture.Layer(treeEntries()...))
	e := stat(t, v, "images/tree_1/rootfs/etc")
	outside := t.TempDir()
	base := filepath.Join(outside, "base")
	dest := filepath.Join(base, "dest")
	os.MkdirAll(filepath.Join(dest, "a"), 0o755)
	for _, name := range []string{"", ".", "..", "../escaped", "a/b", "/abs", "a/..", "a/.", "../../" + filepath.Base(outside)} {
		if _, err := extract.To(v, e, dest, name, extract.Options{Force: true}); err == nil {
			t.Errorf("To(name %q) accepted", name)
		}
	}
	for d, want := range map[string]string{dest: "a", filepath.Join(dest, "a"): "", base: "dest", outside: "base"} {
		if got := strings.Join(readDir(t, d), " "); got != want {
			t.Errorf("%s holds %q after refused names, want %q", d, got, want)
		}
	}
}

func readDir(t *testing.T, d string) []string {
	t.Helper()
	es, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	return n
}

// TestToHostileDest: symlinks already in DEST (planted there, or written
// by an earlier extraction of the same evidence) are never followed: a
// symlink where a directory is to be made is refused without Force and
// replaced with Force, and nothing is written outside DEST either way.
func TestToHostileDest(t *testing.T) {
	outside := t.TempDir()
	// Layer 0 has symlinks to outside where layer 1 has directories; a
	// later layer's tree is extracted over the first one's.
	l0 := fixture.Layer(
		fixture.Symlink("abs", outside),
		fixture.Symlink("rel", "../../../../../../../../.."+outside),
		fixture.File("f", "file\n"),
	)
	l1 := fixture.Layer(
		fixture.Whiteout("", "abs"), fixture.Dir("abs/"), fixture.File("abs/planted", "abs\n"),
		fixture.Whiteout("", "rel"), fixture.Dir("rel/"), fixture.File("rel/planted", "rel\n"),
		fixture.Whiteout("", "f"), fixture.Dir("f/"), fixture.File("f/planted", "f\n"),
	)
	v := capture(t, "hostile:1", l0, l1)
	first, second := stat(t, v, "images/hostile_1/layers/0"), stat(t, v, "images/hostile_1/layers/1")

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dest string) // before the second extraction
		force bool
		err   error  // of the second extraction
		is    string // what DEST/t/abs must be afterwards: "link" or "dir"
	}{
		{"earlier-extraction", func(t *testing.T, dest string) {
			if _, err := extract.To(v, first, dest, "t", extract.Options{}); err != nil {
				t.Fatal(err)
			}
		}, false, extract.ErrExists, "link"},
		{"earlier-extraction-force", func(t *testing.T, dest string) {
			if _, err := extract.To(v, first, dest, "t", extract.Options{}); err != nil {
				t.Fatal(err)
			}
		}, true, nil, "dir"},
		{"planted-top", func(t *testing.T, dest string) {
			os.Symlink(outside, filepath.Join(dest, "t"))
		}, false, extract.ErrExists, ""},
		{"planted-top-force", func(t *testing.T, dest string) {
			os.Symlink(outside, filepath.Join(dest, "t"))
		}, true, nil, "dir"},
		{"planted-inside-force", func(t *testing.T, dest string) {
			os.Mkdir(filepath.Join(dest, "t"), 0o755)
			os.Symlink(outside, filepath.Join(dest, "t", "abs"))
			os.Symlink("../../../../../../../../.."+outside, filepath.Join(dest, "t", "rel"))
		}, true, nil, "dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := t.TempDir()
			tc.setup(t, dest)
			_, err := extract.To(v, second, dest, "t", extract.Options{Force: tc.force})
			if !errors.Is(err, tc.err) {
				t.Fatalf("second extraction: %v, want %v", err, tc.err)
			}
			if n := readDir(t, outside); len(n) != 0 {
				t.Fatalf("written outside DEST: %s holds %v", outside, n)
			}
			fi, err := os.Lstat(filepath.Join(dest, "t", "abs"))
			switch tc.is {
			case "link":
				if err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Errorf("t/abs: %v %v, want the first extraction's symlink left alone", fi, err)
				}
			case "dir":
				for _, p := range []string{"abs", "rel", "f"} {
					b, err := os.ReadFile(filepath.Join(dest, "t", p, "planted"))
					fi, lerr := os.Lstat(filepath.Join(dest, "t", p))
					if err != nil || lerr != nil || !fi.IsDir() || string(b) != p+"\n" {
						t.Errorf("t/%s/planted: %q %v; t/%s: %v %v, want a directory made in DEST", p, b, err, p, fi, lerr)
					}
				}
			}
		})
	}
}

// TestToExists: without Force nothing at the destination is replaced;
// with Force a file is, and a directory where a directory is wanted is
// kept with what else it holds.
func TestToExists(t *testing.T) {
	v := capture(t, "tree:1", fixture.Layer(treeEntries()...))
	passwd, etc := stat(t, v, "images/tree_1/rootfs/etc/passwd"), stat(t, v, "images/tree_1/rootfs/etc")
	dest := t.TempDir()
	os.WriteFile(filepath.Join(dest, "passwd"), []byte("mine\n"), 0o600)
	os.Mkdir(filepath.Join(dest, "etc"), 0o700)
	os.WriteFile(filepath.Join(dest, "etc", "other"), []byte("other\n"), 0o600)
	os.WriteFile(filepath.Join(dest, "etc", "passwd"), []byte("mine\n"), 0o600)

	for _, tc := range []struct {
		e    *view.Entry
		name string
	}{{passwd, "passwd"}, {etc, "etc"}} {
		if _, err := extract.To(v, tc.e, dest, tc.name, extract.Options{}); !errors.Is(err, extract.ErrExists) {
			t.Errorf("%s over an existing one: %v, want ErrExists", tc.name, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "passwd")); string(b) != "mine\n" {
		t.Errorf("passwd replaced without Force: %q", b)
	}
	res, err := extract.To(v, etc, dest, "etc", extract.Options{Force: true})
	if err != nil || res.Files != 2 {
		t.Fatalf("etc with Force: %+v %v", res, err)
	}
	for p, want := range map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "etc/other": "other\n", "etc/empty": ""} {
		if b, err := os.ReadFile(filepath.Join(dest, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	if _, err := extract.To(v, passwd, dest, "passwd", extract.Options{Force: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "passwd")); string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("passwd with Force: %q", b)
	}
}

// TestToNamesTooLong: names the destination's file system refuses (a
// component over NAME_MAX, a link target over PATH_MAX; PAX has no limit)
// are skipped and listed with ENAMETOOLONG, a directory with what it
// holds; the rest is written, and of a hard-linked file whose first name
// is too long the other names are still one inode.
func TestToNamesTooLong(t *testing.T) {
	long := strings.Repeat("n", 300)
	v := capture(t, "long:1", fixture.Layer(
		fixture.Dir("a/"),
		fixture.File("a/"+long, "too long\n"),
		fixture.File("a/z", "after\n"),
		fixture.Dir("d"+long+"/"),
		fixture.File("d"+long+"/inside", "under a long directory\n"),
		fixture.Dir("h/"),
		fixture.File("h/a"+long, "linked\n"),
		fixture.Hardlink("h/l1", "h/a"+long),
		fixture.Hardlink("h/l2", "h/a"+long),
		fixture.Symlink("s", strings.Repeat("t/", 2100)),
		fixture.File("z", "last\n"),
	))
	dest := t.TempDir()
	res, err := extract.To(v, stat(t, v, "images/long_1/rootfs"), dest, "r", extract.Options{})
	if err != nil {
		t.Fatalf("To: %v", err)
	}
	var nw []string
	for _, n := range res.NotWritten {
		if !errors.Is(n.Err, syscall.ENAMETOOLONG) {
			t.Errorf("not written %s: %v, want ENAMETOOLONG", n.Path, n.Err)
		}
		nw = append(nw, n.Path)
	}
	if want := []string{"r/a/" + long, "r/d" + long, "r/h/a" + long, "r/s"}; strings.Join(nw, " ") != strings.Join(want, " ") {
		t.Errorf("not written %q, want %q", nw, want)
	}
	for p, want := range map[string]string{"a/z": "after\n", "h/l1": "linked\n", "h/l2": "linked\n", "z": "last\n"} {
		if b, err := os.ReadFile(filepath.Join(dest, "r", p)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	if a, b := testenv.Run(t, "stat", "-c", "%i %h", filepath.Join(dest, "r/h/l1")), testenv.Run(t, "stat", "-c", "%i %h", filepath.Join(dest, "r/h/l2")); a != b || !strings.HasSuffix(a, " 2\n") {
		t.Errorf("h/l1 and h/l2: %q and %q, want one inode of two links", a, b)
	}
	if res.Hardlinks != 1 || res.Files != 3 {
		t.Errorf("result %+v, want 3 files and 1 hard link", res)
	}
	if n := readDir(t, filepath.Join(dest, "r")); strings.Join(n, " ") != "a h z" {
		t.Errorf("r holds %v, want a h z", n)
	}
}

// TestToCorrupt: a file whose content does not match what the index
// records (a size or a SHA-256 that lies) is removed, and the error says
// the archive is corrupt.
func TestToCorrupt(t *testing.T) {
	v := capture(t, "tree:1", fixture.Layer(treeEntries()...))
	good := stat(t, v, "images/tree_1/rootfs/etc/passwd")
	for _, tc := range []struct {
		name string
		lie  func(e *view.Entry) // on a copy of the entry and its record
	}{
		{"sha256", func(e *view.Entry) { e.Node.Rec.SHA256 = hashing.Sum([]byte("something else")) }},
		{"size", func(e *view.Entry) { e.Size++ }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, n := *good, *good.Node
			e.Node = &n
			tc.lie(&e)
			dest := t.TempDir()
			res, err := extract.To(v, &e, dest, "passwd", extract.Options{})
			if !errors.Is(err, manifest.ErrCorrupt) {
				t.Errorf("To: %v, want ErrCorrupt", err)
			}
			if n := readDir(t, dest); len(n) != 0 || res.Files != 0 {
				t.Errorf("left %v (%d files counted), want nothing", n, res.Files)
			}
		})
	}
}
