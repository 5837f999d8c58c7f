package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/snapshot/source"
)

// An image in a registry as a capture source. The registry is presented
// to snapshot/source as an OCI layout — an index.json amber writes,
// naming what the reference resolved to, and blobs/sha256/<hex> — so that
// the image goes through the very walk and checks of an image file (the
// layout's bounds, a config checked against its digest, the layers against
// their digests and diff_ids in the capture's one path) and is offered as
// a v1.ImageIndex like any source. Only the talking is here: manifests
// fetched by reference (bounded, checked against the digest asked for)
// before the walk, since the platform is chosen among them; configs and
// layers fetched from the blob endpoint when the capture reads them.
//
// Why not go-containerregistry's remote.Image: its layers verify their
// digest as they are read and fail at the end, while a capture told to
// --keep-mismatched stores a changed layer as found, and it reads a
// manifest of up to 100 MiB where amber takes 4 MiB.

// Bounds of what a registry may answer.
const (
	// MaxManifest bounds a manifest or an index (real ones are a few KiB;
	// distribution itself refuses a manifest over 4 MiB).
	MaxManifest = 4 << 20
	// MaxConfig bounds an image config: source.MaxJSON, as for a file.
	MaxConfig = source.MaxJSON
	maxDepth  = 4
)

// SourceOptions say which images of a reference a capture takes.
type SourceOptions struct {
	Options
	// Platform is os/architecture[/variant] (""; this host's), the image
	// taken from a multi-platform index.
	Platform string
	// AllPlatforms takes every image the index lists.
	AllPlatforms bool
	// SpoolDir holds the one blob being captured, unlinked ("": the
	// system's temp dir): a compressed layer is read twice (measured,
	// then stored) and is fetched once.
	SpoolDir string
}

// HostPlatform is this host's platform, as --platform defaults to it.
func HostPlatform() string { return runtime.GOOS + "/" + runtime.GOARCH }

var manifestTypes = []types.MediaType{types.OCIManifestSchema1, types.OCIImageIndex, types.DockerManifestSchema2, types.DockerManifestList}

func isIndex(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

func isManifest(mt types.MediaType) bool {
	return mt == types.OCIManifestSchema1 || mt == types.DockerManifestSchema2
}

// OpenSource resolves ref (docker://HOST/REPO:TAG or @sha256:...) and
// opens what it names as a capture source: an image, or of an index the
// image of opts.Platform (or every image, AllPlatforms). The source's
// Path is the reference with the digest it resolved to
// (docker://HOST/REPO:TAG@sha256:...: the index's, for an index); each
// image records its own manifest's digest (Image.SourceManifest).
func OpenSource(ctx context.Context, ref string, opts SourceOptions) (*source.Source, error) {
	r, err := ParseRef(ref, opts.Options)
	if err != nil {
		return nil, err
	}
	st := &remoteStore{ctx: ctx, repo: r.Context(), files: map[string][]byte{}, blobs: map[string]blobInfo{}, spoolDir: opts.SpoolDir, opts: opts.Options}
	if err := st.connect(); err != nil {
		return nil, err
	}
	src, err := st.resolve(r, opts)
	if err != nil {
		st.Close()
		return nil, err
	}
	return src, nil
}

// Opener is OpenSource as a capture request's OpenRef: a source that is
// no registry reference is left to be opened as a file (nil, nil).
func (o SourceOptions) Opener() func(context.Context, string) (*source.Source, error) {
	return func(ctx context.Context, s string) (*source.Source, error) {
		if !IsRef(s) {
			return nil, nil
		}
		return OpenSource(ctx, s, o)
	}
}

type blobInfo struct {
	size    int64
	foreign bool
}

// remoteStore is a source.Store over one repository of a registry.
type remoteStore struct {
	ctx      context.Context
	repo     name.Repository
	opts     Options
	client   *http.Client
	files    map[string][]byte   // index.json and the manifests fetched
	blobs    map[string]blobInfo // blobs the manifests name, by store name
	spoolDir string

	mu        sync.Mutex
	spool     *os.File
	spoolPath string // set while the spool could not be unlinked
	spoolName string // the blob the spool holds, once whole
	gen       int    // counts the blobs the spool has held
}

func (st *remoteStore) where() string {
	return fmt.Sprintf("registry %s, repository %s", st.repo.RegistryStr(), st.repo.RepositoryStr())
}

// connect finds the credentials and the scheme (the registry's ping),
// as every request after it uses them.
func (st *remoteStore) connect() error {
	kc := st.opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	auth, err := kc.Resolve(st.repo)
	if err != nil {
		return fmt.Errorf("registry %s: reading credentials: %w", st.repo.RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(st.ctx, st.repo.Registry, auth, st.opts.transport(), []string{st.repo.Scope(transport.PullScope)})
	if err != nil {
		return st.classify(err, "connecting")
	}
	if st.opts.UserAgent != "" {
		rt = transport.NewUserAgent(rt, st.opts.UserAgent)
	}
	st.client = &http.Client{Transport: rt, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return fmt.Errorf("%s: more than 10 redirects (a loop?)", st.where())
		}
		return nil
	}}
	return nil
}

// classify names the registry in err and tells a refusal (ErrAuth) and
// what is not there (ErrNotFound) from the rest.
func (st *remoteStore) classify(err error, what string) error {
	if st.ctx.Err() != nil {
		return st.ctx.Err()
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w: %s: %s: %d %s (check the Docker config's credentials for %s): %v", ErrAuth, st.where(), what, te.StatusCode, http.StatusText(te.StatusCode), st.repo.RegistryStr(), err)
		case te.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %s: %s: %v", ErrNotFound, st.where(), what, err)
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("%w: %s: %s: %v", ErrAuth, st.where(), what, err)
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %s: %s: %v", ErrNotFound, st.where(), what, err)
			}
		}
	}
	return fmt.Errorf("%s: %s: %w", st.where(), what, err)
}

// get sends a GET for /v2/REPO/KIND/ID and checks the answer is 200.
func (st *remoteStore) get(kind, id string, accept []types.MediaType) (*http.Response, error) {
	u := fmt.Sprintf("%s://%s/v2/%s/%s/%s", st.repo.Scheme(), st.repo.RegistryStr(), st.repo.RepositoryStr(), kind, id)
	req, err := http.NewRequestWithContext(st.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st.where(), err)
	}
	var as []string
	for _, mt := range accept {
		as = append(as, string(mt))
	}
	if len(as) > 0 {
		req.Header.Set("Accept", strings.Join(as, ","))
	}
	resp, err := st.client.Do(req)
	if err != nil {
		return nil, st.classify(err, "GET "+kind+"/"+id)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, st.classify(err, "GET "+kind+"/"+id)
	}
	return resp, nil
}

// fetchManifest reads a manifest or index by tag or digest, at most
// MaxManifest bytes, checked against the digest when asked by digest.
func (st *remoteStore) fetchManifest(id string, want hashing.Digest) ([]byte, types.MediaType, hashing.Digest, error) {
	resp, err := st.get("manifests", id, manifestTypes)
	if err != nil {
		return nil, "", hashing.Digest{}, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > MaxManifest {
		return nil, "", hashing.Digest{}, fmt.Errorf("%w: %s: manifest %s is %d bytes; refusing a manifest over %d", source.ErrSource, st.where(), id, resp.ContentLength, MaxManifest)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifest+1))
	if err != nil {
		return nil, "", hashing.Digest{}, st.classify(err, "reading manifest "+id)
	}
	if len(b) > MaxManifest {
		return nil, "", hashing.Digest{}, fmt.Errorf("%w: %s: manifest %s is over %d bytes; refused", source.ErrSource, st.where(), id, MaxManifest)
	}
	got := hashing.Sum(b)
	if !want.IsZero() && got != want {
		return nil, "", got, fmt.Errorf("%w: %s served manifest %s with digest %s", source.ErrSource, st.where(), want, got)
	}
	var doc struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, "", got, fmt.Errorf("%w: %s: manifest %s is not JSON: %v", source.ErrSource, st.where(), id, err)
	}
	if doc.SchemaVersion == 1 {
		return nil, "", got, fmt.Errorf("%w: %s: manifest %s is Docker schema 1 (deprecated, unsigned layers); amber reads schema 2 and OCI", source.ErrSource, st.where(), id)
	}
	// The document's own type first: a Content-Type is often generic.
	mt := doc.MediaType
	if mt == "" {
		mt = types.MediaType(strings.TrimSpace(strings.Split(resp.Header.Get("Content-Type"), ";")[0]))
	}
	if mt == "" || !isIndex(mt) && !isManifest(mt) {
		if doc.Manifests != nil {
			mt = types.OCIImageIndex
		} else {
			mt = types.OCIManifestSchema1
		}
	}
	return b, mt, got, nil
}

// walkDesc is one descriptor of an index, as the layout's index.json
// lists it.
type walkDesc struct {
	MediaType   types.MediaType   `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *v1.Platform      `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// resolve fetches what r names and the manifests the capture will take,
// and writes the layout's index.json listing them.
func (st *remoteStore) resolve(r name.Reference, opts SourceOptions) (*source.Source, error) {
	var want hashing.Digest
	if d, ok := r.(name.Digest); ok {
		var err error
		if want, err = hashing.Parse(d.DigestStr()); err != nil || !strings.HasPrefix(d.DigestStr(), "sha256:") {
			return nil, fmt.Errorf("%w %q: only sha256 digests", ErrRef, r)
		}
	}
	b, mt, top, err := st.fetchManifest(r.Identifier(), want)
	if err != nil {
		return nil, err
	}
	refName := r.Context().Name()
	if t, ok := r.(name.Tag); ok {
		refName += ":" + t.TagStr()
	}
	ann := map[string]string{source.AnnotationRefName: refName}
	topDesc := walkDesc{MediaType: mt, Digest: top.String(), Size: int64(len(b)), Annotations: ann}
	st.files[blobName(top)] = b
	var listed []walkDesc
	switch {
	case isManifest(mt):
		if err := st.registerManifest(b, top); err != nil {
			return nil, err
		}
		listed = []walkDesc{topDesc}
	case opts.AllPlatforms:
		n := 0
		if err := st.fetchAll(b, top, 0, &n); err != nil {
			return nil, err
		}
		listed = []walkDesc{topDesc}
	default:
		plat := opts.Platform
		if plat == "" {
			plat = HostPlatform()
		}
		d, err := st.choose(b, top, plat, 0)
		if err != nil {
			return nil, err
		}
		d.Annotations = ann
		listed = []walkDesc{d}
	}
	idx, err := json.Marshal(struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     []walkDesc      `json:"manifests"`
	}{2, types.OCIImageIndex, listed})
	if err != nil {
		return nil, err
	}
	st.files["index.json"] = idx
	path := Prefix + refName + "@" + top.String()
	if _, ok := r.(name.Digest); ok {
		path = Prefix + r.Context().Name() + "@" + top.String()
	}
	return source.OpenStore(st, st, source.KindRegistry, path)
}

func blobName(d hashing.Digest) string { return "blobs/sha256/" + d.Hex() }

// indexOf parses an index's descriptors.
func (st *remoteStore) indexOf(b []byte, d hashing.Digest) ([]walkDesc, error) {
	var idx struct {
		Manifests []walkDesc `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%w: %s: index %s: %v", source.ErrSource, st.where(), d, err)
	}
	if len(idx.Manifests) > source.MaxImages {
		return nil, fmt.Errorf("%w: %s: index %s lists %d manifests; refusing more than %d", source.ErrSource, st.where(), d, len(idx.Manifests), source.MaxImages)
	}
	return idx.Manifests, nil
}

// fetchChild fetches a manifest or index an index lists, by its digest;
// false when the registry does not hold it (the walk records it as not
// captured, as it does for a layout that lacks it).
func (st *remoteStore) fetchChild(c walkDesc) ([]byte, hashing.Digest, bool, error) {
	d, err := hashing.Parse(c.Digest)
	if err != nil || !strings.HasPrefix(c.Digest, "sha256:") {
		return nil, d, false, nil // the walk says why it is not captured
	}
	if c.Size > MaxManifest {
		return nil, d, false, fmt.Errorf("%w: %s: the index lists manifest %s of %d bytes; refusing a manifest over %d", source.ErrSource, st.where(), c.Digest, c.Size, MaxManifest)
	}
	if _, ok := st.files[blobName(d)]; ok {
		return st.files[blobName(d)], d, true, nil
	}
	b, _, _, err := st.fetchManifest(c.Digest, d)
	if errors.Is(err, ErrNotFound) {
		return nil, d, false, nil
	}
	if err != nil {
		return nil, d, false, err
	}
	st.files[blobName(d)] = b
	return b, d, true, nil
}

// fetchAll fetches every manifest and index an index lists (bounded in
// depth and count).
func (st *remoteStore) fetchAll(b []byte, d hashing.Digest, depth int, n *int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: %s: image indexes nested too deep", source.ErrSource, st.where())
	}
	children, err := st.indexOf(b, d)
	if err != nil {
		return err
	}
	for _, c := range children {
		if !isIndex(c.MediaType) && !isManifest(c.MediaType) {
			continue
		}
		if *n++; *n > source.MaxImages {
			return fmt.Errorf("%w: %s: the index lists more than %d manifests; refusing", source.ErrSource, st.where(), source.MaxImages)
		}
		cb, cd, ok, err := st.fetchChild(c)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if isIndex(c.MediaType) {
			err = st.fetchAll(cb, cd, depth+1, n)
		} else {
			err = st.registerManifest(cb, cd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// choose finds the image of platform plat in an index (or one it
// nests), fetches it and returns its descriptor.
func (st *remoteStore) choose(b []byte, d hashing.Digest, plat string, depth int) (walkDesc, error) {
	goos, arch, variant, err := ParsePlatform(plat)
	if err != nil {
		return walkDesc{}, err
	}
	var have []string
	var find func(b []byte, d hashing.Digest, depth int) (walkDesc, bool, error)
	find = func(b []byte, d hashing.Digest, depth int) (walkDesc, bool, error) {
		if depth > maxDepth {
			return walkDesc{}, false, fmt.Errorf("%w: %s: image indexes nested too deep", source.ErrSource, st.where())
		}
		children, err := st.indexOf(b, d)
		if err != nil {
			return walkDesc{}, false, err
		}
		for _, c := range children {
			switch {
			case isIndex(c.MediaType):
				cb, cd, ok, err := st.fetchChild(c)
				if err != nil {
					return walkDesc{}, false, err
				}
				if !ok {
					continue
				}
				if w, ok, err := find(cb, cd, depth+1); ok || err != nil {
					return w, ok, err
				}
			case isManifest(c.MediaType) && c.Platform != nil:
				p := source.PlatformString(c.Platform)
				if c.Platform.OS != goos || c.Platform.Architecture != arch || variant != "" && c.Platform.Variant != variant {
					if c.Platform.OS != "unknown" { // BuildKit's attestations
						have = append(have, p)
					}
					continue
				}
				cb, cd, ok, err := st.fetchChild(c)
				if err != nil {
					return walkDesc{}, false, err
				}
				if !ok {
					return walkDesc{}, false, fmt.Errorf("%w: %s: the %s image %s is listed but not in the registry", ErrNotFound, st.where(), p, c.Digest)
				}
				if err := st.registerManifest(cb, cd); err != nil {
					return walkDesc{}, false, err
				}
				return c, true, nil
			}
		}
		return walkDesc{}, false, nil
	}
	w, ok, err := find(b, d, depth)
	if err != nil {
		return w, err
	}
	if !ok {
		return w, fmt.Errorf("%w: %s: index %s has no %s image (it has: %s); choose with --platform, or take all with --all-platforms", ErrNotFound, st.where(), d, plat, strings.Join(have, ", "))
	}
	return w, nil
}

// ParsePlatform splits os/architecture[/variant].
func ParsePlatform(p string) (goos, arch, variant string, err error) {
	parts := strings.Split(p, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", fmt.Errorf("platform %q: use os/architecture[/variant], e.g. linux/arm64 or linux/arm/v7", p)
	}
	if len(parts) == 3 {
		variant = parts[2]
	}
	return parts[0], parts[1], variant, nil
}

// registerManifest learns the sizes of the blobs an image manifest names,
// and which are foreign (never fetched: recorded, as a docker save
// tarball's foreign layers are).
func (st *remoteStore) registerManifest(b []byte, d hashing.Digest) error {
	var m struct {
		Config walkDesc   `json:"config"`
		Layers []walkDesc `json:"layers"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%w: %s: manifest %s: %v", source.ErrSource, st.where(), d, err)
	}
	for i, l := range append([]walkDesc{m.Config}, m.Layers...) {
		bd, err := hashing.Parse(l.Digest)
		if err != nil || !strings.HasPrefix(l.Digest, "sha256:") || l.Size < 0 {
			continue // the walk refuses it, naming it
		}
		foreign := i > 0 && (strings.Contains(string(l.MediaType), ".foreign.") || strings.Contains(string(l.MediaType), ".nondistributable."))
		st.blobs[blobName(bd)] = blobInfo{size: l.Size, foreign: foreign}
	}
	return nil
}

// Open serves index.json and the manifests from memory, and a blob the
// manifests name from the registry when it is first read.
func (st *remoteStore) Open(n string) (io.ReadCloser, int64, error) {
	if b, ok := st.files[n]; ok {
		return io.NopCloser(strings.NewReader(string(b))), int64(len(b)), nil
	}
	bi, ok := st.blobs[n]
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s: no manifest of the capture names %s: %w", source.ErrSource, st.where(), n, source.ErrNoMember)
	}
	if bi.foreign {
		return nil, 0, fmt.Errorf("%w: %s: %s is a foreign layer, not fetched: %w", source.ErrSource, st.where(), n, source.ErrNoMember)
	}
	return &lazyBlob{st: st, name: n, size: bi.size}, bi.size, nil
}

// Exists reports what Open serves.
func (st *remoteStore) Exists(n string) bool {
	if _, ok := st.files[n]; ok {
		return true
	}
	bi, ok := st.blobs[n]
	return ok && !bi.foreign
}

// Key is the name: every blob has one.
func (st *remoteStore) Key(n string) string { return n }

// Close drops the spooled blob.
func (st *remoteStore) Close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.spool != nil {
		st.spool.Close()
		st.spool = nil
	}
	if st.spoolPath != "" {
		os.Remove(st.spoolPath)
		st.spoolPath = ""
	}
	return nil
}

// lazyBlob fetches its blob on the first Read: the walk opens every layer
// for its size and reads none.
type lazyBlob struct {
	st   *remoteStore
	name string
	size int64
	r    *io.SectionReader
	gen  int
}

func (l *lazyBlob) Read(p []byte) (int, error) {
	if l.r == nil {
		f, gen, err := l.st.fetchBlob(l.name, l.size)
		if err != nil {
			return 0, err
		}
		l.r, l.gen = io.NewSectionReader(f, 0, l.size), gen
	}
	// The spool holds one blob: a reader of a blob it no longer holds
	// fails rather than read another's bytes.
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	if l.st.gen != l.gen {
		return 0, fmt.Errorf("%s: blob %s was read again while another was fetched", l.st.where(), l.name)
	}
	return l.r.Read(p)
}

func (l *lazyBlob) Close() error { return nil }

// fetchBlob downloads a blob into the spool (one blob at a time: the
// capture reads a layer's opens one after another), exactly its
// descriptor's size. Its digest is not checked here: the capture checks
// every layer against its digest and diff_id, and keeps a changed one
// flagged when told to (--keep-mismatched); a config is checked by the
// walk.
func (st *remoteStore) fetchBlob(n string, size int64) (*os.File, int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.spoolName == n && st.spool != nil {
		return st.spool, st.gen, nil
	}
	if st.spool == nil {
		f, err := os.CreateTemp(st.spoolDir, ".amber-blob-*")
		if err != nil {
			return nil, 0, fmt.Errorf("spooling a blob from %s: %w", st.where(), err)
		}
		// Unlinked at once where the system allows (Windows does not,
		// while it is open): nothing is left if the capture is killed.
		if os.Remove(f.Name()) != nil {
			st.spoolPath = f.Name()
		}
		st.spool = f
	}
	st.spoolName = ""
	st.gen++
	if err := st.spool.Truncate(0); err != nil {
		return nil, 0, fmt.Errorf("spooling a blob from %s: %w", st.where(), err)
	}
	if _, err := st.spool.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("spooling a blob from %s: %w", st.where(), err)
	}
	digest := "sha256:" + strings.TrimPrefix(n, "blobs/sha256/")
	resp, err := st.get("blobs", digest, nil)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.ContentLength >= 0 && resp.ContentLength != size {
		return nil, 0, fmt.Errorf("%w: %s: blob %s is %d bytes, its descriptor says %d", source.ErrSource, st.where(), digest, resp.ContentLength, size)
	}
	got, err := io.CopyBuffer(st.spool, io.LimitReader(resp.Body, size+1), make([]byte, 1<<20))
	if err != nil {
		return nil, 0, st.classify(err, "reading blob "+digest)
	}
	if got != size {
		return nil, 0, fmt.Errorf("%w: %s: blob %s: served %d bytes, its descriptor says %d", source.ErrSource, st.where(), digest, got, size)
	}
	st.spoolName = n
	return st.spool, st.gen, nil
}
