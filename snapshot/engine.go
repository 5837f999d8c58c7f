package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/amber-forensics/amber/manifest"
)

// ErrEngine reports a Docker engine that cannot be reached or that failed.
var ErrEngine = errors.New("snapshot: docker engine")

// ErrNoSuchObject reports a container or image the engine does not know.
var ErrNoSuchObject = errors.New("snapshot: no such container or image")

// ErrNotLocal reports an operation that needs the engine's host (memory,
// the overlay upper directory) on a remote engine.
var ErrNotLocal = errors.New("snapshot: the engine is not on this host")

// ErrContainerGone reports a container that stopped existing mid-capture.
var ErrContainerGone = errors.New("snapshot: the container went away during the capture")

// ErrEngineClaim reports an engine's answer that amber refuses to act on:
// a path outside the engine's own storage, an ID that is not one. It is
// an engine failure (errors.Is(err, ErrEngine)).
var ErrEngineClaim = fmt.Errorf("%w: an answer amber does not trust", ErrEngine)

// claimError is an ErrEngineClaim whose message is the claim alone, as
// anomalies and skipped mounts record it.
type claimError struct{ msg string }

func (e *claimError) Error() string { return e.msg }

func (e *claimError) Is(target error) bool { return target == ErrEngineClaim || target == ErrEngine }

func claimf(format string, a ...any) error { return &claimError{fmt.Sprintf(format, a...)} }

// maxAnswer bounds each JSON answer of the engine (inspect, info, version,
// ...): a few KiB in practice; an engine answering without end gets an
// error, not all of amber's memory. maxChanges bounds the change list,
// which lists every changed path (some 100 bytes each).
const (
	maxAnswer  = 16 << 20
	maxChanges = 512 << 20
)

// boundedTransport cuts every answer of the engine that amber decodes in
// memory at its bound. Streams (export, save, archive, logs) are read as
// they come and bounded where they are read.
type boundedTransport struct{ base *http.Transport }

func (b boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.base.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/export"), strings.HasSuffix(p, "/archive"), strings.HasSuffix(p, "/logs"), strings.HasSuffix(p, "/images/get"):
		return resp, nil
	case strings.HasSuffix(p, "/changes"):
		resp.Body = &boundedBody{ReadCloser: resp.Body, left: maxChanges, bound: maxChanges, what: r.Method + " " + p}
	default:
		resp.Body = &boundedBody{ReadCloser: resp.Body, left: maxAnswer, bound: maxAnswer, what: r.Method + " " + p}
	}
	return resp, nil
}

// boundedBody ends an answer with an error past its bound.
type boundedBody struct {
	io.ReadCloser
	left, bound int64
	what        string
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("the engine's answer to %s exceeds %d MiB: refused", b.what, b.bound>>20)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// Engine is a connection to a Docker engine, found the standard way
// (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH; else the default
// socket), the API version negotiated.
type Engine struct {
	c    *client.Client
	base *http.Transport
	Info manifest.Engine
	// root is the engine's DockerRootDir: the only place where amber
	// reads a container's layers or volumes directly.
	root string
}

// Dial connects to the engine and records who it is.
func Dial(ctx context.Context) (*Engine, error) {
	e := &Engine{}
	// The client's own transport, as the environment configured it, under
	// boundedTransport.
	bound := func(c *client.Client) error {
		hc := c.HTTPClient()
		tr, ok := hc.Transport.(*http.Transport)
		if !ok {
			return fmt.Errorf("unexpected engine transport %T", hc.Transport)
		}
		if tr.TLSClientConfig != nil {
			// What the client concludes from its transport, which it
			// no longer sees.
			if err := client.WithScheme("https")(c); err != nil {
				return err
			}
		}
		e.base = tr
		hc.Transport = boundedTransport{tr}
		return client.WithHTTPClient(hc)(c)
	}
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation(), bound)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEngine, err)
	}
	e.c = c
	host := c.DaemonHost()
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, e.wrap(err, "reaching the engine at "+host)
	}
	info, err := c.Info(ctx)
	if err != nil {
		c.Close()
		return nil, e.wrap(err, "asking the engine who it is")
	}
	v, err := c.ServerVersion(ctx)
	if err != nil {
		c.Close()
		return nil, e.wrap(err, "asking the engine its version")
	}
	e.Info = manifest.Engine{Host: host, ID: info.ID, Name: info.Name, Version: v.Version, APIVersion: c.ClientVersion(),
		OS: info.OperatingSystem, Kernel: info.KernelVersion, StorageDriver: info.Driver}
	e.root = info.DockerRootDir
	// A unix socket can be forwarded from another machine: the engine is
	// local when it also reports this machine's hostname.
	h, _ := os.Hostname()
	e.Info.Local = strings.HasPrefix(host, "unix://") && h != "" && h == info.Name
	return e, nil
}

// Close releases the connection.
func (e *Engine) Close() error {
	if e.base != nil {
		e.base.CloseIdleConnections()
	}
	return e.c.Close()
}

// wrap classifies an engine error.
func (e *Engine) wrap(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%w: %s: %v", ErrNoSuchObject, what, err)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%w: %s: cannot connect (is dockerd running? DOCKER_HOST=%q): %v", ErrEngine, what, os.Getenv("DOCKER_HOST"), err)
	}
	return fmt.Errorf("%w: %s: %v", ErrEngine, what, err)
}

// inspect returns a container's inspect record and its raw JSON.
func (e *Engine) inspect(ctx context.Context, ref string) (container.InspectResponse, []byte, error) {
	ci, raw, err := e.c.ContainerInspectWithRaw(ctx, ref, false)
	if err != nil {
		return ci, nil, e.wrap(err, "container "+ref)
	}
	// The ID names the container's cgroup, its layers and its files in
	// the archive: only a real one is taken.
	if !fullID.MatchString(ci.ID) {
		return ci, nil, claimf("the engine answers container %s with ID %q, not 64 hex digits", ref, ci.ID)
	}
	return ci, raw, nil
}

var fullID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// inRoot checks the engine's claim that p is its own <kind>/<name>/<leaf>
// under its root directory (overlay2/<id>/diff, volumes/<name>/_data),
// with the real directories: symbolic links resolved, none of them
// leading out. It returns the real path, to be read instead of p.
func (e *Engine) inRoot(p, kind, name, leaf string) (string, error) {
	if e.root == "" || !filepath.IsAbs(e.root) {
		return "", claimf("the engine reports no root directory (DockerRootDir %q) to hold %s", e.root, p)
	}
	want := filepath.Join(e.root, kind, name, leaf)
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") || filepath.Clean(p) != want {
		return "", claimf("the engine places %s, which is not %s under its root directory %s", p, filepath.Join(kind, name, leaf), e.root)
	}
	root, err := filepath.EvalSymlinks(e.root)
	if err != nil {
		return "", claimf("the engine's root directory %s: %v", e.root, err)
	}
	real, err := filepath.EvalSymlinks(want)
	if err != nil {
		return "", claimf("the engine places %s: %v", p, err)
	}
	if real != filepath.Join(root, kind, name, leaf) {
		return "", claimf("the engine places %s, which is really %s, outside its root directory %s", p, real, root)
	}
	return real, nil
}
