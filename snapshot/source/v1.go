package source

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/hashing"
)

// A source as go-containerregistry sees images: a v1.ImageIndex of
// v1.Images, over the same stores and checks as the rest of this package
// (a registry source, or any tool that takes a v1.Image, reads amber's
// sources through these). Nothing is re-read unbounded: manifests and
// configs are the bytes already read and checked, layers are read in
// place through the store, and a layer's uncompressed stream is refused
// past maxExpansion times its stored size (and 64 MiB), as a capture
// refuses a decompression bomb.

// ErrBomb reports a layer that expands past the allowed ratio.
var ErrBomb = errors.New("snapshot: layer expands too much (decompression bomb?)")

// V1 presents the image as a v1.Image: its config, its manifest as the
// source stored it, or, for a docker-save tarball, which stores none, one
// made from manifest.json's entry (so its digest is no registry's), and its
// layers as stored. maxExpansion bounds a layer's Uncompressed stream (0:
// no bound). Not partial.CompressedToImage: that wraps every layer in
// go-containerregistry's own Uncompressed, which has no bound
// (TestV1UncompressedBounded); the rest is partial's.
func (img *Image) V1(maxExpansion int64) (v1.Image, error) {
	raw, mt := img.Manifest, img.ManifestType
	if raw == nil {
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
			Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(img.Config)), Digest: V1Hash(img.ConfigDigest)}}
		for i := range img.Layers {
			l := img.v1Layer(i, maxExpansion)
			m.Layers = append(m.Layers, v1.Descriptor{MediaType: l.mediaType(), Size: l.size(), Digest: V1Hash(l.digest()), URLs: l.l.URLs})
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("making the manifest of %s: %w", img.Name(), err)
		}
		raw, mt = b, types.OCIManifestSchema1
	}
	return &v1Image{img: img, raw: raw, mt: mt, maxExpansion: maxExpansion}, nil
}

type v1Image struct {
	img          *Image
	raw          []byte
	mt           types.MediaType
	maxExpansion int64
}

var _ v1.Image = (*v1Image)(nil)

func (c *v1Image) RawConfigFile() ([]byte, error)      { return c.img.Config, nil }
func (c *v1Image) MediaType() (types.MediaType, error) { return c.mt, nil }
func (c *v1Image) RawManifest() ([]byte, error)        { return c.raw, nil }
func (c *v1Image) Size() (int64, error)                { return partial.Size(c) }
func (c *v1Image) Digest() (v1.Hash, error)            { return partial.Digest(c) }
func (c *v1Image) Manifest() (*v1.Manifest, error)     { return partial.Manifest(c) }
func (c *v1Image) ConfigName() (v1.Hash, error)        { return partial.ConfigName(c) }
func (c *v1Image) ConfigFile() (*v1.ConfigFile, error) { return partial.ConfigFile(c) }

// Layers are the image's layers, base first.
func (c *v1Image) Layers() ([]v1.Layer, error) {
	var out []v1.Layer
	for i := range c.img.Layers {
		out = append(out, c.img.v1Layer(i, c.maxExpansion))
	}
	return out, nil
}

// LayerByDigest finds a layer by its digest as stored.
func (c *v1Image) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for i := range c.img.Layers {
		if l := c.img.v1Layer(i, c.maxExpansion); V1Hash(l.digest()) == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: image %s has no layer %s: %w", ErrSource, c.img.Name(), h, ErrNoMember)
}

// LayerByDiffID finds a layer by its diff_id.
func (c *v1Image) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for i, d := range c.img.DiffIDs {
		if V1Hash(d) == h {
			return c.img.v1Layer(i, c.maxExpansion), nil
		}
	}
	return nil, fmt.Errorf("%w: image %s has no layer of diff_id %s: %w", ErrSource, c.img.Name(), h, ErrNoMember)
}

func (img *Image) v1Layer(i int, maxExpansion int64) *v1Layer {
	return &v1Layer{l: img.Layers[i], diffID: img.DiffIDs[i], store: img.store, maxExpansion: maxExpansion}
}

// v1Layer is one layer of an image as a v1.Layer.
type v1Layer struct {
	l            Layer
	diffID       hashing.Digest
	store        Store
	maxExpansion int64
}

var _ v1.Layer = (*v1Layer)(nil)

// digest is the layer's digest as stored: a legacy docker-save layer.tar
// names none, and Docker writes it uncompressed, so it is its diff_id (a
// capture checks that claim as it reads the layer).
func (l *v1Layer) digest() hashing.Digest {
	if l.l.Digest.IsZero() {
		return l.diffID
	}
	return l.l.Digest
}

func (l *v1Layer) size() int64 {
	if l.l.Missing {
		return l.l.SourceSize
	}
	return l.l.Size
}

func (l *v1Layer) mediaType() types.MediaType {
	if l.l.MediaType == "" {
		return types.DockerUncompressedLayer // a legacy docker-save layer.tar
	}
	return l.l.MediaType
}

func (l *v1Layer) Digest() (v1.Hash, error)            { return V1Hash(l.digest()), nil }
func (l *v1Layer) DiffID() (v1.Hash, error)            { return V1Hash(l.diffID), nil }
func (l *v1Layer) Size() (int64, error)                { return l.size(), nil }
func (l *v1Layer) MediaType() (types.MediaType, error) { return l.mediaType(), nil }

// Compressed reads the layer's bytes as stored, at most its size.
func (l *v1Layer) Compressed() (io.ReadCloser, error) {
	if l.l.Missing {
		return nil, fmt.Errorf("%w: layer %s is not in the source (a foreign layer): %w", ErrSource, l.digest(), ErrNoMember)
	}
	rc, size, err := l.store.Open(l.l.Name)
	if err != nil {
		return nil, err
	}
	return readCloser{io.LimitReader(rc, size), rc}, nil
}

// Uncompressed decompresses the stored bytes (gzip or zstd, as their first
// bytes say), refusing output past the expansion bound.
func (l *v1Layer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(rc)
	head, _ := br.Peek(4)
	kind := Compression(head)
	if kind == "" {
		return readCloser{br, rc}, nil // stored uncompressed
	}
	r, closeFn, err := Decompressor(br, kind)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("%w: layer %s: %v", ErrSource, l.digest(), err)
	}
	var limit int64
	if l.maxExpansion > 0 {
		limit = max(l.size()*l.maxExpansion, 64<<20)
	}
	return readCloser{&LimitExpansion{R: r, Max: limit}, closerFunc(func() error { closeFn(); return rc.Close() })}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// ImageIndex presents the source as a v1.ImageIndex: an OCI source's
// index.json as stored, or, for a docker-save tarball or a save stream
// (whose manifest.json is no index), an index made of its images' V1
// manifests. Its images are the ones this package read; an index or
// manifest the walk did not capture is not offered.
func (s *Source) ImageIndex(maxExpansion int64) (v1.ImageIndex, error) {
	raw := s.index
	if raw == nil {
		im := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
		for _, img := range s.Images {
			vi, err := img.V1(maxExpansion)
			if err != nil {
				return nil, err
			}
			d, err := partial.Descriptor(vi)
			if err != nil {
				return nil, err
			}
			if len(img.Refs) > 0 {
				d.Annotations = map[string]string{AnnotationRefName: img.Refs[0]}
			}
			im.Manifests = append(im.Manifests, *d)
		}
		b, err := json.Marshal(im)
		if err != nil {
			return nil, fmt.Errorf("making the index of %s: %w", s.Path, err)
		}
		raw = b
	}
	return &v1Index{s: s, raw: raw, maxExpansion: maxExpansion}, nil
}

type v1Index struct {
	s            *Source
	raw          []byte
	maxExpansion int64
}

var _ v1.ImageIndex = (*v1Index)(nil)

func (x *v1Index) MediaType() (types.MediaType, error) {
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if json.Unmarshal(x.raw, &m) == nil && m.MediaType != "" {
		return m.MediaType, nil
	}
	return types.OCIImageIndex, nil
}

func (x *v1Index) Digest() (v1.Hash, error)     { return V1Hash(hashing.Sum(x.raw)), nil }
func (x *v1Index) Size() (int64, error)         { return int64(len(x.raw)), nil }
func (x *v1Index) RawManifest() ([]byte, error) { return x.raw, nil }

// IndexManifest parses the index strictly, as go-containerregistry does:
// an index whose odd descriptors the walk recorded as anomalies may fail
// here.
func (x *v1Index) IndexManifest() (*v1.IndexManifest, error) {
	m, err := v1.ParseIndexManifest(bytes.NewReader(x.raw))
	if err != nil {
		return nil, fmt.Errorf("%w: index of %s: %v", ErrSource, x.s.Path, err)
	}
	return m, nil
}

// Image is the image whose manifest has digest h.
func (x *v1Index) Image(h v1.Hash) (v1.Image, error) {
	for _, img := range x.s.Images {
		if !img.SourceManifest.IsZero() && V1Hash(img.SourceManifest) == h {
			return img.V1(x.maxExpansion)
		}
		if img.Manifest == nil {
			vi, err := img.V1(x.maxExpansion)
			if err != nil {
				return nil, err
			}
			if d, err := vi.Digest(); err == nil && d == h {
				return vi, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s holds no image with manifest %s: %w", ErrSource, x.s.Path, h, ErrNoMember)
}

// ImageIndex is a nested index this index lists, read (bounded, checked
// against its descriptor) from the store.
func (x *v1Index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	var doc indexDoc
	if err := json.Unmarshal(x.raw, &doc); err != nil {
		return nil, fmt.Errorf("%w: index of %s: %v", ErrSource, x.s.Path, err)
	}
	for _, d := range doc.Manifests {
		if d.Digest != h || (d.MediaType != types.OCIImageIndex && d.MediaType != types.DockerManifestList) {
			continue
		}
		b, _, err := x.s.readBlob(d)
		if err != nil {
			return nil, err
		}
		return &v1Index{s: x.s, raw: b, maxExpansion: x.maxExpansion}, nil
	}
	return nil, fmt.Errorf("%w: the index lists no index %s: %w", ErrSource, h, ErrNoMember)
}
