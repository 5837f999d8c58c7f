//go:build linux

package podman

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vbatts/tar-split/tar/storage"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// hostileStorage is a made-up storage: one image of one layer whose
// tar-split record names the file given, and one container.
func hostileStorage(t *testing.T, ctrID, layerFile string) (*Storage, string) {
	t.Helper()
	root, run := t.TempDir(), t.TempDir()
	layer, ctrLayer := strings.Repeat("aa", 32), strings.Repeat("cc", 32)
	cfg := []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("dd", 32) + `"]}}`)
	sum := sha256.Sum256(cfg)
	img := hex.EncodeToString(sum[:])
	mk := func(p string, b []byte) {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }
	mk("overlay-containers/containers.json", js([]map[string]any{{"id": ctrID, "names": []string{"web"}, "image": img, "layer": ctrLayer}}))
	mk("overlay-images/images.json", js([]map[string]any{{"id": img, "names": []string{"localhost/x:1"}, "layer": layer}}))
	mk("overlay-layers/layers.json", js([]map[string]any{{"id": layer, "diff-digest": "sha256:" + strings.Repeat("dd", 32)}, {"id": ctrLayer, "parent": layer}}))
	mk("overlay-images/"+img+"/"+bigDataName("sha256:"+img), cfg)
	mk("overlay/"+layer+"/diff/etc/passwd", []byte("root\n"))
	os.MkdirAll(filepath.Join(root, "overlay", ctrLayer), 0o755)
	var ts bytes.Buffer
	zw := gzip.NewWriter(&ts)
	enc := json.NewEncoder(zw)
	enc.Encode(storage.Entry{Type: storage.SegmentType, Payload: make([]byte, 512), Position: 0})
	enc.Encode(storage.Entry{Type: storage.FileType, Name: layerFile, Size: 5, Position: 1})
	zw.Close()
	mk("overlay-layers/"+layer+".tar-split.gz", ts.Bytes())
	s, err := Open(Options{GraphRoot: root, RunRoot: run})
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func claimed(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, engine.ErrEngineClaim) {
		t.Errorf("%s: %v, want refused as a claim", what, err)
	}
}

// TestHostileStorage: what podman's storage says is checked before it is
// read: IDs are 64 hex digits, the upper directory is a real directory
// under the graph root (no symbolic link out), a layer's file is read
// beneath its directory and through no symbolic link, and a config that
// does not hash to its image's ID is refused.
func TestHostileStorage(t *testing.T) {
	ctx := context.Background()
	id := strings.Repeat("bb", 32)

	s, _ := hostileStorage(t, "../../etc", "etc/passwd")
	_, err := s.Container(ctx, "web")
	claimed(t, "a container ID that is a path", err)

	// The good case first: the layer's file is read.
	s, root := hostileStorage(t, id, "etc/passwd")
	rc, err := s.SaveImage(ctx, "x:1")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(rc); err != nil || !bytes.Contains(b, []byte("root\n")) {
		t.Errorf("save stream of the made-up image: %v", err)
	}
	// The container's upper directory is a link out of the storage.
	os.Symlink("/etc", filepath.Join(root, "overlay", strings.Repeat("cc", 32), "diff"))
	c, err := s.Container(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := s.UpperDirs(c)
	claimed(t, "an upper directory linked to /etc", err)
	if dirs != nil {
		t.Errorf("dirs %q", dirs)
	}
	c.Storage["LayerID"] = "../../../etc"
	_, err = s.UpperDirs(c)
	claimed(t, "a layer ID that is a path", err)
	_, err = s.VolumeDir("v", "/etc")
	claimed(t, "a volume outside the storage", err)

	// A layer's file named out of its directory: refused. Through a
	// link: the layer was changed on disk (a directory is a link now),
	// streamed as found and flagged, the link not followed.
	for _, name := range []string{"../../../../../../etc/passwd", "link/passwd"} {
		s, root := hostileStorage(t, id, name)
		os.Symlink("/etc", filepath.Join(root, "overlay", strings.Repeat("aa", 32), "diff", "link"))
		var b []byte
		rc, err := s.SaveImage(ctx, "x:1")
		if err == nil {
			b, err = io.ReadAll(rc)
		}
		if bytes.Contains(b, []byte("root:")) {
			t.Errorf("tar-split file %q: the host's /etc/passwd was read", name)
		}
		switch lf := s.LayerFindings("x:1"); {
		case name == "link/passwd" && (err != nil || len(lf) != 1 || !strings.Contains(fmt.Sprint(lf[0].Paths), "/link/passwd")):
			t.Errorf("tar-split file %q: %v, findings %+v; want the layer flagged", name, err, lf)
		case name != "link/passwd" && !errors.Is(err, engine.ErrEngineClaim):
			t.Errorf("tar-split file %q: %v; want refused", name, err)
		}
	}

	// A config that is not the image's.
	s, root = hostileStorage(t, id, "etc/passwd")
	matches, _ := filepath.Glob(filepath.Join(root, "overlay-images", "*", "=*"))
	os.WriteFile(matches[0], []byte(`{"rootfs":{}}`), 0o644)
	_, err = s.Image(ctx, "x:1")
	claimed(t, "a config that does not hash to the image ID", err)
}
