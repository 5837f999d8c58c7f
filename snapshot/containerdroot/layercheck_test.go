//go:build linux

package containerdroot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/containerd"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// save reads SaveImage's stream whole: its members, and manifest.json's
// layer names in order.
func save(t *testing.T, s *Store, ref string) (map[string][]byte, []string) {
	t.Helper()
	rc, err := s.SaveImage(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	members := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := members[h.Name]; dup {
			t.Errorf("the stream holds %s twice", h.Name)
		}
		if members[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	var mj []struct{ Layers []string }
	if err := json.Unmarshal(members["manifest.json"], &mj); err != nil || len(mj) != 1 {
		t.Fatalf("manifest.json: %s, %v", members["manifest.json"], err)
	}
	return members, mj[0].Layers
}

// layerFindings asks the store as the capture does: as an
// engine.LayerChecker.
func layerFindings(t *testing.T, s *Store, ref string) []engine.LayerFinding {
	t.Helper()
	lc, ok := engine.Runtime(s).(engine.LayerChecker)
	if !ok {
		t.Fatal("the offline containerd root is no engine.LayerChecker")
	}
	return lc.LayerFindings(ref)
}

// layerFiles lists a layer tar's entries: name, type, mode, content.
func layerFiles(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = strconv.QuoteRune(rune(h.Typeflag)) + " " + strconv.FormatInt(h.Mode, 8) + " " + string(body)
	}
}

// snapshotFS finds, in the test's own containerd root, the fs directory
// of the committed snapshot of chain in namespace ns: read with bbolt
// directly, not through the code under test.
func snapshotFS(t *testing.T, root, ns, chain string) string {
	t.Helper()
	var name string
	db, err := bolt.Open(filepath.Join(root, metaDB), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("v1")).Bucket([]byte(ns)).Bucket([]byte("snapshots")).Bucket([]byte("overlayfs")).Bucket([]byte(chain)); b != nil {
			name = string(b.Get([]byte("name")))
		}
		return nil
	})
	db.Close()
	if name == "" {
		t.Fatalf("no snapshot %s in namespace %s", chain, ns)
	}
	var id uint64
	odb, err := bolt.Open(filepath.Join(root, overlayDB), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	odb.View(func(tx *bolt.Tx) error {
		id, _ = binary.Uvarint(tx.Bucket([]byte("v1")).Bucket([]byte("snapshots")).Bucket([]byte(name)).Get([]byte("id")))
		return nil
	})
	odb.Close()
	return filepath.Join(root, overlayRoot, "snapshots", strconv.FormatUint(id, 10), "fs")
}

// TestLowerSnapshotEdited: a test's own containerd imports a two-layer
// image and runs a container on it, and stops. Read offline, the image's
// layers match their snapshots: no finding, each layer streamed as its
// diff_id. Then an attacker with root edits the second layer's committed
// snapshot under the container (a file's content, a file added, a mode
// changed): LayerFindings names that layer and exactly those paths; the
// stream holds that layer as found (its digest the finding's, its files
// the edited ones), the first still as its diff_id; nothing of the root
// changes.
func TestLowerSnapshotEdited(t *testing.T) {
	img := testImage(t)
	d := testenv.Containerd(t)
	ctx := context.Background()
	d.Ctr(t, liveNS, "images", "import", img)
	d.Ctr(t, liveNS, "run", "-d", imageName, "web", "sh", "-c", "while :; do sleep 3600; done")
	live, err := containerd.Dial(ctx, d.Address, liveNS)
	if err != nil {
		t.Fatal(err)
	}
	li, err := live.Image(ctx, imageName)
	live.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(li.DiffIDs) != 2 {
		t.Fatalf("the test image has %d layers, want 2", len(li.DiffIDs))
	}
	d.Ctr(t, liveNS, "tasks", "kill", "-s", "SIGKILL", "web")
	testenv.Shell(t, "for i in $(seq 50); do ctr -a "+d.Address+" -n "+liveNS+" tasks ls | grep -q RUNNING || exit 0; sleep 0.1; done")
	d.Ctr(t, liveNS, "tasks", "delete", "web")
	d.Kill(t, syscall.SIGTERM)
	host, data := filepath.Dir(d.Root), "/"+filepath.Base(d.Root)

	// Untouched: no finding, no false alarm on a real unpacked image.
	s, err := Open(host, data)
	if err != nil {
		t.Fatal(err)
	}
	_, names := save(t, s, imageName)
	if f := layerFindings(t, s, imageName); len(f) != 0 {
		t.Errorf("LayerFindings of an untouched image: %+v", f)
	}
	want := []string{"blobs/sha256/" + strings.TrimPrefix(li.DiffIDs[0], "sha256:"), "blobs/sha256/" + strings.TrimPrefix(li.DiffIDs[1], "sha256:")}
	if !slices.Equal(names, want) {
		t.Errorf("untouched, the stream's layers are %v, want %v", names, want)
	}
	s.Close()

	// The attacker edits the second layer's snapshot.
	chain2 := sha256.Sum256([]byte(li.DiffIDs[0] + " " + li.DiffIDs[1]))
	lower := snapshotFS(t, d.Root, liveNS, "sha256:"+hex.EncodeToString(chain2[:]))
	if b, err := os.ReadFile(filepath.Join(lower, "srv/app")); err != nil || string(b) != "hello\n" {
		t.Fatalf("the second layer's snapshot %s: srv/app %q, %v", lower, b, err)
	}
	if err := os.WriteFile(filepath.Join(lower, "srv/app"), []byte("HELLO\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "srv/evil"), []byte("implant\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(lower, "srv/old"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	before := fileState(t, d.Root)

	s, err = Open(host, data)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	members, names := save(t, s, imageName)
	findings := layerFindings(t, s, imageName)
	if len(findings) != 1 {
		t.Fatalf("LayerFindings: %+v, want the second layer's", findings)
	}
	f := findings[0]
	var paths []string
	for _, p := range f.Paths {
		paths = append(paths, p.Path+" "+p.What)
	}
	if wantPaths := []string{"/srv/app content", "/srv/evil added", "/srv/old mode"}; f.DiffID != li.DiffIDs[1] || !slices.Equal(paths, wantPaths) {
		t.Errorf("LayerFindings: %s %v, want %s %v", f.DiffID, paths, li.DiffIDs[1], wantPaths)
	}
	if len(names) != 2 || names[0] != want[0] || names[1] != "blobs/sha256/"+strings.TrimPrefix(f.Found, "sha256:") {
		t.Fatalf("the stream's layers are %v; want %s and the layer as found, %s", names, want[0], f.Found)
	}
	for _, n := range names {
		if sum := sha256.Sum256(members[n]); "blobs/sha256/"+hex.EncodeToString(sum[:]) != n {
			t.Errorf("the stream's %s hashes to %x", n, sum)
		}
	}
	files := layerFiles(t, members[names[1]])
	for p, w := range map[string]string{"srv/app": "'0' 644 HELLO\n", "srv/evil": "'0' 755 implant\n", "srv/old": "'0' 4755 gone\n"} {
		if files[p] != w {
			t.Errorf("the layer as found: %s is %q, want %q", p, files[p], w)
		}
	}
	s.Close()
	if after := fileState(t, d.Root); after != before {
		t.Errorf("the root changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// commit records, in the crafted root, a committed overlayfs snapshot of
// its one layer (whose chain ID is its diff_id), number 2, and returns
// its fs directory, made empty.
func commit(t *testing.T, c *crafted, diffID string) string {
	t.Helper()
	return commitChain(t, c, diffID, 2)
}

// commitChain records a committed snapshot of the layer chain (hex)
// numbered id.
func commitChain(t *testing.T, c *crafted, chain string, id uint64) string {
	t.Helper()
	name := "default/" + strconv.FormatUint(id+7, 10) + "/sha256:" + chain
	db, err := bolt.Open(filepath.Join(c.data, metaDB), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		put(t, bucket(t, tx, "v1", "default", "snapshots", "overlayfs", "sha256:"+chain), "name", []byte(name))
		return nil
	})
	db.Close()
	odb, err := bolt.Open(filepath.Join(c.data, overlayDB), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	odb.Update(func(tx *bolt.Tx) error {
		sb := bucket(t, tx, "v1", "snapshots", name)
		put(t, sb, "id", binary.AppendUvarint(nil, id))
		put(t, sb, "kind", []byte{kindCommitted})
		return nil
	})
	odb.Close()
	fs := filepath.Join(c.data, overlayRoot, "snapshots", strconv.FormatUint(id, 10), "fs")
	if err := os.MkdirAll(fs, 0o755); err != nil {
		t.Fatal(err)
	}
	return fs
}

// tarOf makes a layer tar of the headers (a regular file's body is its
// Linkname when Size > 0, for brevity).
func tarOf(t *testing.T, hs ...tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hs {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body, h.Linkname = h.Linkname, ""
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	tw.Close()
	return b.Bytes()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// findingPaths is "path what" of each path of the image's findings.
func findingPaths(t *testing.T, s *Store, ref string) []string {
	t.Helper()
	var out []string
	for _, f := range layerFindings(t, s, ref) {
		for _, p := range f.Paths {
			out = append(out, p.Path+" "+p.What)
		}
	}
	return out
}

// TestCraftedSnapshotCheck: a crafted layer with a directory, files, a
// hard link, a symbolic link, a whiteout and an opaque directory, and its
// snapshot as containerd's overlay unpacker writes it (whiteout a 0/0
// device, opaque an xattr, parents made): no finding. Then the snapshot
// is edited every way: each path named with what differs, exactly; the
// layer streamed as found, the edits in it, a symbolic link to the
// canary outside the root recorded and never followed.
func TestCraftedSnapshotCheck(t *testing.T) {
	testenv.Root(t)
	can := newCanary(t)
	layer := tarOf(t,
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "root\n"},
		tar.Header{Name: "etc/.wh.shadow", Typeflag: tar.TypeReg, Mode: 0o600},
		tar.Header{Name: "opt/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o600},
		tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Linkname: "ELF\n"},
		tar.Header{Name: "bin/ln", Typeflag: tar.TypeLink, Mode: 0o755, Linkname: "bin/busybox"},
		tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: "busybox"},
		tar.Header{Name: "srv/data/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000},
	)
	c := craft(t, craftOpts{layerTar: layer})
	fs := commit(t, c, sha(layer))
	j := func(p string) string { return filepath.Join(fs, p) }
	for _, d := range []string{"etc", "opt", "bin", "srv/data"} {
		must(t, os.MkdirAll(j(d), 0o755))
	}
	must(t, os.Chmod(j("srv/data"), 0o700))
	must(t, os.Chown(j("srv/data"), 1000, 1000))
	must(t, os.WriteFile(j("etc/passwd"), []byte("root\n"), 0o644))
	must(t, unix.Mknod(j("etc/shadow"), unix.S_IFCHR, 0))
	must(t, unix.Setxattr(j("opt"), "trusted.overlay.opaque", []byte("y"), 0))
	must(t, os.WriteFile(j("bin/busybox"), []byte("ELF\n"), 0o755))
	must(t, os.Link(j("bin/busybox"), j("bin/ln")))
	must(t, os.Symlink("busybox", j("bin/sh")))

	s, err := Open(c.host, "")
	must(t, err)
	_, names := save(t, s, "docker.io/library/x:1")
	if f := findingPaths(t, s, "docker.io/library/x:1"); len(f) != 0 || !slices.Equal(names, []string{"blobs/sha256/" + sha(layer)}) {
		t.Errorf("a snapshot as the unpacker writes it: findings %v, layers %v", f, names)
	}
	s.Close()

	// Every kind of edit.
	must(t, os.Remove(j("etc/shadow")))                                        // the whiteout gone
	must(t, unix.Removexattr(j("opt"), "trusted.overlay.opaque"))              // no longer opaque
	must(t, os.Remove(j("bin/ln")))                                            // a copy, no longer the link
	must(t, os.WriteFile(j("bin/ln"), []byte("ELF\n"), 0o755))                 //
	must(t, os.Chown(j("bin/busybox"), 1, 1))                                  // owner
	must(t, os.Remove(j("bin/sh")))                                            // a link out of the root
	must(t, os.Symlink(can.file, j("bin/sh")))                                 //
	must(t, os.Remove(j("etc/passwd")))                                        // a FIFO for a file
	must(t, unix.Mkfifo(j("etc/passwd"), 0o644))                               //
	must(t, os.MkdirAll(j("usr/lib"), 0o755))                                  // added, and opaque
	must(t, unix.Setxattr(j("usr"), "trusted.overlay.opaque", []byte("y"), 0)) //
	must(t, unix.Setxattr(j("srv/data"), "user.evil", []byte("1"), 0))         // an xattr

	s, err = Open(c.host, "")
	must(t, err)
	defer s.Close()
	members, names := save(t, s, "docker.io/library/x:1")
	got := findingPaths(t, s, "docker.io/library/x:1")
	want := []string{"/bin/busybox owner", "/bin/ln link", "/bin/sh link", "/etc/passwd type", "/etc/shadow removed",
		"/opt/.wh..wh..opq removed", "/srv/data xattr", "/usr added", "/usr/.wh..wh..opq added", "/usr/lib added"}
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n%v\nwant\n%v", got, want)
	}
	if len(names) != 1 || names[0] == "blobs/sha256/"+sha(layer) {
		t.Fatalf("the stream's layers: %v", names)
	}
	found := layerFiles(t, members[names[0]])
	for p, w := range map[string]string{"bin/sh": "'2' 777 ", "etc/passwd": "'6' 644 ", "usr/.wh..wh..opq": "'0' 0 ", "bin/ln": "'0' 755 ELF\n"} {
		if found[p] != w {
			t.Errorf("the layer as found: %s is %q, want %q", p, found[p], w)
		}
	}
	if _, ok := found["etc/.wh.shadow"]; ok {
		t.Error("the layer as found holds the removed whiteout")
	}
	can.noTouch(t)
}

// TestHostileSnapshots: a committed snapshot whose fs is a link out of
// the root, or a directory deeper than the bound: SaveImage refuses,
// naming it, before anything is streamed; the canary is never opened.
func TestHostileSnapshots(t *testing.T) {
	can := newCanary(t)
	ctx := context.Background()

	c := craft(t, craftOpts{})
	fs := commit(t, c, c.layerHex)
	must(t, os.Remove(fs))
	must(t, os.Symlink(can.dir, fs))
	s, err := Open(c.host, "")
	must(t, err)
	_, err = s.SaveImage(ctx, "docker.io/library/x:1")
	mustFail(t, "a snapshot's fs a link out", err, "snapshots/2/fs", "refused")
	s.Close()

	c = craft(t, craftOpts{})
	fs = commit(t, c, c.layerHex)
	must(t, os.WriteFile(filepath.Join(fs, "etc"), nil, 0o644))
	deep := filepath.Join(fs, strings.Repeat("d/", 1001))
	must(t, os.MkdirAll(deep, 0o755))
	s, err = Open(c.host, "")
	must(t, err)
	_, err = s.SaveImage(ctx, "docker.io/library/x:1")
	mustFail(t, "a snapshot too deep", err, "directories deep")
	s.Close()
	can.noTouch(t)
}

// TestSameLayerTwice: an image with one diff_id at two positions has two
// snapshots (two chain IDs). Edited at the second, the finding names the
// diff_id with the second's digest as found and manifest.json names, per
// position, the blob of that position; edited differently at both, the
// diff_id is listed twice with two digests; each blob is streamed once.
func TestSameLayerTwice(t *testing.T) {
	testenv.Root(t)
	c := craft(t, craftOpts{twice: true})
	chain2 := sha([]byte("sha256:" + c.layerHex + " sha256:" + c.layerHex))
	fs1, fs2 := commitChain(t, c, c.layerHex, 2), commitChain(t, c, chain2, 3)
	for _, fs := range []string{fs1, fs2} {
		writeFile(t, filepath.Join(fs, "etc/passwd"), []byte("root\n"))
	}
	ref := "docker.io/library/x:1"
	s, err := Open(c.host, "")
	must(t, err)
	members, names := save(t, s, ref)
	orig := "blobs/sha256/" + c.layerHex
	if f := layerFindings(t, s, ref); len(f) != 0 || !slices.Equal(names, []string{orig, orig}) || len(members) != 3 {
		t.Errorf("untouched: findings %v, layers %v, %d members", f, names, len(members))
	}
	s.Close()

	writeFile(t, filepath.Join(fs2, "etc/second"), []byte("2\n"))
	s, err = Open(c.host, "")
	must(t, err)
	members, names = save(t, s, ref)
	f := layerFindings(t, s, ref)
	if len(f) != 1 || f[0].DiffID != "sha256:"+c.layerHex || len(f[0].Paths) != 1 || f[0].Paths[0].Path != "/etc/second" {
		t.Fatalf("the second position edited: findings %+v", f)
	}
	if !slices.Equal(names, []string{orig, "blobs/sha256/" + strings.TrimPrefix(f[0].Found, "sha256:")}) || len(members) != 4 {
		t.Errorf("the second position edited: layers %v, %d members", names, len(members))
	}
	s.Close()

	writeFile(t, filepath.Join(fs1, "etc/first"), []byte("1\n"))
	s, err = Open(c.host, "")
	must(t, err)
	defer s.Close()
	members, names = save(t, s, ref)
	f = layerFindings(t, s, ref)
	if len(f) != 2 || f[0].DiffID != f[1].DiffID || f[0].Found == f[1].Found || f[0].Paths[0].Path != "/etc/first" {
		t.Fatalf("both edited: findings %+v", f)
	}
	want := []string{"blobs/sha256/" + strings.TrimPrefix(f[0].Found, "sha256:"), "blobs/sha256/" + strings.TrimPrefix(f[1].Found, "sha256:")}
	if !slices.Equal(names, want) || len(members) != 4 {
		t.Errorf("both edited: layers %v, want %v; %d members", names, want, len(members))
	}
	for _, n := range names {
		if sum := sha256.Sum256(members[n]); "blobs/sha256/"+hex.EncodeToString(sum[:]) != n {
			t.Errorf("%s hashes to %x", n, sum)
		}
	}
}

// TestImageInTwoNamespaces: one image in namespaces a and default, its
// layer unpacked (and edited) in default only, where the container runs.
// After the container is inspected, the save of its image (by the config
// digest, as the capture asks) checks default's snapshots, not a's.
func TestImageInTwoNamespaces(t *testing.T) {
	c := craft(t, craftOpts{})
	fs := commit(t, c, c.layerHex)
	writeFile(t, filepath.Join(fs, "etc/passwd"), []byte("root\n"))
	writeFile(t, filepath.Join(fs, "etc/implant"), []byte("x\n"))
	db, err := bolt.Open(filepath.Join(c.data, metaDB), 0o644, nil)
	must(t, err)
	err = db.Update(func(tx *bolt.Tx) error {
		src := tx.Bucket([]byte("v1")).Bucket([]byte("default")).Bucket([]byte("images")).Bucket([]byte("docker.io/library/x:1")).Bucket([]byte("target"))
		tb := bucket(t, tx, "v1", "a", "images", "docker.io/library/x:1", "target")
		for _, k := range []string{"digest", "mediatype", "size"} {
			put(t, tb, k, append([]byte(nil), src.Get([]byte(k))...))
		}
		return nil
	})
	db.Close()
	must(t, err)
	s, err := Open(c.host, "")
	must(t, err)
	defer s.Close()
	ct, err := s.Container(context.Background(), "c1")
	must(t, err)
	save(t, s, ct.Image)
	if got := findingPaths(t, s, ct.Image); !slices.Equal(got, []string{"/etc/implant added"}) {
		t.Errorf("findings of c1's image: %v, want default's snapshot's /etc/implant", got)
	}
}

// TestCompressedLayerChecked: a gzip layer whose snapshot matches is
// counted by the check and streamed once, decompressed, hashing to its
// diff_id; its blob changed on disk is still refused.
func TestCompressedLayerChecked(t *testing.T) {
	c := craft(t, craftOpts{gzipLayer: true})
	writeFile(t, filepath.Join(commit(t, c, sha(layerOfCraft(t))), "etc/passwd"), []byte("root\n"))
	s, err := Open(c.host, "")
	must(t, err)
	defer s.Close()
	members, names := save(t, s, "docker.io/library/x:1")
	if len(names) != 1 || len(layerFindings(t, s, "docker.io/library/x:1")) != 0 {
		t.Fatalf("layers %v, findings %v", names, layerFindings(t, s, "docker.io/library/x:1"))
	}
	if sum := sha256.Sum256(members[names[0]]); names[0] != "blobs/sha256/"+hex.EncodeToString(sum[:]) || names[0] != "blobs/sha256/"+sha(layerOfCraft(t)) {
		t.Errorf("the layer streamed hashes to %x, named %s", sum, names[0])
	}
	blob := filepath.Join(c.data, blobDir, c.layerHex)
	b, _ := os.ReadFile(blob)
	b[len(b)-1] ^= 1
	must(t, os.WriteFile(blob, b, 0o644))
	_, err = s.SaveImage(context.Background(), "docker.io/library/x:1")
	mustFail(t, "a changed gzip blob", err, c.layerHex)
}

// layerOfCraft is craft's default layer, uncompressed.
func layerOfCraft(t *testing.T) []byte {
	return tarOf(t, tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "root\n"})
}
