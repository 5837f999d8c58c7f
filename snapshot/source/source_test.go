package source

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/hashing"
)

// FuzzOpen feeds hostile docker-save manifests, OCI indexes and
// image configs to the source reader and its v1 presentation: an error or
// a source, never a panic or a read outside the tarball.
func FuzzOpen(f *testing.F) {
	cfg := []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("a", 64) + `"]}}`)
	f.Add([]byte(`[{"Config":"config.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]`), []byte(nil), cfg)
	f.Add([]byte(nil), []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("b", 64)+`","size":10}]}`), cfg)
	f.Add([]byte(`[{"Config":"../../etc/passwd","Layers":["/abs"]}]`), []byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:x"}]}`), []byte(`{`))
	f.Fuzz(func(t *testing.T, man, index, config []byte) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		add := func(name string, b []byte) {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
			tw.Write(b)
		}
		if len(man) > 0 {
			add("manifest.json", man)
		}
		if len(index) > 0 {
			add("index.json", index)
			add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
		}
		add("config.json", config)
		add("blobs/sha256/"+hashing.Sum(config).Hex(), config)
		tw.WriteHeader(&tar.Header{Name: "l/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../../outside"})
		tw.Close()
		p := filepath.Join(t.TempDir(), "src.tar")
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(p)
		if err != nil {
			return
		}
		defer s.Close()
		// The v1 presentation of whatever opened: never a panic.
		if idx, err := s.ImageIndex(10); err == nil {
			if im, err := idx.IndexManifest(); err == nil {
				for _, d := range im.Manifests {
					idx.Image(d.Digest)
					idx.ImageIndex(d.Digest)
				}
			}
		}
		for _, img := range s.Images {
			if vi, err := img.V1(10); err == nil {
				vi.Manifest()
				vi.ConfigFile()
				ls, _ := vi.Layers()
				for _, l := range ls {
					if rc, err := l.Uncompressed(); err == nil {
						io.Copy(io.Discard, rc)
						rc.Close()
					}
				}
			}
		}
	})
}
