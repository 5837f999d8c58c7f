//go:build linux

package containerdroot

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// maxMeta bounds an index, manifest or config read from the content store
// (a few KiB in practice), maxLayers the layers of one image, maxDepth the
// indexes nested above a manifest (as the live containerd runtime does).
const (
	maxMeta   = 16 << 20
	maxLayers = 1024
	maxDepth  = 4
)

// Media types of indexes and manifests (OCI's and Docker's).
const (
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func isIndex(mt string) bool { return mt == ocispec.MediaTypeImageIndex || mt == mtDockerList }
func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mtDockerManifest
}

// resolved is an image read from the content store: the manifest for this
// host's platform, its config and its layers.
type resolved struct {
	image
	config  ocispec.Descriptor
	cfg     []byte
	layers  []ocispec.Descriptor
	diffIDs []digest.Digest
}

// isSHA256 says d is a valid sha256 digest (Validate first: Algorithm
// panics on a digest without its ':').
func isSHA256(d digest.Digest) bool { return d.Validate() == nil && d.Algorithm() == digest.SHA256 }

// blobPath is a content blob's path under the data root; d is checked to
// be a sha256 digest first (its hex is one path element).
func blobPath(d digest.Digest) (string, error) {
	if !isSHA256(d) {
		return "", engine.Claimf("a blob named %q, not a sha256 digest", d)
	}
	return blobDir + "/" + d.Encoded(), nil
}

// openBlob opens a blob of the content store and checks its size against
// the descriptor's.
func (s *Store) openBlob(desc ocispec.Descriptor) (*os.File, error) {
	rel, err := blobPath(desc.Digest)
	if err != nil {
		return nil, err
	}
	f, err := s.openFile(rel)
	if err != nil {
		return nil, fmt.Errorf("blob %s of the content store: %w", desc.Digest, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", f.Name(), err)
	}
	if st.Size() != desc.Size {
		f.Close()
		return nil, engine.Claimf("blob %s of the content store (%s) has %d bytes, %d in its descriptor", desc.Digest, f.Name(), st.Size(), desc.Size)
	}
	return f, nil
}

// blob reads a small blob (index, manifest, config) whole: bounded, and
// checked against its digest (a blob changed on disk is an error naming
// it).
func (s *Store) blob(desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size < 0 || desc.Size > maxMeta {
		return nil, engine.Claimf("blob %s of %d bytes: amber reads at most %d", desc.Digest, desc.Size, maxMeta)
	}
	f, err := s.openBlob(desc)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, desc.Size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", f.Name(), err)
	}
	if got := digest.SHA256.FromBytes(b); got != desc.Digest {
		return nil, engine.Claimf("blob %s of the content store (%s) has digest %s: changed on disk", desc.Digest, f.Name(), got)
	}
	return b, nil
}

// resolve reads the image's manifest for this host's platform (through
// its indexes) and, withConfig, its config and diff_ids.
func (s *Store) resolve(im image, withConfig bool) (*resolved, error) {
	if im.Err != nil {
		return nil, fmt.Errorf("image %s in namespace %s: its record: %w", im.Name, im.Namespace, im.Err)
	}
	res := &resolved{image: im}
	desc := ocispec.Descriptor{MediaType: im.MediaType, Digest: digest.Digest(im.Digest), Size: im.Size}
	match := platforms.Default()
	for depth := 0; ; depth++ {
		if depth > maxDepth {
			return nil, engine.Claimf("image %s: indexes nested more than %d deep", im.Name, maxDepth)
		}
		b, err := s.blob(desc)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Name, err)
		}
		if isIndex(desc.MediaType) {
			var idx ocispec.Index
			if err := json.Unmarshal(b, &idx); err != nil {
				return nil, engine.Claimf("image %s: index %s: %v", im.Name, desc.Digest, err)
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
				return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("image %s has no manifest for %s", im.Name, platforms.DefaultString())}
			}
			desc = *best
			continue
		}
		if !isManifest(desc.MediaType) {
			return nil, engine.Claimf("image %s: %s is a %q, not an index or a manifest", im.Name, desc.Digest, desc.MediaType)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, engine.Claimf("image %s: manifest %s: %v", im.Name, desc.Digest, err)
		}
		if len(m.Layers) > maxLayers {
			return nil, engine.Claimf("image %s: manifest %s lists %d layers; amber reads at most %d", im.Name, desc.Digest, len(m.Layers), maxLayers)
		}
		for _, l := range m.Layers {
			if !isSHA256(l.Digest) || l.Size < 0 {
				return nil, engine.Claimf("image %s: a layer %q of size %d", im.Name, l.Digest, l.Size)
			}
		}
		if !isSHA256(m.Config.Digest) {
			return nil, engine.Claimf("image %s: a config %q", im.Name, m.Config.Digest)
		}
		res.config, res.layers = m.Config, m.Layers
		break
	}
	if !withConfig {
		return res, nil
	}
	cfg, err := s.blob(res.config)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", im.Name, err)
	}
	res.cfg = cfg
	var c struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, engine.Claimf("image %s: config %s: %v", im.Name, res.config.Digest, err)
	}
	if len(c.RootFS.DiffIDs) != len(res.layers) {
		return nil, engine.Claimf("image %s: config %s lists %d diff_ids for %d layers", im.Name, res.config.Digest, len(c.RootFS.DiffIDs), len(res.layers))
	}
	for _, d := range c.RootFS.DiffIDs {
		if !isSHA256(d) {
			return nil, engine.Claimf("image %s: config %s lists a diff_id %q", im.Name, res.config.Digest, d)
		}
	}
	res.diffIDs = c.RootFS.DiffIDs
	return res, nil
}

// ListImages lists every image of every namespace but Docker's own
// (moby): its name, its ID (the
// digest of its config, when its manifest can be read) and the size of
// its layers as its manifest records them. No layer is read.
func (s *Store) ListImages(ctx context.Context) ([]engine.ImageSummary, error) {
	ims, err := s.images()
	if err != nil {
		return nil, err
	}
	type answer struct {
		id   string
		size int64
	}
	seen := map[string]answer{}
	out := make([]engine.ImageSummary, 0, len(ims))
	for _, im := range ims {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if im.Namespace == dockerNamespace {
			continue
		}
		sum := engine.ImageSummary{Runtime: "containerd", Namespace: im.Namespace, Refs: []string{im.Name}}
		if !im.CreatedAt.IsZero() {
			sum.Created = im.CreatedAt.UTC().Format(timeLayout)
		}
		a, ok := seen[im.Digest]
		if !ok && im.Err == nil {
			if res, err := s.resolve(im, false); err == nil {
				a.id = res.config.Digest.String()
				for _, l := range res.layers {
					a.size += l.Size
				}
				seen[im.Digest] = a
			}
		}
		sum.ID, sum.Size = a.id, a.size
		out = append(out, sum)
	}
	return out, nil
}

// timeLayout is RFC 3339 with nanoseconds, as the summaries give times.
const timeLayout = "2006-01-02T15:04:05.999999999Z07:00"

var fullDigest = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)

// findImage finds the image ref names: "namespace/name", a name unique
// across namespaces (as containerd has it, or Docker-normalised:
// busybox:1 is docker.io/library/busybox:1), or the digest of its config
// (as Docker names images, and Container reports them) or of its target.
// A bare name or digest passes over Docker's own namespace (moby), but
// for the images a lookup by namespace reached there (the capture names
// a moby container's image bare).
func (s *Store) findImage(ref string) (*resolved, error) {
	all, err := s.images()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	ims := make([]image, 0, len(all))
	for _, im := range all {
		if im.Namespace != dockerNamespace || s.dockerImages[im.Digest] {
			ims = append(ims, im)
		}
	}
	s.mu.Unlock()
	names := []string{ref}
	if named, err := reference.ParseDockerRef(ref); err == nil && named.String() != ref {
		names = append(names, named.String())
	}
	var found []image
	if ns, rest, ok := strings.Cut(ref, "/"); ok {
		for _, im := range all {
			if im.Namespace == ns && im.Name == rest {
				found = append(found, im)
			}
		}
		if len(found) == 0 {
			if named, err := reference.ParseDockerRef(rest); err == nil {
				for _, im := range all {
					if im.Namespace == ns && im.Name == named.String() {
						found = append(found, im)
					}
				}
			}
		}
		if len(found) > 0 && ns == dockerNamespace {
			s.mu.Lock()
			for _, im := range found {
				s.dockerImages[im.Digest] = true
			}
			s.mu.Unlock()
		}
	}
	if len(found) == 0 {
		for _, n := range names {
			for _, im := range ims {
				if im.Name == n {
					found = append(found, im)
				}
			}
			if len(found) > 0 {
				break
			}
		}
	}
	if len(found) == 0 && fullDigest.MatchString(ref) {
		want := ref
		if !strings.HasPrefix(want, "sha256:") {
			want = "sha256:" + want
		}
		for _, im := range ims {
			if im.Digest == want {
				found = append(found, im)
			}
		}
		if len(found) == 0 {
			for _, im := range ims {
				if res, err := s.resolve(im, false); err == nil && res.config.Digest.String() == want {
					found = append(found, im)
				}
			}
		}
	}
	if len(found) == 0 {
		return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("no such image: %s", ref)}
	}
	// Records of one target (the same image in several namespaces, or
	// under several names) are one image; different ones are ambiguous.
	for _, im := range found[1:] {
		if im.Digest != found[0].Digest {
			var where []string
			for _, im := range found {
				where = append(where, im.Namespace+"/"+im.Name)
			}
			slices.Sort(where)
			return nil, &engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("%s names %d different images: %s (give namespace/name)", ref, len(found), strings.Join(where, ", "))}
		}
	}
	// Of one image in several namespaces, the one a container inspected
	// runs on: SaveImage checks that namespace's snapshots.
	pick := found[0]
	s.mu.Lock()
	ns, ok := s.imageNS[pick.Digest]
	s.mu.Unlock()
	for _, im := range found {
		if ok && im.Namespace == ns {
			pick = im
			break
		}
	}
	return s.resolve(pick, true)
}

// Image inspects an image: its ID is its config's digest, its layers the
// config's diff_ids.
func (s *Store) Image(ctx context.Context, ref string) (*engine.Image, error) {
	res, err := s.findImage(ref)
	if err != nil {
		return nil, wrap(err, "image "+ref+" in containerd's root "+s.dataRoot)
	}
	ii := &engine.Image{ID: res.config.Digest.String()}
	for _, d := range res.diffIDs {
		ii.DiffIDs = append(ii.DiffIDs, d.String())
	}
	return ii, nil
}

// SaveImage streams the image from the content store as a docker-save
// tar (each layer uncompressed at blobs/sha256/<diff_id>, the config,
// manifest.json), as the live containerd runtime does; the capture checks
// each layer against its diff_id. Each blob is checked against its digest
// as it is read. A layer missing from the content store (containerd
// removes layers once unpacked when discard_unpacked_layers is set) is an
// error naming it, before anything is streamed. Before it returns, every
// layer unpacked in the image's namespace is compared with its committed
// snapshot (layercheck.go): a layer whose snapshot differs is streamed as
// found, at blobs/sha256/<its digest>, and listed by LayerFindings.
func (s *Store) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	res, err := s.findImage(ref)
	if err != nil {
		return nil, wrap(err, "image "+ref+" in containerd's root "+s.dataRoot)
	}
	for i, l := range res.layers {
		f, err := s.openBlob(l)
		if errors.Is(err, os.ErrNotExist) {
			return nil, wrap(&engine.Fault{Kind: engine.ErrNoSuchObject, Err: fmt.Errorf("layer %d of %d (%s, diff_id %s) is not in the content store: containerd removed it (discard_unpacked_layers, or its collector); its files are only in the snapshots",
				i+1, len(res.layers), l.Digest, res.diffIDs[i])}, "image "+ref+" in containerd's root "+s.dataRoot)
		}
		if err != nil {
			return nil, wrap(err, "image "+ref+" in containerd's root "+s.dataRoot)
		}
		f.Close()
	}
	layers, findings, err := s.checkLayers(ctx, res)
	if err != nil {
		return nil, wrap(err, "image "+ref+" in containerd's root "+s.dataRoot)
	}
	s.mu.Lock()
	s.findings[res.Namespace+"/"+res.Digest] = findings
	s.mu.Unlock()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(s.writeSave(ctx, res, layers, pw))
	}()
	return &saveStream{pr: pr, done: done}, nil
}

// saveStream is a save being read: Close stops the writer.
type saveStream struct {
	pr   *io.PipeReader
	done chan struct{}
}

func (s *saveStream) Read(p []byte) (int, error) { return s.pr.Read(p) }

func (s *saveStream) Close() error {
	s.pr.Close()
	<-s.done
	return nil
}

// dockerSaveEntry is one image of a docker-save manifest.json.
type dockerSaveEntry struct {
	Config   string
	RepoTags []string `json:",omitempty"`
	Layers   []string
}

// LayerFindings lists the layers of ref that SaveImage found changed in
// their snapshots (nothing before SaveImage was asked). One diff_id may
// be listed twice, found differently at two positions of the image.
func (s *Store) LayerFindings(ref string) []engine.LayerFinding {
	res, err := s.findImage(ref)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findings[res.Namespace+"/"+res.Digest]
}

// writeSave writes the image as a docker-save tar: each distinct layer
// once (uncompressed, or as found), then the config and manifest.json
// naming, per position, the layer streamed for it.
func (s *Store) writeSave(ctx context.Context, res *resolved, layers []*savedLayer, w io.Writer) error {
	tw := tar.NewWriter(w)
	entry := dockerSaveEntry{Config: "blobs/sha256/" + res.config.Digest.Encoded()}
	if named, err := reference.ParseDockerRef(res.Name); err == nil {
		entry.RepoTags = []string{reference.FamiliarString(named)}
	}
	written := map[string]bool{}
	for _, sl := range layers {
		name := "blobs/sha256/" + sl.digest
		entry.Layers = append(entry.Layers, name)
		if written[sl.digest] {
			continue
		}
		written[sl.digest] = true
		var err error
		if sl.found {
			if err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: sl.size, Typeflag: tar.TypeReg}); err == nil {
				err = s.streamFound(ctx, sl, tw)
			}
		} else {
			err = s.writeLayer(ctx, tw, name, sl.desc, sl.size)
		}
		if err != nil {
			return fmt.Errorf("image %s, layer %s: %w", res.Name, sl.desc.Digest, err)
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

// openLayer gives the layer's blob decompressed (bounded), and the
// compressed bytes' reader (what the decompressor leaves unread is hashed
// too); h (nil: none) hashes the compressed bytes.
func (s *Store) openLayer(ctx context.Context, l ocispec.Descriptor, h hash.Hash) (io.ReadCloser, io.Reader, error) {
	f, err := s.openBlob(l)
	if err != nil {
		return nil, nil, err
	}
	var src io.Reader = f
	if h != nil {
		src = io.TeeReader(f, h)
	}
	br := bufio.NewReaderSize(engine.ContextReader(ctx, src), 1<<20)
	rd, err := decompress(l.MediaType, br)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("layer %s: %w", f.Name(), err)
	}
	// A decompression bomb stops at a bound far above any real layer's
	// ratio.
	limit := l.Size*1024 + 1<<30
	return readCloser{&boundReader{r: rd, left: limit, what: f.Name()}, func() error { rd.Close(); return f.Close() }}, br, nil
}

// checkBlob checks the hash of a blob's bytes against its digest.
func (s *Store) checkBlob(l ocispec.Descriptor, h hash.Hash) error {
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.Digest.String() {
		return engine.Claimf("blob %s of the content store (%s/%s) has digest %s: changed on disk", l.Digest, s.realData, blobDir+"/"+l.Digest.Encoded(), got)
	}
	return nil
}

// writeLayer writes one layer uncompressed. An uncompressed layer is
// hashed as it streams; a compressed one's size is known only once
// decompressed: unless the check of its snapshot counted it (size >= 0),
// it is read twice, the first time to count and to check its digest (no
// copy of it is kept anywhere).
func (s *Store) writeLayer(ctx context.Context, tw *tar.Writer, name string, l ocispec.Descriptor, size int64) error {
	open := func(h hash.Hash) (io.ReadCloser, io.Reader, error) { return s.openLayer(ctx, l, h) }
	check := func(h hash.Hash) error { return s.checkBlob(l, h) }
	h := sha256.New()
	rc, src, err := open(h)
	if err != nil {
		return err
	}
	switch {
	case !compressed(l.MediaType):
		size = l.Size
	case size >= 0:
		// Counted by the check; hashed again as it streams.
	default:
		size, err = io.Copy(io.Discard, rc)
		if err == nil {
			_, err = io.Copy(io.Discard, src)
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("decompressing: %w", err)
		}
		if err := check(h); err != nil {
			return err
		}
		h = nil
		if rc, src, err = open(nil); err != nil {
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
	if h == nil {
		return nil
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("reading the blob: %w", err)
	}
	return check(h)
}

// boundReader fails once more than left bytes are read.
type boundReader struct {
	r    io.Reader
	left int64
	what string
}

func (b *boundReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, engine.Claimf("layer %s decompresses to more than amber's bound: refused", b.what)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// nonDistributableLayer is OCI's deprecated media type of an uncompressed
// non-distributable layer.
const nonDistributableLayer = "application/vnd.oci.image.layer.nondistributable.v1.tar"

// compressed says a layer's media type is gzip or zstd.
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
	case mt == "application/vnd.docker.image.rootfs.diff.tar", mt == ocispec.MediaTypeImageLayer,
		mt == "application/vnd.docker.image.rootfs.foreign.diff.tar", mt == nonDistributableLayer:
		return io.NopCloser(r), nil
	}
	return nil, engine.Claimf("a layer of media type %q, which amber does not know", mt)
}
