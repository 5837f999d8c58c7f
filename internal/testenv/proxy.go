package testenv

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is an HTTP reverse proxy in front of a test's registry that
// counts the blob bytes it passes and can misbehave on request: flip a
// byte of a blob, ignore Range requests. It serves TLS with the
// registry's certificate when the registry does (so clients trust it
// through the same SSL_CERT_FILE), on another loopback port.
type Proxy struct {
	// Host is host:port, as a reference names it.
	Host string
	// FlipAt, when not negative, is a blob offset whose byte is flipped
	// in every blob body that holds it.
	FlipAt atomic.Int64
	// TruncateAt, when positive, ends every blob body at that blob
	// offset (a truncated blob whose headers still claim the whole).
	TruncateAt atomic.Int64
	// IgnoreRange drops Range headers: the registry answers 200 with the
	// whole blob, as some servers do.
	IgnoreRange atomic.Bool
	// RefuseChunks answers a blob upload's PATCH that carries a
	// Content-Range with 416, as registries that take only monolithic
	// or streamed uploads do; the registry's upload URLs then name the
	// proxy, so that every PATCH comes through it.
	RefuseChunks atomic.Bool
	// Forwarded tells the registry the proxy's address (X-Forwarded-Host),
	// so that its upload URLs name the proxy and every request of a push
	// comes through it (RefuseChunks does too).
	Forwarded atomic.Bool
	// TrickleEvery, when positive, is the pause (in nanoseconds) before
	// each single byte of a blob body: a server that answers at once and
	// then sends next to nothing.
	TrickleEvery atomic.Int64
	// OnManifestPut, when set, is asked about every manifest PUT (with
	// its body) before it goes on to the registry; false answers 503
	// and the registry never sees it. A test holds a push there, in the
	// window between its blobs and its tag.
	OnManifestPut atomic.Pointer[func(r *http.Request, body []byte) bool]

	blobBytes atomic.Int64
	mu        sync.Mutex
	ranges    []string
}

// BlobBytes is the number of blob body bytes passed to clients so far.
func (p *Proxy) BlobBytes() int64 { return p.blobBytes.Load() }

// Ranges are the Range headers of the blob requests so far ("" for none).
func (p *Proxy) Ranges() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ranges...)
}

// Reset sets the counts to zero.
func (p *Proxy) Reset() {
	p.blobBytes.Store(0)
	p.mu.Lock()
	p.ranges = nil
	p.mu.Unlock()
}

// StartProxy starts a proxy in front of r, stopped at the end of the test.
func StartProxy(t testing.TB, r *Registry) *Proxy {
	t.Helper()
	target, err := url.Parse(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	p.FlipAt.Store(-1)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			if p.RefuseChunks.Load() || p.Forwarded.Load() {
				proto := "http"
				if pr.In.TLS != nil {
					proto = "https"
				}
				pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
				pr.Out.Header.Set("X-Forwarded-Proto", proto)
			}
			if strings.Contains(pr.In.URL.Path, "/blobs/") {
				p.mu.Lock()
				p.ranges = append(p.ranges, pr.In.Header.Get("Range"))
				p.mu.Unlock()
				if p.IgnoreRange.Load() {
					pr.Out.Header.Del("Range")
				}
			}
		},
		Transport: &http.Transport{TLSClientConfig: insecureTLS()},
		// A registry stopped on purpose is no news: the client sees 502.
		ErrorLog: log.New(io.Discard, "", 0),
		ModifyResponse: func(resp *http.Response) error {
			if !strings.Contains(resp.Request.URL.Path, "/blobs/") || resp.Request.Method != http.MethodGet {
				return nil
			}
			var start int64
			if cr := resp.Header.Get("Content-Range"); cr != "" {
				var end, total int64
				if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &start, &end, &total); err != nil {
					return fmt.Errorf("proxy: Content-Range %q: %w", cr, err)
				}
			}
			resp.Body = &proxyBody{rc: resp.Body, p: p, off: start}
			if p.TrickleEvery.Load() > 0 {
				// Of unknown length, the proxy sends each byte as it
				// comes (else the headers wait for a buffer to fill).
				resp.ContentLength = -1
				resp.Header.Del("Content-Length")
			}
			return nil
		},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.RefuseChunks.Load() && r.Method == http.MethodPatch && r.Header.Get("Content-Range") != "" {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		if hook := p.OnManifestPut.Load(); hook != nil && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			if !(*hook)(r, body) {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	if r.CAFile != "" {
		cert, err := tls.LoadX509KeyPair(r.CAFile, filepath.Join(filepath.Dir(r.CAFile), "registry.key"))
		if err != nil {
			t.Fatal(err)
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	p.Host = u.Host
	return p
}

// proxyBody counts a blob body's bytes and flips the chosen one.
type proxyBody struct {
	rc  io.ReadCloser
	p   *Proxy
	off int64
}

func (b *proxyBody) Read(buf []byte) (int, error) {
	if d := b.p.TrickleEvery.Load(); d > 0 && len(buf) > 1 {
		time.Sleep(time.Duration(d))
		buf = buf[:1]
	}
	if t := b.p.TruncateAt.Load(); t > 0 && b.off+int64(len(buf)) > t {
		if b.off >= t {
			return 0, io.ErrUnexpectedEOF
		}
		buf = buf[:t-b.off]
	}
	n, err := b.rc.Read(buf)
	if at := b.p.FlipAt.Load(); at >= b.off && at < b.off+int64(n) {
		buf[at-b.off] ^= 0x01
	}
	b.off += int64(n)
	b.p.blobBytes.Add(int64(n))
	return n, err
}

func (b *proxyBody) Close() error { return b.rc.Close() }
