package source_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/snapshot/source"
)

// TestV1Presentation: every source layout amber reads, presented as a
// v1.ImageIndex of v1.Images, holds together when each digest and size is
// recomputed (crypto/sha256) from the bytes it serves — index, manifest,
// config, each layer as stored and uncompressed — and names the image
// amber read: its config digest and its diff_ids.
func TestV1Presentation(t *testing.T) {
	img := fixture.Webapp()
	dir := t.TempDir()
	kinds := map[string]func(p string) error{
		"docker-save":      func(p string) error { return fixture.DockerSave(p, img) },
		"docker-save-oci":  func(p string) error { return fixture.DockerSaveOCI(p, fixture.Gzip, img) },
		"oci-layout":       func(p string) error { return fixture.OCILayout(p, fixture.None, img) },
		"oci-layout-gzip":  func(p string) error { return fixture.OCILayout(p, fixture.Gzip, img) },
		"oci-layout-zstd":  func(p string) error { return fixture.OCILayout(p, fixture.Zstd, img) },
		"committed-docker": nil,
	}
	for name, make := range kinds {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if make == nil {
				p = "../../testdata/images/webapp-docker25.tar"
			} else if err := make(p); err != nil {
				t.Fatal(err)
			}
			s, err := source.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			idx, err := s.ImageIndex(1000)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := idx.RawManifest()
			if d, _ := idx.Digest(); d.Hex != sum(raw) {
				t.Errorf("index digest %s, its bytes %s", d, sum(raw))
			}
			im, err := idx.IndexManifest()
			if err != nil || len(im.Manifests) != 1 {
				t.Fatalf("index manifest: %v %v", im, err)
			}
			vi, err := idx.Image(im.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			mb, _ := vi.RawManifest()
			if d, _ := vi.Digest(); d != im.Manifests[0].Digest || sum(mb) != d.Hex || int64(len(mb)) != im.Manifests[0].Size {
				t.Errorf("manifest %s (%d bytes), the index says %s (%d)", sum(mb), len(mb), im.Manifests[0].Digest, im.Manifests[0].Size)
			}
			m, err := vi.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			cb, _ := vi.RawConfigFile()
			if sum(cb) != m.Config.Digest.Hex {
				t.Errorf("config %s, the manifest says %s", sum(cb), m.Config.Digest)
			}
			want := s.Images[0]
			if id, _ := vi.ConfigName(); id != source.V1Hash(want.ConfigDigest) {
				t.Errorf("config name %s, amber read %s", id, want.ConfigDigest)
			}
			ls, _ := vi.Layers()
			if len(ls) != len(want.DiffIDs) {
				t.Fatalf("%d layers, amber read %d", len(ls), len(want.DiffIDs))
			}
			for i, l := range ls {
				if d, _ := l.DiffID(); d != source.V1Hash(want.DiffIDs[i]) {
					t.Errorf("layer %d diff_id %s, amber read %s", i, d, want.DiffIDs[i])
				}
				c, n := read(t, l.Compressed)
				if d, _ := l.Digest(); c != d.Hex || d != m.Layers[i].Digest || n != m.Layers[i].Size {
					t.Errorf("layer %d as stored: %s (%d bytes), the manifest says %s (%d)", i, c, n, m.Layers[i].Digest, m.Layers[i].Size)
				}
				if u, _ := read(t, l.Uncompressed); u != want.DiffIDs[i].Hex() {
					t.Errorf("layer %d uncompressed: %s, diff_id %s", i, u, want.DiffIDs[i])
				}
			}
		})
	}
}

// TestV1UncompressedBounded: a layer read through the v1.Layer is held to
// the same expansion bound as a capture.
func TestV1UncompressedBounded(t *testing.T) {
	layer := fixture.Layer(fixture.File("zeros", string(make([]byte, 70<<20))))
	p := filepath.Join(t.TempDir(), "bomb")
	if err := fixture.OCILayout(p, fixture.Zstd, fixture.Image{Tags: []string{"bomb:1"}, Layers: [][]byte{layer}}); err != nil {
		t.Fatal(err)
	}
	s, err := source.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, bound := range []int64{2, 0} {
		vi, err := s.Images[0].V1(bound)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := vi.Layers()
		rc, err := ls[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if bound > 0 && (!errors.Is(err, source.ErrBomb) || n > 64<<20+1<<20) {
			t.Errorf("bound %dx: read %d bytes, err %v; want ErrBomb near 64 MiB", bound, n, err)
		}
		if bound == 0 && (err != nil || n != int64(len(layer))) {
			t.Errorf("no bound: read %d bytes of %d, err %v", n, len(layer), err)
		}
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// read hashes what open serves.
func read(t *testing.T, open func() (io.ReadCloser, error)) (string, int64) {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// TestV1NestedIndex: a layout as regclient and BuildKit leave them (a
// multi-platform index inside index.json, attestations, artifacts, a
// platform not pulled): the nested index is read from the store, its
// images are the ones amber read, and a manifest the layout lacks is not
// offered.
func TestV1NestedIndex(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := fixture.RegclientLike(dir); err != nil {
		t.Fatal(err)
	}
	s, err := source.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	idx, err := s.ImageIndex(1000)
	if err != nil {
		t.Fatal(err)
	}
	top, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := idx.ImageIndex(top.Manifests[0].Digest)
	if err != nil {
		t.Fatalf("the nested index: %v", err)
	}
	im, err := sub.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	images, missing := 0, 0
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			continue
		}
		vi, err := sub.Image(d.Digest)
		if d.Platform.Architecture == "s390x" {
			if !source.IsNotPresent(err) {
				t.Errorf("the platform not pulled: %v, want not present", err)
			}
			missing++
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", d.Platform, err)
		}
		if got, _ := vi.Digest(); got != d.Digest {
			t.Errorf("image %s has digest %s", d.Digest, got)
		}
		images++
	}
	if images != 2 || missing != 1 {
		t.Errorf("%d images, %d missing; want 2 and 1", images, missing)
	}
}
