package testenv

import (
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
			if p.RefuseChunks.Load() {
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
			return nil
		},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.RefuseChunks.Load() && r.Method == http.MethodPatch && r.Header.Get("Content-Range") != "" {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
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
