package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/hashing"
)

// More errors of a registry's answers (ErrAuth and ErrNotFound are in
// errors.go, ErrNotEvidence in blob.go).
var (
	// ErrUnreachable: no answer from the registry (refused, reset, timed
	// out, TLS failure).
	ErrUnreachable = errors.New("registry unreachable")
	// ErrAltered: a blob the registry serves is not the bytes of its
	// digest (changed or truncated in the registry or on the way).
	ErrAltered = errors.New("altered in the registry")
)

// Config is the evidence artifact's config blob (MediaTypeConfig).
type Config struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	Version string `json:"amber_version"`
}

// PushFile is a sidecar pushed as a layer titled with its file name.
type PushFile struct {
	Path      string
	Title     string
	MediaType string
}

// PushRequest is what Push uploads.
type PushRequest struct {
	// Archive is the sealed archive's path; SHA256 and Size its digest and
	// size (checked by the caller: the registry checks the bytes against
	// SHA256 when the upload ends).
	Archive string
	SHA256  hashing.Digest
	Size    int64
	// Sidecars are pushed after the archive, in order.
	Sidecars []PushFile
	Config   Config
	// Annotations of the manifest.
	Annotations map[string]string
	// ArchivePresent: the registry must already hold the archive blob
	// (amber push --custody): checked with a HEAD, never uploaded.
	ArchivePresent bool
	// Progress is called with archive bytes uploaded so far.
	Progress func(done, total int64)
	// Ready, when set, is asked after every blob is in the registry and
	// before the manifest is put: an error stops the push with no tag
	// (amber push verifies the archive while it uploads).
	Ready func() error
}

// Pushed is the outcome of Push.
type Pushed struct {
	Registry   string    `json:"registry"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Digest     v1.Hash   `json:"digest"`
	Size       int64     `json:"manifest_size"`
	Skipped    bool      `json:"archive_already_present"`
	Manifest   []byte    `json:"-"`
	Layers     []v1.Hash `json:"-"`
}

// ParseTag parses the destination of a push, docker://HOST/REPO:TAG: the
// tag must be named (a default "latest" would silently replace another
// examiner's evidence).
func ParseTag(s string, opts Options) (name.Tag, error) {
	ref, err := ParseRef(s, opts)
	if err != nil {
		return name.Tag{}, err
	}
	t, ok := ref.(name.Tag)
	rest := strings.TrimPrefix(s, Prefix)
	if !ok || !strings.Contains(rest[strings.LastIndex(rest, "/")+1:], ":") {
		return name.Tag{}, fmt.Errorf("%w %q: name the tag to push to (docker://HOST/REPO:TAG)", ErrRef, s)
	}
	return t, nil
}

// fileLayer is the archive as a layer: read from its file each time it is
// asked for, never held in memory.
type fileLayer struct {
	path     string
	digest   v1.Hash
	size     int64
	progress func(done, total int64)
}

func (l *fileLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)     { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(MediaTypeArchive), nil
}
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	if l.progress == nil {
		return f, nil
	}
	return &progressReader{f: f, total: l.size, fn: l.progress}, nil
}

type progressReader struct {
	f     *os.File
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}

func (p *progressReader) Close() error { return p.f.Close() }

// rawManifest is a manifest put as it is.
type rawManifest struct{ b []byte }

func (m rawManifest) RawManifest() ([]byte, error) { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

// Push uploads an archive and its sidecars to ref as an evidence
// artifact: blobs first, the manifest last, so that a push that fails
// leaves no tag.
func Push(ctx context.Context, ref name.Tag, req PushRequest, opts Options) (*Pushed, error) {
	repo := ref.Context()
	ropts := append(opts.Remote(), remote.WithContext(ctx))
	where := "docker://" + ref.Name()
	fail := func(what string, err error) error {
		return fmt.Errorf("push to %s: %s: %w", where, what, classify(repo, opts, err))
	}
	h := v1.Hash{Algorithm: "sha256", Hex: req.SHA256.Hex()}
	out := &Pushed{Registry: repo.RegistryStr(), Repository: repo.RepositoryStr(), Tag: ref.TagStr()}
	if req.ArchivePresent {
		l, err := remote.Layer(repo.Digest(h.String()), ropts...)
		if err != nil {
			return nil, fail("archive blob", err)
		}
		size, err := l.Size()
		if err != nil {
			return nil, fail("the archive blob "+h.String()+" (push the archive itself first, without --custody)", err)
		}
		if size != req.Size {
			return nil, fmt.Errorf("push to %s: %w: the registry's blob %s has %d bytes, the archive %d", where, ErrNotEvidence, h, size, req.Size)
		}
		out.Skipped = true
	} else {
		l := &fileLayer{path: req.Archive, digest: h, size: req.Size, progress: req.Progress}
		if err := remote.WriteLayer(repo, l, ropts...); err != nil {
			return nil, fail("uploading the archive", err)
		}
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Annotations:   req.Annotations,
	}
	m.Layers = append(m.Layers, v1.Descriptor{
		MediaType:   types.MediaType(MediaTypeArchive),
		Size:        req.Size,
		Digest:      h,
		Annotations: map[string]string{AnnotationTitle: req.Config.Name},
	})
	for _, s := range req.Sidecars {
		b, err := os.ReadFile(s.Path)
		if err != nil {
			return nil, fmt.Errorf("push to %s: sidecar: %w", where, err)
		}
		d, err := putBlob(repo, b, s.MediaType, ropts)
		if err != nil {
			return nil, fail("uploading "+s.Title, err)
		}
		d.Annotations = map[string]string{AnnotationTitle: s.Title}
		m.Layers = append(m.Layers, d)
	}
	cfg, err := json.Marshal(req.Config)
	if err != nil {
		return nil, err
	}
	m.Config, err = putBlob(repo, cfg, MediaTypeConfig, ropts)
	if err != nil {
		return nil, fail("uploading the config", err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if req.Ready != nil {
		if err := req.Ready(); err != nil {
			return nil, fmt.Errorf("push to %s: nothing tagged: %w", where, err)
		}
	}
	if err := remote.Put(ref, rawManifest{raw}, ropts...); err != nil {
		return nil, fail("putting the manifest", err)
	}
	out.Digest = v1.Hash{Algorithm: "sha256", Hex: hashing.Sum(raw).Hex()}
	out.Size = int64(len(raw))
	out.Manifest = raw
	for _, l := range m.Layers {
		out.Layers = append(out.Layers, l.Digest)
	}
	return out, nil
}

// putBlob uploads a small blob and returns its descriptor.
func putBlob(repo name.Repository, b []byte, mediaType string, ropts []remote.Option) (v1.Descriptor, error) {
	l := static.NewLayer(b, types.MediaType(mediaType))
	d, _ := l.Digest()
	if err := remote.WriteLayer(repo, l, ropts...); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: types.MediaType(mediaType), Size: int64(len(b)), Digest: d}, nil
}

// classify wraps a registry's error with the class a command's exit code
// tells (ErrAuth, ErrNotFound, ErrUnreachable); for a refusal it names
// the registry and the user it refused.
func classify(repo name.Repository, opts Options, err error) error {
	if errors.Is(err, ErrNotEvidence) || errors.Is(err, context.Canceled) {
		return err // already told, or stopped by the user
	}
	if r := refused(repo, opts, err); r != nil {
		return r
	}
	var te *transport.Error
	switch {
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.As(err, &te):
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %v", ErrNotFound, err)
			}
		}
		return err
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, repo.RegistryStr(), err)
	}
	return err
}

// refused tells a registry's refusal of the credentials (401, 403, or an
// UNAUTHORIZED or DENIED error code) as ErrAuth, naming the registry and
// the user it refused; nil for any other error.
func refused(repo name.Repository, opts Options, err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return nil
	}
	if te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%w: registry %s refused %s (%d %s): %v", ErrAuth, repo.RegistryStr(), whom(repo, opts), te.StatusCode, http.StatusText(te.StatusCode), err)
	}
	for _, d := range te.Errors {
		if d.Code == transport.UnauthorizedErrorCode || d.Code == transport.DeniedErrorCode {
			return fmt.Errorf("%w: registry %s refused %s: %v", ErrAuth, repo.RegistryStr(), whom(repo, opts), err)
		}
	}
	return nil
}

// whom names the user the keychain presents to the registry.
func whom(repo name.Repository, opts Options) string {
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	a, err := kc.Resolve(repo)
	if err != nil {
		return "the user of the Docker config"
	}
	cfg, err := a.Authorization()
	if err != nil || cfg == nil || cfg.Username == "" {
		if cfg != nil && (cfg.IdentityToken != "" || cfg.RegistryToken != "") {
			return "the token of the Docker config"
		}
		return "anonymous access (no credentials for it in the Docker config)"
	}
	return "user " + fmt.Sprintf("%q", cfg.Username)
}
