//go:build linux

package fusefs_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/klauspost/compress/zstd"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/fusefs"
	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/view"
)

// mount serves archive p on a fresh directory for the test's duration.
func mount(t *testing.T, p string) (string, *fuse.Server) {
	t.Helper()
	testenv.FUSE(t)
	a, err := archive.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var logs bytes.Buffer
	srv, err := fusefs.Mount(a, dir, fusefs.Options{Log: func(s string) { logs.WriteString(s + "\n") }})
	if err != nil {
		a.Close()
		t.Fatalf("mount: %v", err)
	}
	// This process reads its own mount: go-fuse's poll hack (in
	// WaitMount) must run first, or the runtime's netpoller can end up
	// waiting on a POLL request only this process could answer.
	if err := srv.WaitMount(); err != nil {
		t.Fatalf("wait mount: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			if srv.Unmount() == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if fusefs.IsMountpoint(dir) {
			fusefs.Unmount(dir)
		}
		a.Close()
	})
	return dir, srv
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	return string(out)
}

// TestWhiteoutsThroughMount reads the whiteout fixture through the kernel
// with find and cat: deletes, re-adds, opaque directories, file<->dir, and
// a hard link whose target was replaced.
func TestWhiteoutsThroughMount(t *testing.T) {
	p := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	dir, _ := mount(t, p)
	img := filepath.Join(dir, "images", "wh_1")
	listing := run(t, img, "find", "rootfs", "-printf", "%y %m %n %s %p\n")
	want := `d 755 1 0 rootfs
d 755 1 0 rootfs/d
f 644 1 2 rootfs/d/z
d 700 1 0 rootfs/etc
f 644 1 11 rootfs/etc/passwd
f 644 1 11 rootfs/etc/shadow
d 755 1 0 rootfs/f
f 644 1 6 rootfs/f/inner
f 644 1 12 rootfs/g
f 644 1 6 rootfs/t
f 644 2 6 rootfs/tl
`
	if got := sortLines(listing); got != sortLines(want) {
		t.Errorf("find rootfs:\n%s\nwant:\n%s", got, sortLines(want))
	}
	for p, want := range map[string]string{"rootfs/etc/shadow": "new-shadow\n", "rootfs/tl": "old-t\n", "rootfs/t": "new-t\n",
		"stages/0/f": "f-was-a-file\n", "stages/1/d/z": "z\n", "layers/1/d/.wh..wh..opq": ""} {
		b, err := os.ReadFile(filepath.Join(img, p))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", p, b, err, want)
		}
	}
	for _, gone := range []string{"rootfs/a", "rootfs/d/x", "stages/1/etc/shadow", "rootfs/.wh.a"} {
		if _, err := os.Lstat(filepath.Join(img, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want ENOENT", gone, err)
		}
	}
	// Stable inode numbers: hard links share one; a second lookup agrees.
	var a, b syscall.Stat_t
	syscall.Lstat(filepath.Join(img, "layers/0/t"), &a)
	syscall.Lstat(filepath.Join(img, "layers/0/tl"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: ino %d vs %d, nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	// The SHA-256 is an xattr.
	x := run(t, img, "getfattr", "--only-values", "-n", "user.amber.sha256", "rootfs/etc/passwd")
	s := sha256.Sum256([]byte("root:x:0:0\n"))
	if x != hex.EncodeToString(s[:]) {
		t.Errorf("xattr %q", x)
	}
	// du works (st_blocks) and diff -r sees the change between stages.
	if out := run(t, img, "du", "-sk", "rootfs"); !strings.HasSuffix(strings.TrimSpace(out), "rootfs") {
		t.Errorf("du: %q", out)
	}
	cmd := exec.Command("diff", "-r", "stages/0", "rootfs")
	cmd.Dir = img
	out, _ := cmd.CombinedOutput()
	for _, must := range []string{"Only in stages/0: a", "Only in stages/0/d: x", "Only in rootfs/d: z"} {
		if !strings.Contains(string(out), must) {
			t.Errorf("diff -r lacks %q:\n%s", must, out)
		}
	}
}

func sortLines(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(l)
	return strings.Join(l, "\n")
}

// TestInodesStableAcrossMounts: the same path has the same inode number in
// two mounts of the archive.
func TestInodesStableAcrossMounts(t *testing.T) {
	p := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	ino := func(dir string) []uint64 {
		var out []uint64
		for _, q := range []string{"", "images", "images/wh_1/rootfs/etc/passwd", "images/wh_1/layers/1/d", "images/wh_1/stages/0/a/b/c"} {
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(dir, q), &st); err != nil {
				t.Fatal(err)
			}
			out = append(out, st.Ino)
		}
		return out
	}
	d1, _ := mount(t, p)
	d2, _ := mount(t, p)
	if a, b := ino(d1), ino(d2); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("inodes differ: %v vs %v", a, b)
	}
}

// TestEveryWriteIsEROFS tries every mutating operation.
func TestEveryWriteIsEROFS(t *testing.T) {
	p := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	dir, _ := mount(t, p)
	root := filepath.Join(dir, "images/wh_1/rootfs")
	f := filepath.Join(root, "etc/passwd")
	d := filepath.Join(root, "etc")
	ops := map[string]func() error{
		"create":      func() error { _, err := os.Create(filepath.Join(d, "new")); return err },
		"write":       func() error { return os.WriteFile(f, []byte("x"), 0o644) },
		"open-append": func() error { _, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0); return err },
		"truncate":    func() error { return os.Truncate(f, 0) },
		"unlink":      func() error { return os.Remove(f) },
		"rename":      func() error { return os.Rename(f, filepath.Join(d, "moved")) },
		"mkdir":       func() error { return os.Mkdir(filepath.Join(d, "dir"), 0o755) },
		"rmdir":       func() error { return syscall.Rmdir(filepath.Join(root, "d")) },
		"chmod":       func() error { return os.Chmod(f, 0o777) },
		"chown":       func() error { return os.Chown(f, 1, 1) },
		"utimes":      func() error { return os.Chtimes(f, time.Now(), time.Now()) },
		"link":        func() error { return os.Link(f, filepath.Join(d, "hl")) },
		"symlink":     func() error { return os.Symlink("passwd", filepath.Join(d, "sl")) },
		"mknod":       func() error { return syscall.Mknod(filepath.Join(d, "fifo"), syscall.S_IFIFO|0o644, 0) },
		"setxattr":    func() error { return syscall.Setxattr(f, "user.x", []byte("1"), 0) },
		"removexattr": func() error { return syscall.Removexattr(f, "user.amber.sha256") },
		"create-top":  func() error { _, err := os.Create(filepath.Join(dir, "x")); return err },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
	if b, _ := os.ReadFile(f); string(b) != "root:x:0:0\n" {
		t.Errorf("content changed: %q", b)
	}
	if out := run(t, "/", "sh", "-c", "grep ' "+dir+" ' /proc/self/mounts"); !strings.Contains(out, "ro,nosuid,nodev") {
		t.Errorf("mount options: %s", out)
	}
}

// TestParallelReaders: 8 sha256sum processes at once agree with the index,
// and unmounting under that load is clean.
func TestParallelReaders(t *testing.T) {
	testenv.Tool(t, "xargs")
	p := fixture.Capture(t, t.TempDir(), "big", fixture.BigImage())
	dir, srv := mount(t, p)
	a := fixture.Open(t, p)
	v := &view.View{A: a}
	root, err := v.Stat("images/big_1/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	v.Walk(root, func(e *view.Entry) error {
		if e.Type == fileindex.TypeReg {
			want["./"+strings.TrimPrefix(e.Path, "images/big_1/rootfs/")] = e.SHA256().Hex()
		}
		return nil
	})
	out := run(t, filepath.Join(dir, "images/big_1/rootfs"), "sh", "-c", "find . -type f -print0 | xargs -0 -P8 -n4 sha256sum")
	got := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		if want[name] != sum {
			t.Errorf("%s: sha256sum %s, index %s", name, sum, want[name])
		}
		got++
	}
	if got != len(want) {
		t.Errorf("read %d files, the index has %d", got, len(want))
	}
	// Unmount while 8 readers are busy: the server stops, nothing hangs.
	load := exec.Command("sh", "-c", "while true; do find . -type f -print0 | xargs -0 -P8 -n4 cat >/dev/null 2>&1; done")
	load.Dir = filepath.Join(dir, "images/big_1/rootfs")
	load.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	// Busy: the mount is detached at once, and the server stops as soon as
	// the last reader lets go.
	if err := fusefs.Unmount(dir); err != nil {
		t.Errorf("unmount under load: %v", err)
	}
	if fusefs.IsMountpoint(dir) {
		t.Error("still mounted after the unmount")
	}
	syscall.Kill(-load.Process.Pid, syscall.SIGKILL)
	load.Wait()
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("server did not stop within 10s of the readers' end")
	}
}

// reframeOne forges an archive as a careful attacker would: the tar bytes
// edited, only the frame holding the edit compressed again, every other
// frame byte for byte as it was, and a seek table that matches (sizes,
// checksums). Only amber's sealed digests can then tell.
func reframeOne(t *testing.T, src, dst string, at int64, edit func(tarBytes []byte)) {
	t.Helper()
	a, err := archive.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tb := make([]byte, a.TarSize)
	if _, err := a.ReadAt(tb, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	edit(tb)
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	var out, table bytes.Buffer
	le := binary.LittleEndian
	put := func(v uint32) { var b [4]byte; le.PutUint32(b[:], v); table.Write(b[:]) }
	n := a.Table.NumFrames()
	for i := int64(0); i < n; i++ {
		fr, _ := a.Table.EntryByID(i)
		content := tb[fr.DecompressedOffset : fr.DecompressedOffset+uint64(fr.DecompressedSize)]
		comp := raw[fr.CompressedOffset : fr.CompressedOffset+uint64(fr.CompressedSize)]
		if at >= int64(fr.DecompressedOffset) && at < int64(fr.DecompressedOffset)+int64(fr.DecompressedSize) {
			comp = enc.EncodeAll(content, nil)
		}
		out.Write(comp)
		put(uint32(len(comp)))
		put(uint32(len(content)))
		put(uint32(xxhash.Sum64(content)))
	}
	put(uint32(n))
	table.WriteByte(0x80)
	put(0x8F92EAB1)
	var hdr [8]byte
	le.PutUint32(hdr[0:], 0x184D2A5E)
	le.PutUint32(hdr[4:], uint32(table.Len()))
	out.Write(hdr[:])
	out.Write(table.Bytes())
	if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTamperedContentIsEIO: a file whose bytes were changed (its frame
// compressed again, the seek table made consistent) fails with EIO and is
// named in the log; files in other frames still read correctly.
func TestTamperedContentIsEIO(t *testing.T) {
	dir := t.TempDir()
	p := fixture.Capture(t, dir, "big", fixture.BigImage())
	a := fixture.Open(t, p)
	v := &view.View{A: a}
	e, err := v.Stat("images/big_1/rootfs/data/d05/f005")
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := a.Blob(manifest.BlobName(e.LayerDigest()))
	off := blob.Offset + e.Node.Rec.DataOffset
	bad := filepath.Join(dir, "bad.tar.zst")
	reframeOne(t, p, bad, off, func(tb []byte) { tb[off] ^= 0x20 })
	if r, err := archive.Verify(bad, archive.VerifyOptions{}); err != nil || r.OK() {
		t.Fatalf("verify of the forged archive: %v", err)
	}
	// The same forgery of a file's own bytes without changing anything
	// else is caught by the whole-file hash too (archives without sealed
	// frames); here the frame digest catches it first.
	mdir, srv := mount(t, bad)
	_ = srv
	img := filepath.Join(mdir, "images/big_1/rootfs")
	if _, err := os.ReadFile(filepath.Join(img, "data/d05/f005")); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the altered file: %v, want EIO", err)
	}
	fr, _ := a.Table.EntryByDecompressedOffset(uint64(off))
	time.Sleep(100 * time.Millisecond) // the pusher's turn, had it pushed f005's neighbours
	read, forged := 0, 0
	var walkErr error
	filepath.Walk(img, func(path string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(img, path)
		ent, err := v.Stat("images/big_1/rootfs/" + rel)
		if err != nil {
			return nil
		}
		fb, _ := a.Blob(manifest.BlobName(ent.LayerDigest()))
		start := fb.Offset + ent.Node.Rec.DataOffset
		if ent.Size > 0 && start+ent.Size > int64(fr.DecompressedOffset) && start < int64(fr.DecompressedOffset)+int64(fr.DecompressedSize) {
			// Shares the forged frame: refused too, also when reading
			// its neighbour had it pushed into the kernel's cache.
			if _, err := os.ReadFile(path); !errors.Is(err, syscall.EIO) {
				walkErr = fmt.Errorf("%s shares the forged frame: %v, want EIO", rel, err)
			}
			forged++
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			walkErr = fmt.Errorf("%s: %w", rel, err)
			return nil
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != ent.SHA256().Hex() {
			walkErr = fmt.Errorf("%s: wrong content", rel)
		}
		read++
		return nil
	})
	if walkErr != nil || read < 100 || forged < 2 {
		t.Errorf("files in other frames: %d read; in the forged frame: %d refused; %v", read, forged, walkErr)
	}
}

func TestBusyAndStaleMountpoints(t *testing.T) {
	testenv.FUSE(t)
	p := fixture.Capture(t, t.TempDir(), "wh", fixture.WhiteoutImage())
	dir, _ := mount(t, p)
	a := fixture.Open(t, p)
	if _, err := fusefs.Mount(a, dir, fusefs.Options{}); !errors.Is(err, fusefs.ErrBusy) {
		t.Errorf("mounting on a mount point: %v", err)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	if _, err := fusefs.Mount(a, full, fusefs.Options{}); !errors.Is(err, fusefs.ErrBusy) {
		t.Errorf("mounting on a non-empty directory: %v", err)
	}
}

// capNetRaw is a vfs_cap_data v2 value (the kernel checks the format):
// cap_net_raw permitted.
const capNetRaw = "\x00\x00\x00\x02" + "\x00\x20\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00"

// TestXattrs: captured xattrs (capabilities included) and the SHA-256 are
// readable; a missing security.* attribute answers ENOTSUP, so that ls -l
// stops asking for SELinux labels file by file.
func TestXattrs(t *testing.T) {
	img := fixture.Image{Tags: []string{"x:1"}, Layers: [][]byte{fixture.Layer(
		fixture.Entry{Name: "bin/ping", Body: "ping", Mode: 0o755, Xattrs: map[string]string{"security.capability": capNetRaw, "user.origin": "pkg"}},
		fixture.File("etc/plain", "plain"),
	)}}
	p := fixture.Capture(t, t.TempDir(), "x", img)
	dir, _ := mount(t, p)
	ping := filepath.Join(dir, "images/x_1/rootfs/bin/ping")
	plain := filepath.Join(dir, "images/x_1/rootfs/etc/plain")
	buf := make([]byte, 128)
	get := func(p, name string) (string, error) {
		n, err := syscall.Getxattr(p, name, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	if v, err := get(ping, "security.capability"); err != nil || v != capNetRaw {
		t.Errorf("security.capability: %q %v", v, err)
	}
	if v, err := get(ping, "user.origin"); err != nil || v != "pkg" {
		t.Errorf("user.origin: %q %v", v, err)
	}
	if _, err := syscall.Getxattr(plain, "security.selinux", buf); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("missing security.selinux: %v, want ENOTSUP", err)
	}
	if _, err := syscall.Getxattr(plain, "system.posix_acl_access", buf); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("missing ACL: %v, want ENOTSUP", err)
	}
	if _, err := syscall.Getxattr(plain, "user.nothing", buf); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("missing user.nothing: %v, want ENODATA", err)
	}
	n, err := syscall.Listxattr(ping, buf)
	if err != nil {
		t.Fatalf("listxattr: %v", err)
	}
	if !strings.Contains(string(buf[:n]), "user.amber.sha256") || !strings.Contains(string(buf[:n]), "security.capability") {
		t.Errorf("listxattr: %q %v", buf[:n], err)
	}
}
