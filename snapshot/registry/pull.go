package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/hashing"
)

// MaxManifest (source.go) bounds an evidence manifest too.
const (
	// maxConfig and maxSidecar bound the small blobs read into memory.
	maxConfig  = 64 << 10
	maxSidecar = 256 << 20
	maxTagPage = 16 << 20
)

// Artifact is an evidence artifact's manifest, checked.
type Artifact struct {
	Ref      name.Reference
	Digest   v1.Hash
	Raw      []byte
	Manifest v1.Manifest
	Config   Config
	// Archive is the first layer; Sidecars the others, each titled with
	// its file name (checked: the archive's name and a sidecar suffix).
	Archive  v1.Descriptor
	Sidecars []v1.Descriptor
}

// boundedManifests refuses a manifest larger than MaxManifest before it
// is read whole (go-containerregistry allows 100 MiB).
type boundedManifests struct{ base http.RoundTripper }

var (
	errManifestSize = fmt.Errorf("%w: a manifest larger than %d bytes", ErrNotEvidence, MaxManifest)
	errTagPage      = fmt.Errorf("%w: a page of tags larger than %d bytes", ErrNotEvidence, maxTagPage)
)

func (b boundedManifests) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet {
		return resp, err
	}
	switch {
	case strings.Contains(req.URL.Path, "/manifests/"):
		if resp.ContentLength > MaxManifest {
			resp.Body.Close()
			return nil, errManifestSize
		}
		resp.Body = &boundedBody{r: resp.Body, left: MaxManifest, err: errManifestSize}
	case strings.HasSuffix(req.URL.Path, "/tags/list"):
		resp.Body = &boundedBody{r: resp.Body, left: maxTagPage, err: errTagPage}
	}
	return resp, nil
}

type boundedBody struct {
	r    io.ReadCloser
	left int64
	err  error
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, b.err
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.r.Close() }

// remote is the remote options with manifests bounded.
func (o Options) bounded(ctx context.Context) []remote.Option {
	o.Transport = boundedManifests{base: o.transport()}
	return append(o.Remote(), remote.WithContext(ctx))
}

// Resolve fetches ref's manifest (bounded) and checks that it is amber
// evidence: its types, its config, and its layers' titles.
func Resolve(ctx context.Context, ref name.Reference, opts Options) (*Artifact, error) {
	where := "docker://" + ref.Name()
	repo := ref.Context()
	ropts := opts.bounded(ctx)
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		if errors.Is(err, ErrNotEvidence) {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return nil, fmt.Errorf("%s: manifest: %w", where, classify(repo, opts, err))
	}
	if len(desc.Manifest) > MaxManifest {
		return nil, fmt.Errorf("%s: %w", where, errManifestSize)
	}
	a := &Artifact{Ref: ref, Digest: desc.Digest, Raw: desc.Manifest}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", where, ErrNotEvidence, fmt.Sprintf(format, args...))
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		return nil, bad("a %s, not an OCI image manifest", desc.MediaType)
	}
	if err := json.Unmarshal(desc.Manifest, &a.Manifest); err != nil {
		return nil, bad("manifest: %v", err)
	}
	m := &a.Manifest
	if m.ArtifactType != ArtifactType || m.Config.MediaType != MediaTypeConfig {
		return nil, bad("artifact type %q, config %q (want %s)", m.ArtifactType, m.Config.MediaType, ArtifactType)
	}
	if len(m.Layers) == 0 || m.Layers[0].MediaType != MediaTypeArchive {
		return nil, bad("its first layer is not the archive (%s)", MediaTypeArchive)
	}
	if len(m.Layers) > 64 {
		return nil, bad("%d layers", len(m.Layers))
	}
	cfg, err := fetchSmall(ctx, repo, m.Config, maxConfig, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", where, err)
	}
	if err := json.Unmarshal(cfg, &a.Config); err != nil {
		return nil, bad("config: %v", err)
	}
	a.Archive = m.Layers[0]
	if a.Archive.Digest.Algorithm != "sha256" || a.Archive.Digest.Hex != a.Config.SHA256 || a.Archive.Size != a.Config.Size || a.Archive.Size < 0 {
		return nil, bad("the archive layer (%s, %d bytes) is not the one its config names (sha256:%s, %d bytes)", a.Archive.Digest, a.Archive.Size, a.Config.SHA256, a.Config.Size)
	}
	if !safeName(a.Config.Name) {
		return nil, bad("archive name %q", a.Config.Name)
	}
	seen := map[string]bool{}
	for _, l := range m.Layers[1:] {
		t := l.Annotations[AnnotationTitle]
		if _, ok := SidecarSuffix(a.Config.Name, t); !ok || seen[t] {
			return nil, bad("a layer titled %q is no sidecar of %s, or a second one of that name", t, a.Config.Name)
		}
		seen[t] = true
		if l.Size < 0 || l.Size > maxSidecar {
			return nil, bad("sidecar %s of %d bytes", t, l.Size)
		}
		a.Sidecars = append(a.Sidecars, l)
	}
	return a, nil
}

// safeName: a plain file name, no directory, nothing a shell or terminal
// would read otherwise.
func safeName(s string) bool {
	return s != "" && len(s) <= 255 && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00") && filepath.Base(s) == s
}

// SidecarSuffix says whether title is a sidecar of the archive called
// name (NAME.sha256, .md5, .sha1, .custody.jsonl, a signature NAME*.sig,
// the in-toto signatures NAME.intoto.jsonl, a timestamp NAME*.tsr) and
// returns its suffix.
func SidecarSuffix(name, title string) (string, bool) {
	suf, ok := strings.CutPrefix(title, name)
	if !ok || !safeName(title) {
		return "", false
	}
	switch suf {
	case ".sha256", ".md5", ".sha1", ".custody.jsonl", ".intoto.jsonl":
		return suf, true
	}
	if strings.HasPrefix(suf, ".") && (strings.HasSuffix(suf, ".sig") || strings.HasSuffix(suf, ".tsr")) {
		return suf, true
	}
	return "", false
}

// fetchSmall reads a small blob whole, bounded, its digest checked.
func fetchSmall(ctx context.Context, repo name.Repository, d v1.Descriptor, limit int64, opts Options) ([]byte, error) {
	if d.Size < 0 || d.Size > limit || d.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("%w: blob %s of %d bytes (at most %d)", ErrNotEvidence, d.Digest, d.Size, limit)
	}
	rc, err := openBlob(ctx, repo, d.Digest, opts)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, blobErr(repo, opts, err))
	}
	if int64(len(b)) != d.Size || hashing.Sum(b).Hex() != d.Digest.Hex {
		return nil, fmt.Errorf("%w: the registry's blob %s is not the bytes of that digest (%d bytes, want %d)", ErrAltered, d.Digest, len(b), d.Size)
	}
	return b, nil
}

func openBlob(ctx context.Context, repo name.Repository, h v1.Hash, opts Options) (io.ReadCloser, error) {
	l, err := remote.Layer(repo.Digest(h.String()), opts.bounded(ctx)...)
	if err != nil {
		return nil, classify(repo, opts, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, classify(repo, opts, err))
	}
	return rc, nil
}

// Pulled is the outcome of Pull.
type Pulled struct {
	Path     string   `json:"path"`
	Size     int64    `json:"size"`
	SHA256   string   `json:"sha256"`
	Manifest string   `json:"manifest_digest"`
	Sidecars []string `json:"sidecars"`
	// Annotations of the manifest (case, exhibit, examiner, ...).
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ErrExists reports an output path that exists: pull never overwrites.
var ErrExists = errors.New("exists")

// Pull downloads the evidence artifact a to out and its sidecars beside
// it (out + each sidecar's suffix). The archive is written to a temporary
// file, hashed while it downloads, and takes its name only when it is
// whole and its SHA-256 is the layer's digest; a sidecar is written only
// when its digest holds. Nothing that exists is overwritten.
func Pull(ctx context.Context, a *Artifact, out string, opts Options, progress func(done, total int64)) (*Pulled, error) {
	where := "docker://" + a.Ref.Name()
	repo := a.Ref.Context()
	p := &Pulled{Path: out, Size: a.Archive.Size, SHA256: a.Archive.Digest.Hex, Manifest: a.Digest.String(), Annotations: a.Manifest.Annotations}
	var names []string
	for _, s := range a.Sidecars {
		suf, _ := SidecarSuffix(a.Config.Name, s.Annotations[AnnotationTitle])
		names = append(names, out+suf)
	}
	for _, n := range append([]string{out}, names...) {
		if _, err := os.Lstat(n); err == nil {
			return nil, fmt.Errorf("%w: %s (pull never overwrites)", ErrExists, n)
		}
	}
	// The sidecars first, into memory (small, bounded): a changed one
	// stops the pull before the archive's long download.
	side := make([][]byte, len(a.Sidecars))
	for i, s := range a.Sidecars {
		b, err := fetchSmall(ctx, repo, s, maxSidecar, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: sidecar %s: %w", where, s.Annotations[AnnotationTitle], err)
		}
		side[i] = b
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".pull-*")
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", where, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	rc, err := openBlob(ctx, repo, a.Archive.Digest, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: archive: %w", where, err)
	}
	defer rc.Close()
	h := sha256.New()
	w := io.MultiWriter(tmp, h)
	var src io.Reader = io.LimitReader(rc, a.Archive.Size+1)
	if progress != nil {
		src = &countReader{r: src, total: a.Archive.Size, fn: progress}
	}
	n, err := io.Copy(w, src)
	if err != nil {
		return nil, fmt.Errorf("%s: downloading the archive %s: %w", where, a.Archive.Digest, blobErr(repo, opts, err))
	}
	if got := hashing.FromHash(h).Hex(); n != a.Archive.Size || got != a.Archive.Digest.Hex {
		return nil, fmt.Errorf("%s: %w: the registry's archive blob is not the bytes of %s (%d bytes of sha256:%s; want %d)", where, ErrAltered, a.Archive.Digest, n, got, a.Archive.Size)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("pull %s: %w", where, err)
	}
	// Link, not rename: it fails if out appeared meanwhile.
	if err := os.Link(tmp.Name(), out); err != nil {
		return nil, fmt.Errorf("pull %s: %w", where, err)
	}
	for i, n := range names {
		if err := writeNew(n, side[i]); err != nil {
			return p, fmt.Errorf("pull %s: %w", where, err)
		}
		p.Sidecars = append(p.Sidecars, n)
	}
	return p, nil
}

// blobErr classifies an error reading a blob: go-containerregistry's
// verifying reader (internal, so matched by its text) finds bytes that
// are not their digest's.
func blobErr(repo name.Repository, opts Options, err error) error {
	if strings.Contains(err.Error(), "error verifying") {
		return fmt.Errorf("%w: %v", ErrAltered, err)
	}
	return classify(repo, opts, err)
}

func writeNew(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, bytes.NewReader(b)); err != nil {
		f.Close()
		os.Remove(p)
		return err
	}
	return f.Close()
}

type countReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.done += int64(n)
	c.fn(c.done, c.total)
	return n, err
}
