package containerd

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// maxMeta bounds an index, manifest or config read from the content store
// (a few KiB in practice), maxLayers the layers of one image, maxDepth the
// indexes nested above a manifest.
const (
	maxMeta   = 16 << 20
	maxLayers = 1024
	maxDepth  = 4
)

// leaseLife bounds the lease of a save when amber cannot delete it (killed
// with SIGKILL): containerd's collector removes it after that.
const leaseLife = 2 * time.Hour

// resolved is an image of the namespace, read from the content store: the
// manifest for this platform, its config and layers.
type resolved struct {
	name     string
	blobs    []ocispec.Descriptor // every blob read, the target first
	config   ocispec.Descriptor
	cfg      []byte
	layers   []ocispec.Descriptor
	diffIDs  []digest.Digest
	platform string
}

var fullDigest = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)

// findImage returns the image record ref names: its name as containerd
// has it, the Docker-normalised name (busybox:1 is
// docker.io/library/busybox:1), or the digest of its config (as Docker
// names images, and Container reports them) or of its target.
func (r *Runtime) findImage(ctx context.Context, ref string) (images.Image, *resolved, error) {
	is := r.c.ImageService()
	img, err := is.Get(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		if named, perr := reference.ParseDockerRef(ref); perr == nil && named.String() != ref {
			img, err = is.Get(ctx, named.String())
		}
	}
	if err == nil || !cerrdefs.IsNotFound(err) || !fullDigest.MatchString(ref) {
		return img, nil, err
	}
	want := ref
	if !strings.HasPrefix(want, "sha256:") {
		want = "sha256:" + want
	}
	all, err := is.List(ctx)
	if err != nil {
		return images.Image{}, nil, err
	}
	for _, im := range all {
		if im.Target.Digest.String() == want {
			return im, nil, nil
		}
		res, err := r.read(ctx, im, nil)
		if err != nil {
			continue // an image amber cannot read is not the one asked for
		}
		if res.config.Digest.String() == want {
			return im, res, nil
		}
	}
	return images.Image{}, nil, fmt.Errorf("no such image: %s: %w", ref, cerrdefs.ErrNotFound)
}

// resolve finds and reads the image ref names.
func (r *Runtime) resolve(ctx context.Context, ref string) (*resolved, error) {
	img, res, err := r.findImage(ctx, ref)
	if err != nil || res != nil {
		return res, err
	}
	return r.read(ctx, img, nil)
}

// read reads the image's manifest for this platform, its config and its
// layers' descriptors from the content store, each blob bounded and
// checked against its digest. keep, when set, is told of every blob
// before it is read (a lease takes it).
func (r *Runtime) read(ctx context.Context, img images.Image, keep func(ocispec.Descriptor) error) (*resolved, error) {
	res := &resolved{name: img.Name}
	desc := img.Target
	match := platforms.Default()
	for depth := 0; ; depth++ {
		if depth > maxDepth {
			return nil, engine.Claimf("image %s: indexes nested more than %d deep", img.Name, maxDepth)
		}
		if keep != nil {
			if err := keep(desc); err != nil {
				return nil, err
			}
		}
		res.blobs = append(res.blobs, desc)
		b, err := r.blob(ctx, desc)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.Name, err)
		}
		if images.IsIndexType(desc.MediaType) {
			var idx ocispec.Index
			if err := json.Unmarshal(b, &idx); err != nil {
				return nil, engine.Claimf("image %s: index %s: %v", img.Name, desc.Digest, err)
			}
			var best *ocispec.Descriptor
			for i, m := range idx.Manifests {
				if m.Platform == nil && len(idx.Manifests) > 1 {
					continue
				}
				if m.Platform != nil && !match.Match(*m.Platform) {
					continue
				}
				if best == nil || (m.Platform != nil && best.Platform != nil && match.Less(*m.Platform, *best.Platform)) {
					best = &idx.Manifests[i]
				}
			}
			if best == nil {
				return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("image %s has no manifest for %s", img.Name, platforms.DefaultString())}
			}
			desc = *best
			continue
		}
		if !images.IsManifestType(desc.MediaType) {
			return nil, engine.Claimf("image %s: %s is a %q, not an index or a manifest", img.Name, desc.Digest, desc.MediaType)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, engine.Claimf("image %s: manifest %s: %v", img.Name, desc.Digest, err)
		}
		if len(m.Layers) > maxLayers {
			return nil, engine.Claimf("image %s: manifest %s lists %d layers; amber reads at most %d", img.Name, desc.Digest, len(m.Layers), maxLayers)
		}
		if desc.Platform != nil {
			res.platform = platforms.Format(*desc.Platform)
		}
		res.config, res.layers = m.Config, m.Layers
		break
	}
	if keep != nil {
		if err := keep(res.config); err != nil {
			return nil, err
		}
	}
	res.blobs = append(res.blobs, res.config)
	cfg, err := r.blob(ctx, res.config)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", img.Name, err)
	}
	res.cfg = cfg
	var c struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, engine.Claimf("image %s: config %s: %v", img.Name, res.config.Digest, err)
	}
	if len(c.RootFS.DiffIDs) != len(res.layers) {
		return nil, engine.Claimf("image %s: config %s lists %d diff_ids for %d layers", img.Name, res.config.Digest, len(c.RootFS.DiffIDs), len(res.layers))
	}
	for _, d := range c.RootFS.DiffIDs {
		if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
			return nil, engine.Claimf("image %s: config %s lists a diff_id %q", img.Name, res.config.Digest, d)
		}
	}
	for _, l := range res.layers {
		if l.Digest.Validate() != nil || l.Digest.Algorithm() != digest.SHA256 || l.Size < 0 {
			return nil, engine.Claimf("image %s: a layer %q of size %d", img.Name, l.Digest, l.Size)
		}
	}
	res.diffIDs = c.RootFS.DiffIDs
	return res, nil
}

// blob reads a small blob of the content store (index, manifest, config)
// whole: bounded, and checked against its digest.
func (r *Runtime) blob(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Digest.Validate() != nil || desc.Digest.Algorithm() != digest.SHA256 {
		return nil, engine.Claimf("a blob named %q", desc.Digest)
	}
	if desc.Size < 0 || desc.Size > maxMeta {
		return nil, engine.Claimf("blob %s of %d bytes: amber reads at most %d", desc.Digest, desc.Size, maxMeta)
	}
	ra, err := r.c.ContentStore().ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	if ra.Size() != desc.Size {
		return nil, engine.Claimf("blob %s has %d bytes in the content store, %d in its descriptor", desc.Digest, ra.Size(), desc.Size)
	}
	b := make([]byte, desc.Size)
	if _, err := io.ReadFull(io.NewSectionReader(ra, 0, desc.Size), b); err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", desc.Digest, err)
	}
	if got := digest.SHA256.FromBytes(b); got != desc.Digest {
		return nil, engine.Claimf("blob %s of the content store has digest %s", desc.Digest, got)
	}
	return b, nil
}

// Image inspects an image of the namespace: its ID is its config's digest
// (as Docker names images), its layers the config's diff_ids.
func (r *Runtime) Image(ctx context.Context, ref string) (*engine.Image, error) {
	res, err := r.resolve(r.nsCtx(ctx), ref)
	if err != nil {
		return nil, r.wrap(err, "image "+ref+" in containerd")
	}
	ii := &engine.Image{ID: res.config.Digest.String()}
	for _, d := range res.diffIDs {
		ii.DiffIDs = append(ii.DiffIDs, d.String())
	}
	return ii, nil
}

// SaveImage streams the image from the content store as a docker-save
// tar (manifest.json, the config, each layer uncompressed at
// blobs/sha256/<diff_id>), which the capture checks layer by layer
// against the diff_ids. Its blobs are held by a lease of amber's own from
// before they are read to the stream's Close, which deletes it (also on
// failure): nothing of the save stays in containerd.
func (r *Runtime) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	ctx = r.nsCtx(ctx)
	img, _, err := r.findImage(ctx, ref)
	if err != nil {
		return nil, r.wrap(err, "image "+ref+" in containerd")
	}
	lm := r.c.LeasesService()
	lease, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(leaseLife),
		leases.WithLabel("amber.capture", "holds the image "+img.Name+" while amber saves it"))
	if err != nil {
		return nil, r.wrap(err, "taking a lease on image "+ref)
	}
	release := func() error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := lm.Delete(dctx, lease); err != nil && !cerrdefs.IsNotFound(err) {
			return r.wrap(err, "deleting amber's lease "+lease.ID+" (ctr leases rm "+lease.ID+")")
		}
		return nil
	}
	keep := func(d ocispec.Descriptor) error {
		return lm.AddResource(ctx, lease, leases.Resource{ID: d.Digest.String(), Type: "content"})
	}
	res, err := r.read(ctx, img, keep)
	if err == nil {
		for _, l := range res.layers {
			if err = keep(l); err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, errors.Join(r.wrap(err, "image "+ref+" in containerd"), release())
	}
	pr, pw := io.Pipe()
	s := &saveStream{pr: pr, done: make(chan struct{}), release: release}
	go func() {
		defer close(s.done)
		pw.CloseWithError(r.writeSave(ctx, res, pw))
	}()
	return s, nil
}

// saveStream is a save being read: Close stops the writer and deletes the
// lease.
type saveStream struct {
	pr      *io.PipeReader
	done    chan struct{}
	release func() error
}

func (s *saveStream) Read(p []byte) (int, error) { return s.pr.Read(p) }

func (s *saveStream) Close() error {
	s.pr.Close()
	<-s.done
	return s.release()
}

// dockerSaveEntry is one image of a docker-save manifest.json.
type dockerSaveEntry struct {
	Config   string
	RepoTags []string `json:",omitempty"`
	Layers   []string
}

// writeSave writes the image as a docker-save tar: each distinct layer
// once, uncompressed, then the config and manifest.json.
func (r *Runtime) writeSave(ctx context.Context, res *resolved, w io.Writer) error {
	tw := tar.NewWriter(w)
	entry := dockerSaveEntry{Config: "blobs/sha256/" + res.config.Digest.Encoded()}
	if named, err := reference.ParseDockerRef(res.name); err == nil {
		entry.RepoTags = []string{reference.FamiliarString(named)}
	}
	written := map[digest.Digest]bool{}
	for i, l := range res.layers {
		name := "blobs/sha256/" + res.diffIDs[i].Encoded()
		entry.Layers = append(entry.Layers, name)
		if written[res.diffIDs[i]] {
			continue
		}
		written[res.diffIDs[i]] = true
		if err := r.writeLayer(ctx, tw, name, l); err != nil {
			return fmt.Errorf("image %s, layer %s: %w", res.name, l.Digest, err)
		}
	}
	mj, err := json.Marshal([]dockerSaveEntry{entry})
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{entry.Config, res.cfg}, {"manifest.json", mj}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o444, Size: int64(len(f.b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeLayer writes one layer uncompressed. A compressed layer's size is
// known only once decompressed: it is decompressed twice, once to count,
// once to write (no copy of it is kept anywhere).
func (r *Runtime) writeLayer(ctx context.Context, tw *tar.Writer, name string, l ocispec.Descriptor) error {
	open := func() (io.ReadCloser, error) {
		ra, err := r.c.ContentStore().ReaderAt(ctx, l)
		if err != nil {
			// Every failure says it is containerd's (its fault's note).
			return nil, r.wrap(err, "opening "+l.Digest.String()+" in containerd's content store")
		}
		if ra.Size() != l.Size {
			ra.Close()
			return nil, engine.Claimf("blob %s has %d bytes in the content store, %d in the manifest", l.Digest, ra.Size(), l.Size)
		}
		// Read in large pieces: each read of the content store is one
		// call to containerd (32 KiB at a time cost 1.3x Docker's save).
		rd, err := decompress(l.MediaType, bufio.NewReaderSize(engine.ContextReader(ctx, faultReader{content.NewReader(ra), r}), 4<<20))
		if err != nil {
			ra.Close()
			return nil, err
		}
		return readCloser{rd, func() error { rd.Close(); return ra.Close() }}, nil
	}
	rc, err := open()
	if err != nil {
		return err
	}
	size := l.Size
	if compressed(l.MediaType) {
		size, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("decompressing: %w", err)
		}
		if rc, err = open(); err != nil {
			return err
		}
	}
	defer rc.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, rc); err != nil {
		return err
	}
	return nil
}

// faultReader classifies the errors of a blob read as the runtime's own
// (containerd stopped in the middle of a layer is the runtime failing,
// exit 8, not an I/O error of amber's).
type faultReader struct {
	rd io.Reader
	r  *Runtime
}

func (f faultReader) Read(p []byte) (int, error) {
	n, err := f.rd.Read(p)
	if err != nil && err != io.EOF {
		err = f.r.wrap(err, "reading from containerd's content store")
	}
	return n, err
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// compressed says a layer's media type is gzip or zstd.
// nonDistributableLayer is OCI's deprecated media type of an uncompressed
// non-distributable layer (image-spec 1.1 deprecates it; stores still hold
// images that use it).
const nonDistributableLayer = "application/vnd.oci.image.layer.nondistributable.v1.tar"

func compressed(mt string) bool {
	return strings.HasSuffix(mt, "gzip") || strings.HasSuffix(mt, "zstd")
}

// decompress reads a layer of media type mt as a plain tar.
func decompress(mt string, r io.Reader) (io.ReadCloser, error) {
	switch {
	case strings.HasSuffix(mt, "gzip"):
		return gzip.NewReader(r)
	case strings.HasSuffix(mt, "zstd"):
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case mt == images.MediaTypeDockerSchema2Layer, mt == ocispec.MediaTypeImageLayer, mt == images.MediaTypeDockerSchema2LayerForeign,
		mt == nonDistributableLayer:
		return io.NopCloser(r), nil
	}
	return nil, engine.Claimf("a layer of media type %q, which amber does not know", mt)
}
