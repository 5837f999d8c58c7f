package treediff_test

import (
	"archive/tar"
	"os"
	"path/filepath"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/treediff"
	"github.com/amber-forensics/amber/view"
)

// localLayer has what a local directory can differ from an archive in:
// modes (setuid too), owners, times of files, directories and symlinks,
// xattrs, symlinks pointing out of the tree (to a file and to /), hard
// links, a device and a fifo.
func localLayer(t *testing.T) []byte {
	return withDevices(t, fixture.Layer(
		fixture.Entry{Name: "bin/", Type: tar.TypeDir, Mode: 0o755, ModTime: t1},
		fixture.Entry{Name: "bin/sh", Body: "#!sh", Mode: 0o755, ModTime: t2},
		fixture.Entry{Name: "bin/su", Body: "su", Mode: 0o4755},
		fixture.Dir("d/"),
		fixture.File("d/x", "x"),
		fixture.Dir("dev/"),
		fixture.Entry{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666},
		fixture.Entry{Name: "dev/pipe", Type: tar.TypeFifo, Mode: 0o644},
		fixture.Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o750, GID: 42, ModTime: t2},
		fixture.Entry{Name: "etc/hosts", Body: "hosts\n", Mode: 0o644, UID: 1234, GID: 5678},
		fixture.Entry{Name: "etc/passwd", Body: "root\n", Mode: 0o644, ModTime: t1},
		fixture.Dir("gone/"),
		fixture.File("gone/x", "x"),
		fixture.Dir("hard/"),
		fixture.Entry{Name: "hard/a", Body: "shared\n", ModTime: t1},
		// A hard link's header carries its inode's time, as tar writes it
		// (on disk the two names cannot have two).
		fixture.Entry{Name: "hard/b", Type: tar.TypeLink, Link: "hard/a", ModTime: t1},
		fixture.Entry{Name: "lnk", Type: tar.TypeSymlink, Link: "/etc/passwd", ModTime: t1},
		fixture.Symlink("root", "/"),
		fixture.Entry{Name: "xa", Body: "x", Xattrs: map[string]string{"user.a": "1", "user.b": ""}},
	), map[string][2]int64{"dev/null": {1, 3}})
}

// TestDirTree: a directory GNU tar extracted from a layer (as root, with
// owners and xattrs) is the same tree as the layer in the archive: no
// symlink is followed (lnk points at this machine's /etc/passwd, root at
// /). Each change made to it with a shell tool is the one change
// Compare reports.
func TestDirTree(t *testing.T) {
	testenv.Root(t)
	tarBin := testenv.Tool(t, "tar")
	testenv.Tool(t, "setfattr")
	layer := localLayer(t)
	v := &view.View{A: fixture.Open(t, fixture.Capture(t, t.TempDir(), "local", fixture.Image{Tags: []string{"local:1"}, Layers: [][]byte{layer}}))}
	archived := viewTree(t, v, "images/local_1/rootfs")
	src := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(src, layer, 0o600); err != nil {
		t.Fatal(err)
	}

	// keep F CMD... runs CMD and puts F's mtime back, so that a row
	// changes one thing.
	const keep = `set -e; keep() { local f="$1" t; shift; t=$(stat -c %Y "$f"); "$@"; touch -h -d "@$t" "$f"; }; `
	for _, tc := range []struct {
		name, script string
		want         []string
	}{
		{"same", ``, nil},
		{"mode", `chmod 0755 bin/su`, []string{"C /bin (below)", "C /bin/su mode"}},
		{"owner", `chown 1000:1000 etc/passwd`, []string{"C /etc (below)", "C /etc/passwd owner"}},
		{"symlink-owner", `chown -h 7:7 lnk`, []string{"C /lnk owner"}},
		{"mtime", `touch -d @0 etc/hosts`, []string{"C /etc (below)", "C /etc/hosts mtime"}},
		{"dir-mtime", `touch -d @0 bin`, []string{"C /bin mtime"}},
		{"symlink-mtime", `touch -h -d @0 lnk`, []string{"C /lnk mtime"}},
		{"content", `keep etc/passwd sh -c 'printf R | dd of=etc/passwd bs=1 count=1 conv=notrunc 2>/dev/null'`, []string{"C /etc (below)", "C /etc/passwd content"}},
		{"size", `keep etc/passwd sh -c 'echo more >> etc/passwd'`, []string{"C /etc (below)", "C /etc/passwd size content"}},
		{"hard-linked-content", `keep hard/a sh -c 'printf X | dd of=hard/a bs=1 count=1 conv=notrunc 2>/dev/null'`,
			[]string{"C /hard (below)", "C /hard/a content", "C /hard/b content"}},
		{"target", `keep lnk ln -sfn /etc/shadow lnk`, []string{"C /lnk target"}},
		{"xattr-changed", `setfattr -n user.a -v 2 xa`, []string{"C /xa xattrs"}},
		{"xattr-removed", `setfattr -x user.b xa`, []string{"C /xa xattrs"}},
		{"xattr-added", `setfattr -n user.new -v v etc/hosts`, []string{"C /etc (below)", "C /etc/hosts xattrs"}},
		// A local file system's label is not the evidence's.
		{"selinux-label", `setfattr -n security.selinux -v system_u:object_r:etc_t:s0 etc/hosts`, nil},
		{"device", `keep dev keep dev/null sh -c 'rm dev/null && mknod -m 666 dev/null c 1 5'`, []string{"C /dev (below)", "C /dev/null device"}},
		{"device-major", `keep dev keep dev/null sh -c 'rm dev/null && mknod -m 666 dev/null c 3 3'`, []string{"C /dev (below)", "C /dev/null device"}},
		{"block-for-char", `keep dev keep dev/null sh -c 'rm dev/null && mknod -m 666 dev/null b 1 3'`, []string{"C /dev (below)", "C /dev/null type"}},
		{"file-for-fifo", `keep dev keep dev/pipe sh -c 'rm dev/pipe && : > dev/pipe && chmod 644 dev/pipe'`, []string{"C /dev (below)", "C /dev/pipe type"}},
		{"file-for-dir", `rm -r d && echo d > d`, []string{"C /d type", "D /d/x"}},
		{"dir-for-symlink", `rm lnk && mkdir lnk && touch lnk/in`, []string{"C /lnk type", "A /lnk/in"}},
		{"added", `echo n > new && mkdir -p newdir/sub`, []string{"A /new", "A /newdir", "A /newdir/sub"}},
		{"deleted", `rm -r gone`, []string{"D /gone", "D /gone/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tree")
			os.Mkdir(dir, 0o755)
			testenv.Run(t, tarBin, "-xpf", src, "--same-owner", "--xattrs", "--xattrs-include=*", "-C", dir)
			if tc.script != "" {
				testenv.Shell(t, "cd "+dir+" && "+keep+tc.script)
			}
			local, err := treediff.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer local.Close()
			chs, err := treediff.Compare(archived, local, treediff.Options{})
			if err != nil {
				t.Fatal(err)
			}
			sameLines(t, "archive against "+tc.name, summary(chs), tc.want)
			// The other way round: the same paths and fields.
			back, err := treediff.Compare(local, archived, treediff.Options{})
			if err != nil {
				t.Fatal(err)
			}
			swapped := summary(back)
			for i, s := range swapped {
				switch s[0] {
				case 'A':
					swapped[i] = "D" + s[1:]
				case 'D':
					swapped[i] = "A" + s[1:]
				}
			}
			sameLines(t, tc.name+" against the archive", swapped, tc.want)
		})
	}
}

// TestOpenDirErrors: what is not a directory is refused.
func TestOpenDirErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "file")
	os.WriteFile(f, []byte("x"), 0o600)
	for _, p := range []string{filepath.Join(dir, "missing"), f} {
		if tr, err := treediff.OpenDir(p); err == nil {
			tr.Close()
			t.Errorf("OpenDir(%s) accepted", p)
		}
	}
}
