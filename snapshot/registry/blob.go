package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/amber-forensics/amber/manifest"
)

const (
	// (MaxManifest, source.go, bounds an evidence manifest too.)
	// MaxRedirects bounds the redirects followed to a blob (registries
	// send blobs to object storage; a loop ends here).
	MaxRedirects = 10
	// maxAhead bounds the read-ahead of sequential reads.
	maxAhead = 16 << 20
	// tinyRead is the largest read fetched as asked rather than as whole
	// chunks (the four bytes of the zstd magic at a blob's start).
	tinyRead = 64
)

// ErrNotEvidence reports a manifest that is no amber evidence artifact:
// to a reader, it is not an archive (manifest.ErrNotArchive).
var ErrNotEvidence = fmt.Errorf("%w: not an amber evidence artifact", manifest.ErrNotArchive)

// Blob is the archive layer of an evidence artifact in a registry, read
// lazily through HTTP Range requests: an io.ReaderAt over the blob whose
// bytes are fetched in chunks, in batches, ahead on sequential reads, and
// kept in an on-disk cache. It checks nothing itself beyond the blob
// digest of a whole download: the archive reader checks every frame
// against its sealed digest, and tells the blob to forget what fails
// (archive.ReaderForget).
type Blob struct {
	// Ref is the reference as given; Digest and Size the archive layer's.
	Ref            name.Reference
	Digest         v1.Hash
	Size           int64
	ManifestDigest v1.Hash
	// Annotations are the manifest's.
	Annotations map[string]string
	// Title is the archive layer's file name (its OCI title annotation),
	// the name the archive was pushed as; "" when it has none.
	Title string
	// Warn, when set, is told things the user should know (a server that
	// ignores Range).
	Warn func(string)

	client *http.Client
	opts   Options // to name the user a refused login was for
	url    string
	cache  *cache
	hex    string

	fetched  atomic.Int64
	requests atomic.Int64

	mu       sync.Mutex
	inflight map[int64]chan struct{}
	lastEnd  int64
	ahead    int64
	full     *os.File
	fullOnce sync.Mutex
	bg       chan struct{}
	closed   bool
}

// Stats are what a Blob fetched from the registry.
type Stats struct {
	BytesFetched int64 `json:"bytes_fetched"`
	Requests     int64 `json:"requests"`
	BlobSize     int64 `json:"blob_size"`
}

// Stats reports the bytes fetched so far (cached bytes are not counted).
func (b *Blob) Stats() Stats {
	return Stats{BytesFetched: b.fetched.Load(), Requests: b.requests.Load(), BlobSize: b.Size}
}

// Name is the reference, as docker://...
func (b *Blob) Name() string { return Prefix + b.Ref.String() }

// OpenEvidence resolves ref's manifest, checks that it is amber evidence,
// and returns its archive layer as a lazily read Blob.
func OpenEvidence(ctx context.Context, ref string, opts Options, copts CacheOptions) (*Blob, error) {
	r, err := ParseRef(ref, opts)
	if err != nil {
		return nil, err
	}
	c, err := openCache(copts)
	if err != nil {
		return nil, err
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	auth, err := authn.Resolve(ctx, kc, r.Context())
	if err != nil {
		return nil, fmt.Errorf("%s: credentials for %s: %w", ref, r.Context().RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(ctx, r.Context().Registry, auth, opts.transport(), []string{r.Scope(transport.PullScope)})
	if err != nil {
		if a := refused(r.Context(), opts, err); a != nil {
			return nil, fmt.Errorf("%s: %w", ref, a) // a token service's refusal
		}
		return nil, fmt.Errorf("%s: registry %s: %w", ref, r.Context().RegistryStr(), err)
	}
	if opts.UserAgent != "" {
		rt = transport.NewUserAgent(rt, opts.UserAgent)
	}
	client := &http.Client{Transport: rt, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= MaxRedirects {
			return fmt.Errorf("more than %d redirects (last to %s)", MaxRedirects, req.URL.Redacted())
		}
		return nil
	}}
	base := fmt.Sprintf("%s://%s/v2/%s", r.Context().Registry.Scheme(), r.Context().RegistryStr(), r.Context().RepositoryStr())
	m, mdig, err := fetchManifest(ctx, client, base+"/manifests/"+r.Identifier(), r)
	if err != nil {
		// A refused login is told as push and pull tell it (exit code
		// for auth), naming the user.
		if a := refused(r.Context(), opts, err); a != nil {
			return nil, fmt.Errorf("%s: %w", ref, a)
		}
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if m.ArtifactType != ArtifactType && m.Config.MediaType != MediaTypeConfig {
		return nil, fmt.Errorf("%w: %s has artifact type %q and config %q, not %s", ErrNotEvidence, ref, m.ArtifactType, m.Config.MediaType, ArtifactType)
	}
	var layer *v1.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == MediaTypeArchive {
			layer = &m.Layers[i]
			break
		}
	}
	if layer == nil || layer.Digest.Algorithm != "sha256" || len(layer.Digest.Hex) != 64 || layer.Size <= 0 {
		return nil, fmt.Errorf("%w: %s has no archive layer (%s) with a SHA-256 and a size", ErrNotEvidence, ref, MediaTypeArchive)
	}
	if _, err := hex.DecodeString(layer.Digest.Hex); err != nil {
		return nil, fmt.Errorf("%w: %s: archive layer digest %q", ErrNotEvidence, ref, layer.Digest)
	}
	b := &Blob{
		Ref: r, Digest: layer.Digest, Size: layer.Size, ManifestDigest: mdig, Annotations: m.Annotations, Title: layer.Annotations[AnnotationTitle],
		client: client, opts: opts, url: base + "/blobs/" + layer.Digest.String(), cache: c, hex: layer.Digest.Hex,
		inflight: map[int64]chan struct{}{}, bg: make(chan struct{}, 2),
	}
	if f, err := os.Open(c.fullPath(b.hex)); err == nil {
		b.full = f // downloaded whole before, and checked against the digest then
	}
	return b, nil
}

// fetchManifest GETs an image manifest, at most MaxManifest bytes, and
// checks it against the digest it is asked by.
func fetchManifest(ctx context.Context, client *http.Client, url string, r name.Reference) (*v1.Manifest, v1.Hash, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	req.Header.Set("Accept", strings.Join([]string{string(types.OCIManifestSchema1), string(types.DockerManifestSchema2)}, ", "))
	resp, err := client.Do(req)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("manifest from %s: %w", r.Context().RegistryStr(), err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("manifest from %s: %w", r.Context().RegistryStr(), err)
	}
	if resp.ContentLength > MaxManifest {
		return nil, v1.Hash{}, fmt.Errorf("manifest from %s is %d bytes, more than %d", r.Context().RegistryStr(), resp.ContentLength, MaxManifest)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifest+1))
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("manifest from %s: %w", r.Context().RegistryStr(), err)
	}
	if len(body) > MaxManifest {
		return nil, v1.Hash{}, fmt.Errorf("manifest from %s is more than %d bytes", r.Context().RegistryStr(), MaxManifest)
	}
	sum := sha256.Sum256(body)
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if d, ok := r.(name.Digest); ok && d.DigestStr() != got.String() {
		return nil, v1.Hash{}, fmt.Errorf("manifest from %s has digest %s, asked for %s", r.Context().RegistryStr(), got, d.DigestStr())
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("%w: manifest from %s: %v", ErrNotEvidence, r.Context().RegistryStr(), err)
	}
	return &m, got, nil
}

// ReadAt reads the blob's bytes [off, off+len(p)).
func (b *Blob) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", b.Name(), off)
	}
	if off >= b.Size {
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > b.Size-off {
		want = p[:b.Size-off]
	}
	if f := b.fullFile(); f != nil {
		n, err := f.ReadAt(want, off)
		if err == nil && n < len(p) {
			err = io.EOF
		}
		return n, err
	}
	if len(want) <= tinyRead && !b.cache.has(b.hex, off/ChunkSize*ChunkSize) {
		if err := b.fetchExact(want, off); err != nil {
			return 0, err
		}
	} else if err := b.fill(off, int64(len(want))); err != nil {
		return 0, err
	}
	if f := b.fullFile(); f != nil {
		return b.ReadAt(p, off)
	}
	if len(want) > tinyRead || b.cache.has(b.hex, off/ChunkSize*ChunkSize) {
		n := 0
		for n < len(want) {
			o := off + int64(n)
			co := o / ChunkSize * ChunkSize
			c, ok := b.cache.get(b.hex, co, b.chunkLen(co))
			if !ok {
				// Evicted meanwhile (a cache smaller than a read): once more.
				if err := b.fill(o, int64(len(want)-n)); err != nil {
					return n, err
				}
				if c, ok = b.cache.get(b.hex, co, b.chunkLen(co)); !ok {
					return n, fmt.Errorf("%s: the cache at %s does not keep bytes %d-%d (too small a --cache bound?)", b.Name(), b.cache.dir, co, co+int64(b.chunkLen(co))-1)
				}
			}
			n += copy(want[n:], c[o-co:])
		}
	}
	b.mu.Lock()
	if off == b.lastEnd {
		b.ahead = min(max(2*b.ahead, 1<<20), maxAhead)
	} else {
		b.ahead = 0
	}
	b.lastEnd = off + int64(len(want))
	b.mu.Unlock()
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

func (b *Blob) chunkLen(co int64) int { return int(min(ChunkSize, b.Size-co)) }

func (b *Blob) fullFile() *os.File {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.full
}

// fill makes the chunks of [off, off+n) present, fetching those missing
// in one request (and, when reads go in order, some after them).
func (b *Blob) fill(off, n int64) error {
	first, last := off/ChunkSize, (off+n-1)/ChunkSize
	b.mu.Lock()
	ahead := int64(0)
	if off == b.lastEnd {
		ahead = b.ahead / ChunkSize
	}
	b.mu.Unlock()
	// What is fetched ahead stays well inside the cache's bound: in a
	// small cache it would evict the chunks this very read needs.
	ahead = min(ahead, b.cache.max/4/ChunkSize)
	return b.fetchChunks(first, last, last+ahead)
}

// fetchChunks fetches the missing chunks among [first, last] (waiting for
// those another read is fetching), extended, when they are missing too,
// up to upto; it returns once [first, last] are cached.
func (b *Blob) fetchChunks(first, last, upto int64) error {
	maxChunk := (b.Size - 1) / ChunkSize
	upto = min(upto, maxChunk)
	var wait []chan struct{}
	start, end := int64(-1), int64(-1)
	b.mu.Lock()
	for i := first; i <= upto; i++ {
		if ch, ok := b.inflight[i]; ok {
			if i <= last {
				wait = append(wait, ch)
			}
			if start >= 0 {
				break
			}
			continue
		}
		if b.cache.has(b.hex, i*ChunkSize) {
			if start >= 0 && i > last {
				break
			}
			if start >= 0 {
				// A hole in the middle: fetch on to last in this request
				// rather than a request a run.
				continue
			}
			continue
		}
		if start < 0 {
			start = i
		}
		end = i
	}
	var mine chan struct{}
	if start >= 0 {
		mine = make(chan struct{})
		for i := start; i <= end; i++ {
			if _, ok := b.inflight[i]; !ok {
				b.inflight[i] = mine
			}
		}
	}
	b.mu.Unlock()
	var err error
	if mine != nil {
		err = b.fetchRange(start*ChunkSize, min((end+1)*ChunkSize, b.Size))
		b.mu.Lock()
		for i := start; i <= end; i++ {
			if b.inflight[i] == mine {
				delete(b.inflight, i)
			}
		}
		b.mu.Unlock()
		close(mine)
	}
	for _, ch := range wait {
		<-ch
	}
	if err != nil {
		return err
	}
	// A chunk another read was fetching may have failed: fetch it now.
	for i := first; i <= last; i++ {
		if !b.cache.has(b.hex, i*ChunkSize) && b.fullFile() == nil {
			if len(wait) == 0 {
				return fmt.Errorf("%s: bytes %d-%d were fetched but are not in the cache at %s", b.Name(), i*ChunkSize, i*ChunkSize+int64(b.chunkLen(i*ChunkSize))-1, b.cache.dir)
			}
			return b.fetchChunks(first, last, last)
		}
	}
	return nil
}

// get sends a GET of the blob, for bytes [from, to) when to > 0.
func (b *Blob) get(ctx context.Context, from, to int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return nil, err
	}
	if to > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to-1))
	}
	b.requests.Add(1)
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: fetching bytes %d-%d of blob %s from %s: %w", b.Name(), from, to-1, b.Digest, b.Ref.Context().RegistryStr(), err)
	}
	if err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent); err != nil {
		resp.Body.Close()
		if a := refused(b.Ref.Context(), b.opts, err); a != nil {
			err = a // a login refused after the manifest (a token expired)
		}
		return nil, fmt.Errorf("%s: fetching bytes %d-%d of blob %s from %s: %w", b.Name(), from, to-1, b.Digest, b.Ref.Context().RegistryStr(), err)
	}
	return resp, nil
}

// checkRange checks a 206's Content-Range against what was asked.
func (b *Blob) checkRange(resp *http.Response, from, to int64) error {
	cr := resp.Header.Get("Content-Range")
	var s, e, total int64
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &s, &e, &total); err != nil || s != from || e != to-1 || total != b.Size {
		return fmt.Errorf("%s: asked %s for bytes %d-%d of blob %s (%d bytes), it answered Content-Range %q", b.Name(), b.Ref.Context().RegistryStr(), from, to-1, b.Digest, b.Size, cr)
	}
	return nil
}

// fetchExact reads [off, off+len(p)) straight from the registry,
// uncached.
func (b *Blob) fetchExact(p []byte, off int64) error {
	resp, err := b.get(context.Background(), off, off+int64(len(p)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return b.downloadWhole(resp.Body)
	}
	if err := b.checkRange(resp, off, off+int64(len(p))); err != nil {
		return err
	}
	n, err := io.ReadFull(resp.Body, p)
	b.fetched.Add(int64(n))
	if err != nil {
		return fmt.Errorf("%s: reading bytes %d-%d of blob %s from %s: %w", b.Name(), off, off+int64(len(p))-1, b.Digest, b.Ref.Context().RegistryStr(), err)
	}
	return nil
}

// fetchRange fetches [from, to), chunk-aligned, into the cache.
func (b *Blob) fetchRange(from, to int64) error {
	resp, err := b.get(context.Background(), from, to)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return b.downloadWhole(resp.Body)
	}
	if err := b.checkRange(resp, from, to); err != nil {
		return err
	}
	buf := make([]byte, ChunkSize)
	for o := from; o < to; o += ChunkSize {
		c := buf[:min(ChunkSize, to-o)]
		n, err := io.ReadFull(resp.Body, c)
		b.fetched.Add(int64(n))
		if err != nil {
			return fmt.Errorf("%s: reading bytes %d-%d of blob %s from %s: %w", b.Name(), o, o+int64(len(c))-1, b.Digest, b.Ref.Context().RegistryStr(), err)
		}
		if err := b.cache.put(b.hex, o, c); err != nil {
			return err
		}
	}
	return nil
}

// downloadWhole keeps a whole blob a server sent for a Range it ignored:
// one download into the cache, checked against the blob digest before
// any of it is used.
func (b *Blob) downloadWhole(body io.Reader) error {
	b.fullOnce.Lock()
	defer b.fullOnce.Unlock()
	if b.fullFile() != nil {
		return nil
	}
	if b.Warn != nil {
		b.Warn(fmt.Sprintf("%s ignores Range requests: downloading the whole blob (%d bytes) into the cache at %s", b.Ref.Context().RegistryStr(), b.Size, b.cache.dir))
	}
	dir := filepath.Join(b.cache.blobsDir(), b.hex)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, b.Size+1))
	b.fetched.Add(n)
	if err == nil && n != b.Size {
		err = fmt.Errorf("the blob is %d bytes, the manifest says %d", n, b.Size)
	}
	if err == nil && hex.EncodeToString(h.Sum(nil)) != b.hex {
		err = fmt.Errorf("the blob's SHA-256 is %x, its digest says %s", h.Sum(nil), b.hex)
	}
	if err == nil {
		err = os.Rename(f.Name(), b.cache.fullPath(b.hex))
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("%s: downloading blob %s from %s: %w", b.Name(), b.Digest, b.Ref.Context().RegistryStr(), err)
	}
	b.cache.grew(n, dir)
	b.mu.Lock()
	b.full = f
	b.mu.Unlock()
	return nil
}

// WillNeed fetches [off, off+n) in the background, in one request
// (archive.ReaderWillNeed: a mount warming the frames a read will want).
func (b *Blob) WillNeed(off, n int64) {
	if b.fullFile() != nil || n <= 0 || off >= b.Size {
		return
	}
	n = min(n, max(b.cache.max/4, ChunkSize)) // as fill's read-ahead
	select {
	case b.bg <- struct{}{}:
	default:
		return // enough fetches in flight; the reads themselves will fetch
	}
	go func() {
		defer func() { <-b.bg }()
		first, last := off/ChunkSize, (min(off+n, b.Size)-1)/ChunkSize
		_ = b.fetchChunks(first, last, last)
	}()
}

// Forget drops cached bytes overlapping [off, off+n) (archive.ReaderForget:
// a frame failed its check), so that they are fetched again.
func (b *Blob) Forget(off, n int64) {
	b.mu.Lock()
	if b.full != nil {
		b.full.Close()
		b.full = nil
	}
	b.mu.Unlock()
	b.cache.forget(b.hex, off, n)
}

// Close releases the whole download's file, if any.
func (b *Blob) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.full != nil {
		err := b.full.Close()
		b.full = nil
		return err
	}
	return nil
}

// CustodyBase is where the custody events of this blob, read from a
// registry, are kept, as the path of an archive whose sidecar it is:
// CACHE/custody/sha256-HEX (the events go to CACHE/custody/
// sha256-HEX.custody.jsonl), keyed by the blob digest, the archive's
// SHA-256, so every reference to the same evidence shares one log. The
// directory is made (0700) if need be.
func (b *Blob) CustodyBase() (string, error) {
	dir := filepath.Join(b.cache.dir, "custody")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("custody log under the cache: %w", err)
	}
	return filepath.Join(dir, "sha256-"+b.hex), nil
}
