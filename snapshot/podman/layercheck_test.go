//go:build linux

package podman

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// unpackLayer writes a layer tar into dir as containers/storage does:
// modes, owners, extended attributes and mtimes from the headers; the
// layer's own "./", PAX global headers and AUFS metadata skipped.
func unpackLayer(t *testing.T, dir string, layer []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var done []*tar.Header
	tr := tar.NewReader(bytes.NewReader(layer))
	for h, err := tr.Next(); err != io.EOF; h, err = tr.Next() {
		if err != nil {
			t.Fatal(err)
		}
		name := tarName(h.Name)
		if h.Typeflag == tar.TypeXGlobalHeader || name == "" || strings.HasPrefix(name, ".wh..wh.") {
			continue
		}
		p := filepath.Join(dir, name)
		if h.Typeflag == tar.TypeDir {
			err = os.MkdirAll(p, 0o755)
		} else {
			b, _ := io.ReadAll(tr)
			err = os.WriteFile(p, b, 0o644)
		}
		if err == nil {
			err = os.Chmod(p, os.FileMode(h.Mode&0o777))
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && err == nil {
				err = unix.Lsetxattr(p, x, []byte(v), 0)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, h)
	}
	for i := len(done) - 1; i >= 0; i-- {
		os.Chtimes(filepath.Join(dir, tarName(done[i].Name)), done[i].ModTime, done[i].ModTime)
	}
}

// tarName is a tar name as a path of the layer ("" for its top).
func tarName(n string) string { return strings.TrimPrefix(path.Clean("/"+n), "/") }

// layerStorage is a made-up storage holding one image (localhost/x:1) of
// the given layers, each unpacked into its own directory with its
// tar-split; split, when not nil, replaces a layer's tar-split. It
// returns the graph root and the layers' IDs.
func layerStorage(t *testing.T, split func(i int) []byte, tars ...[]byte) (string, []string) {
	t.Helper()
	root := t.TempDir()
	mk := func(p string, b []byte) {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }
	var ids, diffs []string
	var recs []map[string]any
	for i, l := range tars {
		id := fmt.Sprintf("%064x", 0xa000+i)
		s := sha256.Sum256(l)
		d := "sha256:" + hex.EncodeToString(s[:])
		rec := map[string]any{"id": id, "diff-digest": d, "diff-size": len(l)}
		if i > 0 {
			rec["parent"] = ids[i-1]
		}
		ids, diffs, recs = append(ids, id), append(diffs, d), append(recs, rec)
		unpackLayer(t, filepath.Join(root, "overlay", id, "diff"), l)
		var js, gz bytes.Buffer
		r, wait, err := asm.NewInputTarStreamWithDone(bytes.NewReader(l), storage.NewJSONPacker(&js), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r)
		if err := <-wait; err != nil {
			t.Fatal(err)
		}
		b := js.Bytes()
		if split != nil && split(i) != nil {
			b = split(i)
		}
		zw := gzip.NewWriter(&gz)
		zw.Write(b)
		zw.Close()
		mk("overlay-layers/"+id+".tar-split.gz", gz.Bytes())
	}
	cfg := js(map[string]any{"rootfs": map[string]any{"type": "layers", "diff_ids": diffs}})
	s := sha256.Sum256(cfg)
	img := hex.EncodeToString(s[:])
	mk("overlay-containers/containers.json", []byte("[]"))
	mk("overlay-images/images.json", js([]map[string]any{{"id": img, "names": []string{"localhost/x:1"}, "layer": ids[len(ids)-1]}}))
	mk("overlay-layers/layers.json", js(recs))
	mk("overlay-images/"+img+"/"+bigDataName("sha256:"+img), cfg)
	return root, ids
}

func openLayerStorage(t *testing.T, root string) *Storage {
	t.Helper()
	s, err := Open(Options{GraphRoot: root, RunRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// saveFindings reads SaveImage's stream of localhost/x:1: manifest.json's
// layers, each member's sha256, and the findings as "path what" lines
// per layer position's diff_id.
func saveFindings(t *testing.T, s *Storage) (layers []string, members map[string]string, findings []string) {
	t.Helper()
	rc, err := s.SaveImage(context.Background(), "x:1")
	if err != nil {
		t.Fatalf("SaveImage: %v", err)
	}
	defer rc.Close()
	for _, f := range s.LayerFindings("x:1") {
		for _, p := range f.Paths {
			findings = append(findings, fmt.Sprintf("%s %s %s", f.DiffID[7:19], p.Path, p.What))
		}
	}
	sort.Strings(findings)
	members = map[string]string{}
	var man []struct{ Layers []string }
	tr := tar.NewReader(rc)
	for h, err := tr.Next(); err != io.EOF; h, err = tr.Next() {
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		b, _ := io.ReadAll(tr)
		s := sha256.Sum256(b)
		members[h.Name] = hex.EncodeToString(s[:])
		if h.Name == "manifest.json" {
			json.Unmarshal(b, &man)
		}
	}
	if len(man) != 1 {
		t.Fatalf("manifest.json: %v", man)
	}
	return man[0].Layers, members, findings
}

func emptyTar() []byte {
	var b bytes.Buffer
	tar.NewWriter(&b).Close()
	return b.Bytes()
}

// TestLayerRepeatedDiffID: one diff_id at two positions (the empty
// layer: two layer IDs, two directories) is checked at each: a file
// planted in the second copy is found and streamed for that position
// only, each distinct blob once.
func TestLayerRepeatedDiffID(t *testing.T) {
	testenv.Root(t)
	empty := emptyTar()
	root, ids := layerStorage(t, nil, fixture.Layer(fixture.Dir("etc/"), fixture.File("etc/motd", "hi\n")), empty, empty)
	os.WriteFile(filepath.Join(root, "overlay", ids[2], "diff", "planted"), []byte("evil\n"), 0o755)
	s := openLayerStorage(t, root)
	layers, members, findings := saveFindings(t, s)
	e := sha256.Sum256(empty)
	eh := hex.EncodeToString(e[:])
	if len(findings) != 1 || findings[0] != eh[:12]+" /planted added" {
		t.Errorf("findings %q, want /planted added in the second empty layer", findings)
	}
	lf := s.LayerFindings("x:1")
	if len(lf) != 1 || layers[1] != "blobs/sha256/"+eh || layers[2] != "blobs/sha256/"+strings.TrimPrefix(lf[0].Found, "sha256:") || len(members) != 5 {
		t.Errorf("manifest.json layers %v, findings %+v, members %v", layers, lf, members)
	}
}

// TestLayerNoInventedFindings: a PAX global header and AUFS metadata,
// never extracted, are not reported missing; the layer rebuilds to its
// diff_id.
func TestLayerNoInventedFindings(t *testing.T) {
	testenv.Root(t)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "x"}, Format: tar.FormatPAX},
		{Typeflag: tar.TypeDir, Name: "./", Mode: 0o700, ModTime: fixture.Epoch},
		{Typeflag: tar.TypeDir, Name: ".wh..wh.plnk/", Mode: 0o700, ModTime: fixture.Epoch},
		{Typeflag: tar.TypeReg, Name: ".wh..wh.aufs", Mode: 0o600, ModTime: fixture.Epoch},
		{Typeflag: tar.TypeReg, Name: "motd", Mode: 0o644, Size: 3, ModTime: fixture.Epoch},
	} {
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write([]byte("hi\n"))
		}
	}
	tw.Close()
	root, _ := layerStorage(t, nil, b.Bytes())
	layers, members, findings := saveFindings(t, openLayerStorage(t, root))
	d := sha256.Sum256(b.Bytes())
	if len(findings) != 0 || members[layers[0]] != hex.EncodeToString(d[:]) {
		t.Errorf("findings %q, layer of sha256 %s, want %x", findings, members[layers[0]], d)
	}
}

// TestLayerHugeClaim: a tar-split claiming a file of 2^60 bytes is
// refused as a claim against layers.json's diff-size, at once.
func TestLayerHugeClaim(t *testing.T) {
	testenv.Root(t)
	var js bytes.Buffer
	p := storage.NewJSONPacker(&js)
	p.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: make([]byte, 512)})
	p.AddEntry(storage.Entry{Type: storage.FileType, Name: "big", Size: 1 << 60})
	root, _ := layerStorage(t, func(int) []byte { return js.Bytes() }, fixture.Layer(fixture.File("big", "x")))
	s := openLayerStorage(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		rc, err := s.SaveImage(ctx, "x:1")
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		if !errors.Is(err, engine.ErrEngineClaim) {
			t.Errorf("SaveImage: %v, want refused as a claim", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("SaveImage still running after 20 s (context done after 2 s)")
	}
}

// TestLayerXattrs: cap_setuid+ep given to a lower layer's binary on disk
// is reported ("xattr").
func TestLayerXattrs(t *testing.T) {
	testenv.Root(t)
	root, ids := layerStorage(t, nil, fixture.Layer(fixture.Entry{Name: "sh", Body: "sh\n", Mode: 0o755}))
	c := make([]byte, 20)
	binary.LittleEndian.PutUint32(c, 0x02000001)
	binary.LittleEndian.PutUint32(c[4:], 1<<7)
	if err := unix.Setxattr(filepath.Join(root, "overlay", ids[0], "diff", "sh"), "security.capability", c, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, findings := saveFindings(t, openLayerStorage(t, root)); len(findings) != 1 || !strings.HasSuffix(findings[0], " /sh xattr") {
		t.Errorf("findings %q, want /sh xattr", findings)
	}
}

// TestSaveCloseWaits: Close of SaveImage's stream returns once its writer
// is done: nothing under the graph root is open any more.
func TestSaveCloseWaits(t *testing.T) {
	testenv.Root(t)
	var files []fixture.Entry
	for i := range 100 {
		files = append(files, fixture.File(fmt.Sprintf("f%03d", i), strings.Repeat("x", 64<<10)))
	}
	root, _ := layerStorage(t, nil, fixture.Layer(files...))
	s := openLayerStorage(t, root)
	for i := range 20 {
		rc, err := s.SaveImage(context.Background(), "x:1")
		if err != nil {
			t.Fatal(err)
		}
		io.CopyN(io.Discard, rc, int64(1+i*300<<10))
		rc.Close()
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if p, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(p, root+"/") {
				t.Fatalf("after Close of a stream read %d bytes: %s still open", 1+i*300<<10, p)
			}
		}
	}
}

// TestOfflineRootLinked: a dead host's root given relative, or through a
// symbolic link of the examiner's host, is resolved before the graph
// root is: the acquisition record names the mount that holds it.
func TestOfflineRootLinked(t *testing.T) {
	testenv.Root(t)
	top := t.TempDir()
	mnt := filepath.Join(top, "media", "evidence")
	os.MkdirAll(mnt, 0o755)
	testenv.Run(t, "mount", "-t", "tmpfs", "tmpfs", mnt)
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	os.MkdirAll(filepath.Join(mnt, "var/lib/containers/storage/overlay-containers"), 0o755)
	os.Symlink("media", filepath.Join(top, "mnt"))
	t.Chdir(top)
	for _, root := range []string{filepath.Join(top, "mnt", "evidence"), "media/evidence", "mnt/evidence"} {
		s, err := OpenOffline(root, "")
		if err != nil {
			t.Fatalf("OpenOffline(%s): %v", root, err)
		}
		if o := s.Info().Offline; o == nil || o.Mount != mnt || o.FSType != "tmpfs" {
			t.Errorf("OpenOffline(%s): the record names %+v, want the tmpfs at %s", root, o, mnt)
		}
	}
}
