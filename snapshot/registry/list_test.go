package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestListBounded: a registry that pages its tags forever, or sends a
// page of tags without end, is refused with ErrNotEvidence after a
// bounded number of requests and bytes.
func TestListBounded(t *testing.T) {
	var pages atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == "/v2/loop/tags/list":
			n := pages.Add(1)
			w.Header().Set("Link", fmt.Sprintf(`</v2/loop/tags/list?n=1000&last=t%d>; rel="next"`, n))
			fmt.Fprintf(w, `{"name":"loop","tags":["t%d"]}`, n)
		case r.URL.Path == "/v2/huge/tags/list":
			fmt.Fprint(w, `{"name":"huge","tags":["`)
			chunk := strings.Repeat("x", 1<<20)
			for i := 0; i < 64; i++ {
				if _, err := fmt.Fprint(w, chunk); err != nil {
					return
				}
			}
			fmt.Fprint(w, `"]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	// The huge page's handler is still writing when the client gives up.
	defer srv.CloseClientConnections()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, name := range []string{"loop", "huge"} {
		repo, err := ParseRepo("docker://"+host+"/"+name, Options{Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		_, err = List(context.Background(), repo, Options{Insecure: true})
		if !errors.Is(err, ErrNotEvidence) {
			t.Errorf("List of %s: %v, want ErrNotEvidence", name, err)
		}
	}
	if n := pages.Load(); n > maxTagPages+2 {
		t.Errorf("%d pages fetched, want at most %d", n, maxTagPages+1)
	}
}
