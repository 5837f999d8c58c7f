package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// stallServer answers /trickle with a byte every 100 ms after its
// headers, /idle with headers and then nothing, /late with headers after
// 2 s, and /fast with 64 KiB at once.
func stallServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := w.(http.Flusher)
		switch r.URL.Path {
		case "/trickle":
			w.WriteHeader(http.StatusOK)
			f.Flush()
			for range 1000 {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				w.Write([]byte{'x'})
				f.Flush()
			}
		case "/idle":
			w.WriteHeader(http.StatusOK)
			f.Flush()
			<-r.Context().Done()
		case "/late":
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		case "/fast":
			w.Write(bytes.Repeat([]byte{'y'}, 64<<10))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func getBody(t *testing.T, rt http.RoundTripper, url string, pause time.Duration) (int, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	buf := make([]byte, 16<<10)
	n := 0
	for {
		m, err := resp.Body.Read(buf)
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		time.Sleep(pause) // the consumer's own time
	}
}

// TestStallGuard: with a 500 ms timeout, a body trickling a byte every
// 100 ms and a body that stops after its headers fail within about the
// timeout with ErrUnreachable naming the host (never context.Canceled:
// the user cancelled nothing), as do headers that do not come; a fast
// body read by a slow consumer (300 ms between reads, more than the
// timeout) is read whole: the consumer's time is not the server's.
func TestStallGuard(t *testing.T) {
	srv := stallServer(t)
	rt := Options{Timeout: 500 * time.Millisecond}.transport()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, p := range []string{"/trickle", "/idle", "/late"} {
		start := time.Now()
		_, err := getBody(t, rt, srv.URL+p, 0)
		took := time.Since(start)
		t.Logf("%s: after %s: %v", p, took.Round(time.Millisecond), err)
		if !errors.Is(err, ErrUnreachable) || errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), host) {
			t.Errorf("%s: %v; want ErrUnreachable naming %s, not context.Canceled", p, err, host)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("%s: gave up after %s with a 500 ms timeout", p, took)
		}
	}
	n, err := getBody(t, rt, srv.URL+"/fast", 300*time.Millisecond)
	if err != nil || n != 64<<10 {
		t.Errorf("a fast body read slowly: %d bytes, %v; want all 65536", n, err)
	}
}
