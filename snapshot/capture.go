package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/amber-forensics/amber/archive"
	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/source"
)

// Options tune a capture.
type Options struct {
	// MaxExpansion refuses a compressed layer that expands more than this
	// many times its compressed size (and past 64 MiB): a decompression
	// bomb. 0 means no limit.
	MaxExpansion int64
	// Progress, when set, receives progress lines.
	Progress func(msg string)
	// Perm is asked for the archive and its sidecars (the umask
	// applies); 0: 0600 (archive.WriterOptions.Perm).
	Perm os.FileMode
	// Encoder compresses the archive's frames (nil: archive.Klauspost, pure
	// Go). The command line chooses: libzstd (cgozstd.Encoder) where it is
	// built in; nothing that only reads an archive links cgo.
	Encoder *archive.Encoder
	// MaxIndexStrings bounds the names, link targets and xattrs of one
	// layer's index (0: fileindex.DefaultMaxIndexStrings; negative: no
	// limit): a hostile directory chain is refused past it.
	MaxIndexStrings int64
	// KeepMismatched keeps a layer of an image file (a docker-save
	// tarball, an OCI layout) whose bytes do not match the digest its
	// manifest or config gives: stored as found under its own digest and
	// flagged (layer-digest-mismatch), where the capture otherwise refuses
	// the source. Each such layer is read once more to learn its digest
	// before it is stored.
	KeepMismatched bool
	// Stream, when set, receives the archive as it is written (a
	// registry's upload session) instead of a file at the output: the
	// output's directory is then only the staging directory (spills,
	// sidecars). Nothing is written at the output's name.
	Stream io.Writer
	// keepIndexes: every layer's parsed index is kept for later (a
	// container's change list needs its image's): a large one is read in
	// pages from a temp file.
	keepIndexes bool
	// ownLayer: the layer is amber's own (a container's changes, a
	// volume), not an image file's
	ownLayer bool
}

// maxSparse bounds the logical bytes of a layer's sparse files as the
// expansion limit bounds a compressed layer: a sparse file's holes are
// zeros no stored byte stands for (0: no bound).
func (o Options) maxSparse(layerSize int64) int64 {
	if o.MaxExpansion <= 0 {
		return 0
	}
	return max(layerSize*o.MaxExpansion, 64<<20)
}

// keepIndexMax is the largest index held whole in memory; a larger one is
// streamed into the archive.
var keepIndexMax int64 = 32 << 20

// DefaultMaxExpansion is generous for real layers (text compresses ~5-10x)
// and stops bombs early.
const DefaultMaxExpansion = 1000

// ErrDigestMismatch reports a layer whose content is not what its config says.
var ErrDigestMismatch = errors.New("snapshot: layer digest mismatch")

// ErrBomb reports a layer that expands past the allowed ratio (the
// source package's: a layer read through a source's v1.Layer is held to
// the same bound).
var ErrBomb = source.ErrBomb

// Captured is what a capture added to the archive.
type Captured struct {
	Artifacts []manifest.Artifact
	Anomalies []manifest.Anomaly
	// Events are custody events to record (one per artifact).
	Events []manifest.Event
	// Index lists the image manifests for index.json (see WriteIndex).
	Index []descriptor
	// Indexes are the parsed file indexes of the layers captured, by
	// digest: what a container's changes are compared with.
	Indexes map[hashing.Digest]*fileindex.Index
}

type layerDone struct {
	layer     manifest.Layer
	anomalies []manifest.Anomaly
	index     *fileindex.Index
}

// WriteIndex writes index.json listing the image (and container) manifests.
func WriteIndex(w *archive.Writer, manifests []descriptor) error {
	index := ociIndex{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: manifests}
	ib, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding index.json: %w", err)
	}
	_, err = w.Add("index.json", append(ib, '\n'))
	return err
}

// layerSet remembers the layers already in an archive, so that images from
// several sources share them.
type layerSet struct {
	done     map[hashing.Digest]*layerDone
	reported map[hashing.Digest]bool // anomalies already in a Captured
}

func newLayerSet() *layerSet {
	return &layerSet{done: map[hashing.Digest]*layerDone{}, reported: map[hashing.Digest]bool{}}
}

// lookup is the layer stored for an image's layer of diff_id diffID whose
// source names its bytes stored (zero: not named): the layer kept as found
// under that digest when it was found changed, else diffID's.
func (layers *layerSet) lookup(diffID, stored hashing.Digest) (*layerDone, bool) {
	if ld, ok := layers.done[stored]; ok && !stored.IsZero() && stored != diffID && ld.layer.DiffID == diffID {
		return ld, true
	}
	ld, ok := layers.done[diffID]
	return ld, ok
}

func (layers *layerSet) capture(ctx context.Context, src *source.Source, w *archive.Writer, opts Options) (*Captured, error) {
	if !w.Has("oci-layout") {
		if _, err := w.Add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`+"\n")); err != nil {
			return nil, err
		}
	}
	out := &Captured{Indexes: map[hashing.Digest]*fileindex.Index{}}
	out.Anomalies = append(out.Anomalies, src.Anomalies...)
	done := layers.done
	names := map[string]bool{}
	for _, img := range src.Images {
		art := manifest.Artifact{Kind: manifest.KindImage, Refs: img.Refs, ImageID: img.ConfigDigest, SourceManifest: img.SourceManifest, Platform: img.Platform}
		art.Name = img.Name()
		if names[art.Name] {
			art.Name = art.Name + "_" + img.ConfigDigest.Short()
		}
		names[art.Name] = true
		var roots []hashing.Digest
		for i, ls := range img.Layers {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			diffID := img.DiffIDs[i]
			ld, ok := layers.lookup(diffID, ls.Digest)
			if !ok && ls.Missing {
				ld, ok = missingLayer(ls, diffID), true
				done[diffID] = ld
			}
			if !ok {
				if opts.Progress != nil {
					opts.Progress(fmt.Sprintf("image %s: layer %d/%d %s", art.Name, i+1, len(img.Layers), diffID.Short()))
				}
				var err error
				ld, err = captureLayer(ctx, src.Store(), w, ls, diffID, opts)
				if err != nil {
					return nil, fmt.Errorf("image %s, layer %d (%s): %w", art.Name, i, ls.Name, err)
				}
				done[diffID] = ld
			}
			out.Indexes[diffID] = ld.index
			// A layer kept as found is stored, and looked up, by its
			// own digest.
			out.Indexes[ld.layer.Digest] = ld.index
			if !layers.reported[ld.layer.Digest] {
				layers.reported[ld.layer.Digest] = true
				for _, a := range ld.anomalies {
					a.Artifact = art.Name
					a.Layer = i
					out.Anomalies = append(out.Anomalies, a)
				}
			}
			art.Layers = append(art.Layers, ld.layer)
			art.Files += ld.layer.Files
			roots = append(roots, hashing.LeafHash([]byte(ld.layer.MerkleRoot.String())))
		}
		art.MerkleRoot = hashing.MerkleRoot(roots)
		if !w.Has(manifest.BlobName(img.ConfigDigest)) {
			if _, err := w.Add(manifest.BlobName(img.ConfigDigest), img.Config); err != nil {
				return nil, err
			}
		}
		art.Config = manifest.Descriptor{MediaType: MediaTypeConfig, Digest: img.ConfigDigest, Size: int64(len(img.Config))}
		m := ociManifest{SchemaVersion: 2, MediaType: MediaTypeManifest,
			Config: descriptor{MediaType: MediaTypeConfig, Digest: img.ConfigDigest.String(), Size: int64(len(img.Config))}}
		for _, l := range art.Layers {
			if l.Missing {
				// Not in the archive: the source's own descriptor, as
				// OCI describes a non-distributable layer.
				m.Layers = append(m.Layers, descriptor{MediaType: l.SourceMediaType, Digest: l.SourceDigest.String(), Size: l.SourceSize, URLs: l.SourceURLs})
				continue
			}
			m.Layers = append(m.Layers, descriptor{MediaType: MediaTypeLayer, Digest: l.Digest.String(), Size: l.Size})
		}
		mb, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encoding image manifest: %w", err)
		}
		md := hashing.Sum(mb)
		if !w.Has(manifest.BlobName(md)) {
			if _, err := w.Add(manifest.BlobName(md), mb); err != nil {
				return nil, err
			}
		}
		art.Manifest = manifest.Descriptor{MediaType: MediaTypeManifest, Digest: md, Size: int64(len(mb))}
		ann := map[string]string{AnnotationRefName: art.Name}
		if len(img.Refs) > 0 {
			ann[annotationContainerdN] = img.Refs[0]
		}
		out.Index = append(out.Index, descriptor{MediaType: MediaTypeManifest, Digest: md.String(), Size: int64(len(mb)), Annotations: ann})
		out.Artifacts = append(out.Artifacts, art)
		out.Events = append(out.Events, manifest.Event{Action: "captured", Details: map[string]string{
			"artifact": "images/" + art.Name, "image_id": art.ImageID.String(), "manifest": md.String(),
			"merkle_root": art.MerkleRoot.String(), "layers": fmt.Sprint(len(art.Layers)), "files": fmt.Sprint(art.Files)}})
	}
	for _, a := range src.Artifacts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		art, anomalies, err := captureArtifact(ctx, src, w, a)
		if err != nil {
			return nil, fmt.Errorf("artifact %s (%s): %w", a.Name(), a.ManifestDesc.Digest, err)
		}
		out.Artifacts = append(out.Artifacts, art)
		out.Anomalies = append(out.Anomalies, anomalies...)
		out.Index = append(out.Index, descriptor{MediaType: string(a.ManifestDesc.MediaType), Digest: a.ManifestDesc.Digest.String(), Size: a.ManifestDesc.Size,
			Annotations: map[string]string{AnnotationRefName: art.Name}})
		details := map[string]string{"artifact": "artifacts/" + art.Name, "manifest": a.ManifestDesc.Digest.String(), "type": art.ArtifactType, "blobs": fmt.Sprint(len(art.Blobs))}
		if art.Describes != "" {
			details["describes"] = art.Describes
		}
		out.Events = append(out.Events, manifest.Event{Action: "captured", Details: details})
	}
	sort.SliceStable(out.Anomalies, func(i, j int) bool { return out.Anomalies[i].Artifact < out.Anomalies[j].Artifact })
	return out, nil
}

// missingLayer records a layer whose bytes the source does not hold.
func missingLayer(ls source.Layer, diffID hashing.Digest) *layerDone {
	l := manifest.Layer{Descriptor: manifest.Descriptor{MediaType: MediaTypeLayer, Digest: diffID},
		SourceDigest: ls.Digest, SourceMediaType: string(ls.MediaType), SourceURLs: ls.URLs, SourceSize: ls.SourceSize, Missing: true}
	detail := fmt.Sprintf("layer %s (%s, %d bytes", diffID, ls.MediaType, ls.SourceSize)
	if len(ls.URLs) > 0 {
		detail += ", at " + strings.Join(ls.URLs, " ")
	}
	detail += ") is not in the source: its files are not in this archive, and the merged views lack them"
	return &layerDone{layer: l, anomalies: []manifest.Anomaly{{Kind: "layer-not-present", Detail: detail}}}
}

// captureArtifact stores an OCI artifact's manifest, config and blobs byte
// for byte, each checked against its digest; a blob the source lacks is
// recorded as not present.
func captureArtifact(ctx context.Context, src *source.Source, w *archive.Writer, a *source.Artifact) (manifest.Artifact, []manifest.Anomaly, error) {
	md := source.Digest(a.ManifestDesc.Digest)
	art := manifest.Artifact{Kind: manifest.KindArtifact, Name: a.Name(), Refs: a.Refs, ArtifactType: a.Kind, Subject: a.Subject,
		Manifest: manifest.Descriptor{MediaType: string(a.ManifestDesc.MediaType), Digest: md, Size: a.ManifestDesc.Size}, SourceManifest: md}
	if a.Describes != "" {
		art.Describes = "images/" + a.Describes
	}
	var anomalies []manifest.Anomaly
	if !w.Has(manifest.BlobName(md)) {
		if _, err := w.Add(manifest.BlobName(md), a.Manifest); err != nil {
			return art, nil, err
		}
	}
	for i, d := range append([]v1.Descriptor{a.Config}, a.Blobs...) {
		b := manifest.Blob{Descriptor: manifest.Descriptor{MediaType: string(d.MediaType), Digest: source.Digest(d.Digest), Size: d.Size}, Title: d.Annotations[source.AnnotationTitle]}
		err := storeBlob(ctx, src.Store(), w, b.Descriptor)
		if source.IsNotPresent(err) {
			b.Missing = true
			what := "config"
			if i > 0 {
				what = fmt.Sprintf("blob %d", i-1)
			}
			anomalies = append(anomalies, manifest.Anomaly{Artifact: art.Name, Layer: -1, Kind: "blob-not-present",
				Detail: fmt.Sprintf("%s %s (%s, %d bytes) of artifact %s is not in the source", what, d.Digest, d.MediaType, d.Size, art.Name)})
		} else if err != nil {
			return art, nil, err
		}
		if i == 0 {
			art.Config = b.Descriptor
			continue
		}
		art.Blobs = append(art.Blobs, b)
	}
	art.MerkleRoot = archive.ArtifactRoot(art)
	return art, anomalies, nil
}

// storeBlob copies a blob from the source into the archive under its
// digest (a sha256: the source checked), checking digest and size as it
// streams.
func storeBlob(ctx context.Context, st source.Store, w *archive.Writer, d manifest.Descriptor) error {
	name, want := manifest.BlobName(d.Digest), d.Digest
	if w.Has(name) {
		return nil
	}
	rc, size, err := st.Open(name)
	if err != nil {
		return err
	}
	defer rc.Close()
	if size != d.Size {
		return fmt.Errorf("%w: %s is %d bytes, its descriptor says %d", ErrSource, name, size, d.Size)
	}
	if err := w.Begin(name, size); err != nil {
		return err
	}
	if _, err := io.Copy(w, engine.ContextReader(ctx, io.LimitReader(rc, size))); err != nil {
		return fmt.Errorf("copying %s: %w", name, err)
	}
	e, err := w.End()
	if err != nil {
		return err
	}
	if e.SHA256 != want {
		return fmt.Errorf("%w: %s has SHA-256 %s, not its name's", ErrDigestMismatch, name, e.SHA256.Hex())
	}
	return nil
}

// openLayer returns the layer's uncompressed stream.
func openLayer(ctx context.Context, st source.Store, ls source.Layer, kind string) (io.Reader, func(), error) {
	rc, _, err := st.Open(ls.Name)
	if err != nil {
		return nil, nil, err
	}
	r, closeFn, err := source.Decompressor(engine.ContextReader(ctx, rc), kind)
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	return r, func() { closeFn(); rc.Close() }, nil
}

func captureLayer(ctx context.Context, st source.Store, w *archive.Writer, ls source.Layer, diffID hashing.Digest, opts Options) (*layerDone, error) {
	rc, _, err := st.Open(ls.Name)
	if err != nil {
		return nil, err
	}
	var head [4]byte
	n, _ := io.ReadFull(rc, head[:])
	rc.Close()
	kind := source.Compression(head[:n])
	size := ls.Size
	rawDigest := ls.Digest
	var maxOut int64
	if kind != "" && opts.MaxExpansion > 0 {
		maxOut = max(ls.Size*opts.MaxExpansion, 64<<20)
	}
	var mismatch []string // what did not match, with KeepMismatched
	var claimed hashing.Digest
	mismatched := func(format string, a ...any) error {
		if !opts.KeepMismatched {
			return fmt.Errorf("%w: "+format+" (--keep-mismatched keeps it, flagged)", append([]any{ErrDigestMismatch}, a...)...)
		}
		mismatch = append(mismatch, fmt.Sprintf(format, a...))
		return nil
	}
	if kind != "" || !ls.Digest.IsZero() && ls.Digest != diffID || opts.KeepMismatched {
		// A compressed layer's size is only known once it is decompressed,
		// and a tar header needs it first: one pass to measure and check,
		// one to store. The compressed bytes are hashed as they are
		// decompressed, so the first pass checks the source's digest too.
		rc, _, err := st.Open(ls.Name)
		if err != nil {
			return nil, err
		}
		raw := hashing.NewMulti(false, false)
		tee := io.TeeReader(engine.ContextReader(ctx, rc), raw)
		r, closeFn, err := source.Decompressor(tee, kind)
		if err != nil {
			rc.Close()
			return nil, err
		}
		lim := &source.LimitExpansion{R: r, Max: maxOut}
		h := hashing.NewMulti(false, false)
		_, err = io.Copy(h, lim)
		if err == nil {
			_, err = io.Copy(io.Discard, tee) // whatever follows the stream
		}
		closeFn()
		rc.Close()
		if errors.Is(err, ErrBomb) {
			return nil, fmt.Errorf("%w: %s expands past %d bytes from %d (limit %dx; --max-expansion 0 lifts it)", ErrBomb, kind, maxOut, ls.Size, opts.MaxExpansion)
		}
		if err != nil {
			return nil, fmt.Errorf("decompressing (%s): %w", kind, err)
		}
		rawDigest = raw.SHA256()
		if kind != "" && !ls.Digest.IsZero() && raw.SHA256() != ls.Digest {
			if err := mismatched("stored bytes have digest %s, the manifest says %s", raw.SHA256(), ls.Digest); err != nil {
				return nil, err
			}
		}
		if kind == "" && !ls.Digest.IsZero() && h.SHA256() != ls.Digest {
			if err := mismatched("bytes have digest %s, the manifest says %s", h.SHA256(), ls.Digest); err != nil {
				return nil, err
			}
		}
		if h.SHA256() != diffID {
			if err := mismatched("uncompressed content has digest %s, the config's diff_id is %s", h.SHA256(), diffID); err != nil {
				return nil, err
			}
		}
		size = h.Size()
		if len(mismatch) > 0 {
			// Kept as found: stored under the digest of what is there.
			claimed, diffID = diffID, h.SHA256()
		}
	}
	r, closeFn, err := openLayer(ctx, st, ls, kind)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	done, err := storeLayer(ctx, r, size, diffID, w, opts, opts.maxSparse(size))
	if errors.Is(err, ErrDigestMismatch) && !opts.ownLayer && !opts.KeepMismatched {
		return nil, fmt.Errorf("%w (--keep-mismatched keeps it, flagged)", err)
	}
	if err != nil {
		return nil, err
	}
	if len(mismatch) > 0 {
		done.layer.DiffID = claimed
		for _, m := range mismatch {
			done.anomalies = append(done.anomalies, manifest.Anomaly{Kind: "layer-digest-mismatch",
				Detail: m + ": kept as found (--keep-mismatched), stored as " + diffID.String()})
		}
	}
	// Where the layer came from: its digest and media type as the source
	// had them (a legacy tarball's uncompressed layer.tar: its diff_id).
	l := &done.layer
	l.SourceDigest, l.SourceMediaType, l.SourceURLs, l.SourceSize = rawDigest, string(ls.MediaType), ls.URLs, ls.Size
	if l.SourceDigest.IsZero() && kind == "" {
		l.SourceDigest = diffID
	}
	if l.SourceMediaType == "" && kind != "" {
		l.SourceMediaType = "tar+" + kind
	}
	return done, nil
}

// captureFileLayer stores the uncompressed layer tar at path (a
// container's changes, a volume; size bytes of digest sum) through the
// same checks as an image's layers; name names it in messages.
func captureFileLayer(ctx context.Context, path, name string, size int64, sum hashing.Digest, w *archive.Writer, opts Options) (*layerDone, error) {
	// sum was just taken of these very bytes: a mismatch is a change
	// while they were read, nothing to keep
	opts.KeepMismatched, opts.ownLayer = false, true
	return captureLayer(ctx, source.FileStore(path), w, source.Layer{Name: name, Size: size, Digest: sum}, sum, opts)
}

// storeLayer writes exactly size bytes of an uncompressed layer from r as
// its blob, with its file index, and checks the result against diffID.
func storeLayer(ctx context.Context, r io.Reader, size int64, diffID hashing.Digest, w *archive.Writer, opts Options, maxSparse int64) (*layerDone, error) {
	keep := opts.keepIndexes
	name := manifest.BlobName(diffID)
	if w.Has(name) {
		return nil, fmt.Errorf("layer %s stored twice", diffID)
	}
	if err := w.Begin(name, size); err != nil {
		return nil, err
	}
	b := &fileindex.IndexBuilder{TempDir: w.TempDir(), MaxStrings: opts.MaxIndexStrings}
	defer b.Close()
	var (
		built *fileindex.Built
		berr  error
	)
	got, err := pipeLayer(ctx, r, size, w, b, maxSparse, func() { built, berr = b.Resolve(size) })
	defer func() {
		if built != nil {
			built.Close()
		}
	}()
	if errors.Is(err, fileindex.ErrTooSparse) {
		return nil, fmt.Errorf("%w (at most %d bytes for a layer of %d; --max-expansion 0 lifts it)", err, maxSparse, size)
	}
	if err != nil {
		return nil, fmt.Errorf("reading layer: %w", err)
	}
	if got != size {
		return nil, fmt.Errorf("%w: layer changed while being read: %d bytes, expected %d", ErrDigestMismatch, got, size)
	}
	e, err := w.End()
	if err != nil {
		return nil, err
	}
	if e.SHA256 != diffID {
		return nil, fmt.Errorf("%w: content has digest %s, the config's diff_id is %s", ErrDigestMismatch, e.SHA256, diffID)
	}
	if berr != nil {
		return nil, fmt.Errorf("indexing: %w", berr)
	}
	// The index: whole in memory up to keepIndexMax, else streamed into
	// the archive from the resolved entries (and, when it is kept for a
	// container's change list, read in pages from a temp file).
	var ix *fileindex.Index
	var ie manifest.Entry
	if built.Size <= keepIndexMax {
		ib, err := built.Bytes()
		if err != nil {
			return nil, fmt.Errorf("indexing: %w", err)
		}
		if ie, err = w.Add(manifest.IndexName(diffID), ib); err != nil {
			return nil, err
		}
		if ix, err = fileindex.ParseIndex(ib); err != nil {
			return nil, fmt.Errorf("indexing: %w", err)
		}
	} else {
		if err := w.Begin(manifest.IndexName(diffID), built.Size); err != nil {
			return nil, err
		}
		if _, err := built.WriteTo(w); err != nil {
			return nil, fmt.Errorf("indexing: %w", err)
		}
		if ie, err = w.End(); err != nil {
			return nil, err
		}
		if keep {
			if ix, err = built.Paged(); err != nil {
				return nil, fmt.Errorf("indexing: %w", err)
			}
		}
	}
	l := manifest.Layer{
		Descriptor: manifest.Descriptor{MediaType: MediaTypeLayer, Digest: diffID, Size: size},
		Index:      manifest.Descriptor{MediaType: "application/vnd.amber.file-index.v1", Digest: ie.SHA256, Size: ie.Size},
		Files:      built.Files,
		MerkleRoot: built.Root,
		Trailing:   b.Trailing,
	}
	return &layerDone{layer: l, anomalies: b.Anomalies, index: ix}, nil
}
