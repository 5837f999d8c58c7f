package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultTimeout is how long a registry may keep amber waiting when
// Options say nothing: for the headers of an answer, and, while a body
// is read, for each MinRate bytes a second it owes.
const DefaultTimeout = 60 * time.Second

// MinRate is the slowest a registry may send a body, in bytes a second,
// averaged over the time amber waits for it: a server that sends less
// over a whole timeout (one that stopped, or trickles a byte a second
// after its headers) is taken as stalled rather than waited for forever.
const MinRate = 1 << 10

// stallGuard bounds the wait for a response body: a body that delivers
// less than MinRate bytes a second over timeout of time spent waiting
// for it (the time the reader spends elsewhere does not count: a slow
// consumer is not a slow server) fails with ErrUnreachable, naming the
// host, and its request is cancelled.
type stallGuard struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (g stallGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	resp, err := g.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && req.Context().Err() == nil {
			return nil, fmt.Errorf("%w: %s did not answer within %s (AMBER_REGISTRY_TIMEOUT sets the wait): %w", ErrUnreachable, req.URL.Host, g.timeout.Round(time.Millisecond), err)
		}
		return nil, err
	}
	resp.Body = &stallBody{rc: resp.Body, cancel: cancel, timeout: g.timeout, host: req.URL.Host}
	return resp, nil
}

type stallBody struct {
	rc      io.ReadCloser
	cancel  context.CancelFunc
	timeout time.Duration
	host    string
	timer   *time.Timer

	// waited and got are the time spent in Read and the bytes it
	// returned since the server last proved itself (MinRate over a
	// whole timeout).
	waited time.Duration
	got    int64

	mu      sync.Mutex
	stalled bool
}

func (b *stallBody) Read(p []byte) (int, error) {
	if err := b.stallErr(); err != nil {
		return 0, err
	}
	left := b.timeout - b.waited
	if left <= 0 { // past its end (a read after EOF): a new window
		b.waited, b.got, left = 0, 0, b.timeout
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(left, b.stall)
	} else {
		b.timer.Reset(left)
	}
	start := time.Now()
	n, err := b.rc.Read(p)
	b.timer.Stop()
	b.waited += time.Since(start)
	b.got += int64(n)
	if serr := b.stallErr(); serr != nil {
		// What the cancelled request says is "context canceled": the
		// user cancelled nothing.
		return n, serr
	}
	if b.got >= int64(MinRate*b.timeout.Seconds()) {
		b.waited, b.got = 0, 0
	} else if b.waited >= b.timeout && err == nil {
		b.stall()
		return n, b.stallErr()
	}
	return n, err
}

func (b *stallBody) stall() {
	b.mu.Lock()
	b.stalled = true
	b.mu.Unlock()
	b.cancel()
}

func (b *stallBody) stallErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stalled {
		return nil
	}
	return fmt.Errorf("%w: %s stalled: it sent %d bytes in %s of waiting, less than %d bytes a second (AMBER_REGISTRY_TIMEOUT sets the wait)",
		ErrUnreachable, b.host, b.got, b.timeout.Round(time.Millisecond), MinRate)
}

func (b *stallBody) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	err := b.rc.Close()
	b.cancel()
	return err
}
