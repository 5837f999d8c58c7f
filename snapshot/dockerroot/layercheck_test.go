//go:build linux

package dockerroot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// unpack writes a layer tar into dir as Docker's unpacker does: modes,
// owners, extended attributes and mtimes from the headers; the layer's
// own "./", PAX global headers and AUFS metadata skipped.
func unpack(t *testing.T, dir string, layer []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var times []*tar.Header
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := tarName(h.Name)
		if h.Typeflag == tar.TypeXGlobalHeader || name == "" || strings.HasPrefix(name, ".wh..wh.") {
			continue
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			err = os.WriteFile(p, b, 0o644)
		default:
			t.Fatalf("unpack: type %c", h.Typeflag)
		}
		if err == nil {
			err = os.Chmod(p, os.FileMode(h.Mode&0o777)|map[bool]os.FileMode{true: os.ModeSetuid}[h.Mode&0o4000 != 0])
		}
		if err == nil {
			err = os.Lchown(p, h.Uid, h.Gid)
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && err == nil {
				err = unix.Lsetxattr(p, x, []byte(v), 0)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, h)
	}
	for i := len(times) - 1; i >= 0; i-- {
		h := times[i]
		if err := os.Chtimes(filepath.Join(dir, tarName(h.Name)), h.ModTime, h.ModTime); err != nil {
			t.Fatal(err)
		}
	}
}

// tarName is a tar name as a path of the layer ("" for its top).
func tarName(n string) string { return strings.TrimPrefix(path.Clean("/"+n), "/") }

// fileBytes is what Docker records as a layer's size: its files' bytes.
func fileBytes(layer []byte) int64 {
	var n int64
	tr := tar.NewReader(bytes.NewReader(layer))
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		if h.Typeflag == tar.TypeReg {
			n += h.Size
		}
	}
	return n
}

// layers writes an image of the given layer tars, each position with a
// directory of its own (cache ID 1000+position+base) unpacked from its
// tar, and returns the diff IDs (hex).
func (c *crafted) layers(ref string, base int, tars ...[]byte) []string {
	var diffs []string
	for _, l := range tars {
		diffs = append(diffs, sum(l))
	}
	c.image(ref, diffs, func(i int, ch string) {
		cache := hexID(1000 + base + i)
		unpack(c.t, filepath.Join(c.dr, "overlay2", cache, "diff"), tars[i])
		b := "image/overlay2/layerdb/sha256/" + ch + "/"
		c.write(b+"cache-id", cache)
		c.write(b+"tar-split.json.gz", string(tarSplit(c.t, tars[i])))
		c.write(b+"size", fmt.Sprint(fileBytes(tars[i])))
	})
	return diffs
}

// emptyLayer is the empty tar (two zero blocks): sha256:5f70bf18..., the
// layer of every metadata-only Dockerfile step.
func emptyLayer() []byte {
	var b bytes.Buffer
	tar.NewWriter(&b).Close()
	return b.Bytes()
}

// save reads SaveImage's stream of ref with its findings, each as
// "diffID path what" lines.
func save(t *testing.T, s *Store, ref string) (layers []string, members map[string]string, bodies map[string][]byte, findings []string) {
	t.Helper()
	rc, err := s.SaveImage(context.Background(), ref)
	if err != nil {
		t.Fatalf("SaveImage %s: %v", ref, err)
	}
	for _, f := range s.LayerFindings(ref) {
		for _, p := range f.Paths {
			findings = append(findings, fmt.Sprintf("%s %s %s %s", f.DiffID[7:19], f.Found[7:19], p.Path, p.What))
		}
	}
	sort.Strings(findings)
	man, members, bodies := readSave(t, rc)
	return man[0].Layers, members, bodies, findings
}

// TestLayerRepeatedDiffID: an image holding one diff_id twice (the empty
// layer, at two positions: two chain IDs, two directories) is checked
// at each position. A file planted in the second copy's directory is
// found and streamed for that position only; one planted in the first
// copy is streamed for the first position only; every blob is in the
// stream once.
func TestLayerRepeatedDiffID(t *testing.T) {
	testenv.Root(t)
	c := newCrafted(t, "overlay2")
	empty := emptyLayer()
	e := sum(empty)
	base := fixture.Layer(fixture.Dir("etc/"), fixture.File("etc/motd", "hi\n"))
	other := fixture.Layer(fixture.Dir("usr/"), fixture.File("usr/x", "x\n"))
	d1 := c.layers("second:1", 0, base, empty, empty)
	d2 := c.layers("first:1", 10, other, empty, empty)
	if d1[1] != e || d2[2] != e {
		t.Fatalf("the empty layer is %s", e)
	}
	// second:1's third layer (the second empty one) and first:1's second
	// (the first empty one) each get a planted file.
	os.WriteFile(filepath.Join(c.dr, "overlay2", hexID(1002), "diff", "planted"), []byte("evil\n"), 0o755)
	os.WriteFile(filepath.Join(c.dr, "overlay2", hexID(1011), "diff", "planted"), []byte("evil\n"), 0o755)
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		ref     string
		diffs   []string
		changed int
	}{{"second:1", d1, 2}, {"first:1", d2, 1}} {
		layers, members, _, findings := save(t, s, tc.ref)
		if len(findings) != 1 || !strings.HasPrefix(findings[0], e[:12]+" ") || !strings.HasSuffix(findings[0], " /planted added") {
			t.Errorf("%s: findings %q, want /planted added in the empty layer", tc.ref, findings)
		}
		found := ""
		for _, f := range s.LayerFindings(tc.ref) {
			found = strings.TrimPrefix(f.Found, "sha256:")
		}
		for i, l := range layers {
			want := "blobs/sha256/" + tc.diffs[i]
			if i == tc.changed {
				want = "blobs/sha256/" + found
			}
			if l != want || members[l] == "" {
				t.Errorf("%s: manifest.json names %s for layer %d, want %s (stream holds %v)", tc.ref, l, i, want, members)
			}
		}
		// config, manifest.json, and three distinct blobs.
		if len(members) != 5 {
			t.Errorf("%s: the stream holds %d members: %v", tc.ref, len(members), members)
		}
	}
}

// TestLayerNoInventedFindings: what Docker never extracts is not reported
// missing from the directory: the layer's own "./" (mode 0700 in the tar,
// the driver's 0755 on disk), a PAX global header, AUFS's .wh..wh.plnk
// and .wh..wh.aufs. The layer is rebuilt to its diff_id, unflagged.
func TestLayerNoInventedFindings(t *testing.T) {
	testenv.Root(t)
	c := newCrafted(t, "overlay2")
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "made by a builder"}, Format: tar.FormatPAX},
		{Typeflag: tar.TypeDir, Name: "./", Mode: 0o700, ModTime: fixture.Epoch},
		{Typeflag: tar.TypeDir, Name: ".wh..wh.plnk/", Mode: 0o700, ModTime: fixture.Epoch},
		{Typeflag: tar.TypeReg, Name: ".wh..wh.aufs", Mode: 0o600, ModTime: fixture.Epoch},
		{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: fixture.Epoch},
		{Typeflag: tar.TypeReg, Name: "etc/motd", Mode: 0o644, Size: 3, ModTime: fixture.Epoch},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("hi\n"))
		}
	}
	tw.Close()
	diffs := c.layers("odd:1", 0, b.Bytes())
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	layers, members, _, findings := save(t, s, "odd:1")
	if len(findings) != 0 || layers[0] != "blobs/sha256/"+diffs[0] || members[layers[0]] != diffs[0] {
		t.Errorf("findings %q; layer %s of sha256 %s, want %s", findings, layers[0], members[layers[0]], diffs[0])
	}
}

// hugeSplit is a tar-split of one header block and one file entry
// claiming size bytes.
func hugeSplit(t *testing.T, size int64) []byte {
	var js bytes.Buffer
	p := storage.NewJSONPacker(&js)
	p.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: make([]byte, 512)})
	p.AddEntry(storage.Entry{Type: storage.FileType, Name: "big", Size: size})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(js.Bytes())
	zw.Close()
	return gz.Bytes()
}

// TestLayerHugeClaim: a tar-split whose file entry claims 2^60 bytes
// (padded with zeros where the file is short: a hash without end) is
// refused as a claim at once, against the layer store's recorded size or,
// where none is recorded, a fixed bound; one claiming less than that
// bound but still huge stops when the context does.
func TestLayerHugeClaim(t *testing.T) {
	c := newCrafted(t, "overlay2")
	layer := fixture.Layer(fixture.File("big", "x"))
	set := func(ref string, n int, size int64, recorded bool) {
		c.image(ref, []string{hexID(n)}, func(_ int, ch string) {
			unpack(t, filepath.Join(c.dr, "overlay2", hexID(n), "diff"), layer)
			b := "image/overlay2/layerdb/sha256/" + ch + "/"
			c.write(b+"cache-id", hexID(n))
			c.write(b+"tar-split.json.gz", string(hugeSplit(t, size)))
			if !recorded {
				os.Remove(filepath.Join(c.dr, b+"size"))
			}
		})
	}
	set("recorded:1", 301, 1<<60, true)
	set("unrecorded:1", 302, 1<<60, false)
	set("slow:1", 303, 1<<39, false)
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for ref, want := range map[string]error{"recorded:1": engine.ErrEngineClaim, "unrecorded:1": engine.ErrEngineClaim, "slow:1": context.DeadlineExceeded} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got := make(chan error, 1)
		go func() {
			rc, err := s.SaveImage(ctx, ref)
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			got <- err
		}()
		select {
		case err := <-got:
			if !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", ref, err, want)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s: SaveImage still running after 20 s (context done after 2 s)", ref)
		}
		cancel()
	}
}

// capability is a security.capability value (VFS_CAP_REVISION_2,
// effective) granting the capability bit given.
func capability(bit uint) string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b, 0x02000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<bit)
	return string(b)
}

// TestLayerXattrsMtime: a lower layer's binary given cap_setuid+ep on
// disk is reported ("xattr"); the layer streamed as found keeps every
// file's capabilities (ping's cap_net_raw and the planted one); a file
// whose mtime alone changed is reported ("mtime"). An untouched layer
// with capabilities is rebuilt to its diff_id, unflagged.
func TestLayerXattrsMtime(t *testing.T) {
	testenv.Root(t)
	c := newCrafted(t, "overlay2")
	layer := fixture.Layer(fixture.Dir("bin/"),
		fixture.Entry{Name: "bin/ping", Body: "ping\n", Mode: 0o755, Xattrs: map[string]string{"security.capability": capability(13)}},
		fixture.Entry{Name: "bin/sh", Body: "sh\n", Mode: 0o755}, fixture.File("etc", "x\n"))
	diffs := c.layers("caps:1", 0, layer)
	// The same layer above another: its own chain and directory.
	diffs2 := c.layers("caps:2", 10, fixture.Layer(fixture.File("x", "y\n")), layer)
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	layers, members, _, findings := save(t, s, "caps:1")
	if len(findings) != 0 || members[layers[0]] != diffs[0] {
		t.Fatalf("an untouched layer: findings %q, digest %s, want %s", findings, members[layers[0]], diffs[0])
	}
	dir := filepath.Join(c.dr, "overlay2", hexID(1000), "diff")
	if err := unix.Setxattr(filepath.Join(dir, "bin/sh"), "security.capability", []byte(capability(7)), 0); err != nil {
		t.Fatal(err)
	}
	later := fixture.Epoch.Add(time.Hour)
	os.Chtimes(filepath.Join(c.dr, "overlay2", hexID(1011), "diff", "etc"), later, later)
	layers, _, bodies, findings := save(t, s, "caps:1")
	if want := diffs[0][:12] + " "; len(findings) != 1 || !strings.HasPrefix(findings[0], want) || !strings.HasSuffix(findings[0], " /bin/sh xattr") {
		t.Errorf("findings %q, want /bin/sh xattr", findings)
	}
	if f := s.LayerFindings("caps:1"); len(f) == 1 && f[0].Paths[0].Detail != "security.capability added" {
		t.Errorf("detail %q", f[0].Paths[0].Detail)
	}
	caps := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(bodies[layers[0]]))
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		if v, ok := h.PAXRecords["SCHILY.xattr.security.capability"]; ok {
			caps[h.Name] = fmt.Sprintf("%x", v)
		}
	}
	if want := map[string]string{"bin/ping": fmt.Sprintf("%x", capability(13)), "bin/sh": fmt.Sprintf("%x", capability(7))}; fmt.Sprint(caps) != fmt.Sprint(want) {
		t.Errorf("the layer as found carries capabilities %v, want %v", caps, want)
	}
	if _, _, _, findings := save(t, s, "caps:2"); len(findings) != 1 || !strings.HasPrefix(findings[0], diffs2[1][:12]+" ") || !strings.HasSuffix(findings[0], " /etc mtime") {
		t.Errorf("findings %q, want /etc mtime", findings)
	}
}

// TestOpenRootLinked: ROOT given relative, or through a symbolic link of
// the examiner's own host, is resolved before the data root is: the
// acquisition record names the mount that holds the data root.
func TestOpenRootLinked(t *testing.T) {
	testenv.Root(t)
	top := t.TempDir()
	mnt := filepath.Join(top, "media", "evidence")
	os.MkdirAll(mnt, 0o755)
	testenv.Run(t, "mount", "-t", "tmpfs", "tmpfs", mnt)
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	os.MkdirAll(filepath.Join(mnt, "var/lib/docker/image/overlay2"), 0o755)
	os.Symlink("media", filepath.Join(top, "mnt"))
	t.Chdir(top)
	for _, root := range []string{filepath.Join(top, "mnt", "evidence"), "media/evidence", "mnt/evidence"} {
		s, err := Open(root, "")
		if err != nil {
			t.Fatalf("Open(%s): %v", root, err)
		}
		if o := s.Info().Offline; o == nil || o.Mount != mnt || o.FSType != "tmpfs" {
			t.Errorf("Open(%s): the record names %+v, want the tmpfs at %s", root, o, mnt)
		}
		s.Close()
	}
}

// openFDs counts this process's open descriptors whose path lies under
// dir.
func openFDs(t *testing.T, dir string) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if p, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(p, dir+"/") {
			n++
		}
	}
	return n
}

// TestImageNoFDLeak: finding an image by ID leaves no descriptor open.
func TestImageNoFDLeak(t *testing.T) {
	c := newCrafted(t, "overlay2")
	id := c.image("x:1", []string{hexID(1)}, func(int, string) {})
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer closes a leak
	before := openFDs(t, c.dr)
	for range 100 {
		if _, err := s.Image(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if after := openFDs(t, c.dr); after != before {
		t.Errorf("100 Image calls left %d descriptors open under the data root", after-before)
	}
}

// TestSaveCloseWaits: Close of SaveImage's stream returns once its writer
// is done: nothing under the data root is open any more (the Store may
// be closed next), however far the stream was read.
func TestSaveCloseWaits(t *testing.T) {
	testenv.Root(t)
	c := newCrafted(t, "overlay2")
	var files []fixture.Entry
	for i := range 100 {
		files = append(files, fixture.File(fmt.Sprintf("f%03d", i), strings.Repeat("x", 64<<10)))
	}
	c.layers("big:1", 0, fixture.Layer(files...), fixture.Layer(files[:50]...))
	s, err := Open(c.root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 20 {
		rc, err := s.SaveImage(context.Background(), "big:1")
		if err != nil {
			t.Fatal(err)
		}
		io.CopyN(io.Discard, rc, int64(1+i*300<<10))
		rc.Close()
		if n := openFDs(t, c.dr); n != 0 {
			t.Fatalf("after Close of a stream read %d bytes: %d descriptors open under the data root", 1+i*300<<10, n)
		}
	}
}
