package docker

import (
	"context"
	"encoding/json"
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
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/engine"
)

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

// Engine is a connection to a Docker engine.
type Engine struct {
	c    *client.Client
	base *http.Transport
	info manifest.Engine
	// root is the engine's DockerRootDir: the only place where amber
	// reads a container's layers or volumes directly.
	root string
}

var _ engine.Runtime = (*Engine)(nil)

// Option changes how Dial reaches the engine.
type Option func(*dialConfig)

type dialConfig struct{ host string }

// WithHost reaches the engine at host (unix:///run/podman/podman.sock,
// tcp://host:2375) instead of where the environment says (DOCKER_HOST,
// DOCKER_CERT_PATH, ...: none of it is read then).
func WithHost(host string) Option { return func(c *dialConfig) { c.host = host } }

// Dial connects to the engine and records who it is: by default the one
// the environment names (DOCKER_HOST, else the default socket), as the
// docker command would. An engine that names itself Podman Engine in its
// version (Podman's Docker-compatible service) is recorded as runtime
// podman, with Podman's version.
func Dial(ctx context.Context, opts ...Option) (*Engine, error) {
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
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
	where := client.FromEnv
	if cfg.host != "" {
		where = client.WithHost(cfg.host)
	}
	c, err := client.NewClientWithOpts(where, client.WithAPIVersionNegotiation(), bound)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrEngine, err)
	}
	e.c = c
	host := c.DaemonHost()
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		if cfg.host != "" && client.IsErrConnectionFailed(err) {
			// Not DOCKER_HOST's engine: fault's note would mislead.
			return nil, engine.Wrap(&engine.Fault{Kind: engine.ErrEngine, Note: "cannot connect (is the service running? podman system service)", Err: err}, "reaching the engine at "+host)
		}
		return nil, wrap(err, "reaching the engine at "+host)
	}
	info, err := c.Info(ctx)
	if err != nil {
		c.Close()
		return nil, wrap(err, "asking the engine who it is")
	}
	v, err := c.ServerVersion(ctx)
	if err != nil {
		c.Close()
		return nil, wrap(err, "asking the engine its version")
	}
	e.info = manifest.Engine{Host: host, ID: info.ID, Name: info.Name, Version: v.Version, APIVersion: c.ClientVersion(),
		OS: info.OperatingSystem, Kernel: info.KernelVersion, StorageDriver: info.Driver}
	e.root = info.DockerRootDir
	// Podman's service answers the Docker API; its version names it
	// (Components: "Podman Engine"), and its version is Podman's.
	for _, comp := range v.Components {
		if comp.Name == "Podman Engine" {
			e.info.Runtime, e.info.Version = "podman", comp.Version
		}
	}
	// A unix socket can be forwarded from another machine: the engine is
	// local when it also reports this machine's hostname.
	h, _ := os.Hostname()
	e.info.Local = strings.HasPrefix(host, "unix://") && h != "" && h == info.Name
	return e, nil
}

// Info describes the engine as Dial found it.
func (e *Engine) Info() manifest.Engine { return e.info }

// kind is the runtime the engine is: docker, or podman.
func (e *Engine) kind() string {
	if e.info.Runtime != "" {
		return e.info.Runtime
	}
	return "docker"
}

// GraphRoot is the engine's root directory as it reports it
// (DockerRootDir; Podman's graph root): with the hostname it tells one
// engine reached twice (DOCKER_HOST and Podman's socket) from two.
func (e *Engine) GraphRoot() string { return e.root }

// Close releases the connection.
func (e *Engine) Close() error {
	if e.base != nil {
		e.base.CloseIdleConnections()
	}
	return e.c.Close()
}

// fault classifies an error of the client for engine.Wrap: a cancellation
// stays what it is.
func fault(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case cerrdefs.IsNotFound(err):
		return &engine.Fault{Kind: engine.ErrNoSuchObject, Err: err}
	case client.IsErrConnectionFailed(err):
		return &engine.Fault{Kind: engine.ErrEngine, Note: fmt.Sprintf("cannot connect (is dockerd running? DOCKER_HOST=%q)", os.Getenv("DOCKER_HOST")), Err: err}
	}
	return &engine.Fault{Kind: engine.ErrEngine, Err: err}
}

// wrap classifies an engine error with what was asked.
func wrap(err error, what string) error { return engine.Wrap(fault(err), what) }

// Container inspects a container.
func (e *Engine) Container(ctx context.Context, ref string) (*engine.Container, error) {
	ci, raw, err := e.c.ContainerInspectWithRaw(ctx, ref, false)
	if err != nil {
		return nil, wrap(err, "container "+ref)
	}
	if ci.ContainerJSONBase == nil {
		return nil, engine.Claimf("the engine answers container %s without an ID", ref)
	}
	c := &engine.Container{ID: ci.ID, Name: ci.Name, Image: ci.Image, Driver: ci.GraphDriver.Name, Storage: ci.GraphDriver.Data, Raw: raw}
	if s := ci.State; s != nil {
		c.State, c.Running, c.Paused, c.Pid = s.Status, s.Running, s.Paused, s.Pid
	}
	if ci.Config != nil {
		c.ImageRef, c.Tty = ci.Config.Image, ci.Config.Tty
		if b, err := json.Marshal(ci.Config); err == nil {
			c.Config = b
		}
	}
	for _, m := range ci.Mounts {
		c.Mounts = append(c.Mounts, engine.Mount{Type: string(m.Type), Name: m.Name, Source: m.Source, Destination: m.Destination, RW: m.RW})
	}
	return c, nil
}

// List lists the engine's containers, running or not, each with its first
// process (one inspect per running container: the list has no PIDs).
func (e *Engine) List(ctx context.Context) ([]engine.Summary, error) {
	cs, err := e.c.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return nil, wrap(err, "listing containers")
	}
	out := make([]engine.Summary, 0, len(cs))
	for _, c := range cs {
		s := engine.Summary{Runtime: e.kind(), ID: c.ID, Image: c.Image, State: string(c.State), Pod: engine.PodOf(c.Labels)}
		if len(c.Names) > 0 {
			s.Name = strings.TrimPrefix(c.Names[0], "/")
		}
		if s.State == "running" || s.State == "paused" {
			if ci, err := e.c.ContainerInspect(ctx, c.ID); err == nil && ci.ContainerJSONBase != nil && ci.State != nil {
				s.Pid = ci.State.Pid
			}
		}
		out = append(out, s)
	}
	return out, nil
}

var _ engine.Lister = (*Engine)(nil)

// Image inspects an image.
func (e *Engine) Image(ctx context.Context, ref string) (*engine.Image, error) {
	ii, err := e.c.ImageInspect(ctx, ref)
	if err != nil {
		return nil, fault(err)
	}
	return &engine.Image{ID: ii.ID, DiffIDs: ii.RootFS.Layers}, nil
}

// SaveImage streams docker save of one image.
func (e *Engine) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	rc, err := e.c.ImageSave(ctx, []string{ref})
	return rc, fault(err)
}

// Export streams docker export.
func (e *Engine) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	rc, err := e.c.ContainerExport(ctx, id)
	return rc, fault(err)
}

// CopyFrom streams docker cp of a path.
func (e *Engine) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, error) {
	rc, _, err := e.c.CopyFromContainer(ctx, id, path)
	return rc, fault(err)
}

// Changes is docker diff.
func (e *Engine) Changes(ctx context.Context, id string) ([]engine.Change, error) {
	ch, err := e.c.ContainerDiff(ctx, id)
	if err != nil {
		return nil, fault(err)
	}
	out := make([]engine.Change, 0, len(ch))
	for _, c := range ch {
		if c.Kind > container.ChangeDelete {
			return nil, engine.Claimf("the engine lists %q with a change of kind %d, not 0, 1 or 2", c.Path, c.Kind)
		}
		out = append(out, engine.Change{Kind: "CAD"[c.Kind], Path: c.Path})
	}
	return out, nil
}

// Logs opens docker logs --timestamps.
func (e *Engine) Logs(ctx context.Context, id string, tty bool) (engine.LogStream, error) {
	rc, err := e.c.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true})
	if err != nil {
		return nil, fault(err)
	}
	return &logStream{ctx: ctx, rc: rc, tty: tty}, nil
}

type logStream struct {
	ctx context.Context
	rc  io.ReadCloser
	tty bool
}

// Copy writes the logs: one stream with a terminal, else the engine's
// multiplexed stdout and stderr.
func (l *logStream) Copy(stdout, stderr io.Writer) error {
	r := engine.ContextReader(l.ctx, l.rc)
	if l.tty {
		_, err := io.Copy(stdout, r)
		return err
	}
	_, err := stdcopy.StdCopy(stdout, stderr, r)
	return err
}

func (l *logStream) Close() error { return l.rc.Close() }

// Pause is docker pause.
func (e *Engine) Pause(ctx context.Context, id string) error {
	return fault(e.c.ContainerPause(ctx, id))
}

// Unpause is docker unpause.
func (e *Engine) Unpause(ctx context.Context, id string) error {
	err := e.c.ContainerUnpause(ctx, id)
	if err != nil && strings.Contains(err.Error(), "is not paused") {
		return engine.ErrNotPaused
	}
	return fault(err)
}

var fullID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// UpperDirs returns the directories of the upperdir route: the upper
// directory and, just below it, the engine's init layer (hosts,
// resolv.conf, /dev, ...: part of the container's filesystem as docker
// export shows it, and not of its image). Both are the engine's word, and
// read directly only where the engine keeps them:
// <root>/overlay2/<id>/diff and <root>/overlay2/<id>-init/diff.
func (e *Engine) UpperDirs(c *engine.Container) ([]string, error) {
	if e.info.Runtime == "podman" {
		return e.podmanUpperDirs(c)
	}
	upper := c.Storage["UpperDir"]
	switch {
	case c.Driver != "overlay2":
		return nil, &engine.Unavailable{Why: "the storage driver is " + c.Driver + ", not overlay2"}
	case upper == "":
		return nil, &engine.Unavailable{Why: "the engine does not report an upper directory"}
	}
	id := filepath.Base(filepath.Dir(filepath.Clean(upper)))
	if !fullID.MatchString(id) {
		return nil, engine.Claimf("the engine places the container's upper directory at %s, not at overlay2/<64 hex digits>/diff under its root directory %s", upper, e.root)
	}
	real, err := e.inRoot(upper, "overlay2", id, "diff")
	if err != nil {
		return nil, err
	}
	dirs := []string{real}
	if lower := strings.Split(c.Storage["LowerDir"], ":"); len(lower) > 0 && strings.HasSuffix(lower[0], "-init/diff") {
		init, err := e.inRoot(lower[0], "overlay2", id+"-init", "diff")
		if err != nil {
			return nil, fmt.Errorf("its init layer: %w", err)
		}
		dirs = append(dirs, init)
	}
	return dirs, nil
}

// podmanUpperDirs is the upper directory of Podman's overlay driver
// (containers/storage): <graph root>/overlay/<layer ID>/diff, read
// directly only there, as snapshot/podman reads it. Podman has no init
// layer: the files it makes for the container (hosts, resolv.conf, ...)
// are bind mounts from its userdata directory, their mount points in the
// upper directory.
func (e *Engine) podmanUpperDirs(c *engine.Container) ([]string, error) {
	upper := c.Storage["UpperDir"]
	switch {
	case c.Driver != "overlay":
		return nil, &engine.Unavailable{Why: "podman's storage driver is " + c.Driver + ", not overlay"}
	case upper == "":
		return nil, &engine.Unavailable{Why: "podman does not report an upper directory"}
	}
	id := filepath.Base(filepath.Dir(filepath.Clean(upper)))
	if !fullID.MatchString(id) {
		return nil, engine.Claimf("podman places the container's upper directory at %s, not at overlay/<64 hex digits>/diff under its graph root %s", upper, e.root)
	}
	real, err := e.inRoot(upper, "overlay", id, "diff")
	if err != nil {
		return nil, err
	}
	return []string{real}, nil
}

// VolumeDir checks a volume's place: <root>/volumes/<name>/_data.
func (e *Engine) VolumeDir(name, source string) (string, error) {
	return e.inRoot(source, "volumes", name, "_data")
}

// inRoot checks the engine's claim that p is its own <kind>/<name>/<leaf>
// under its root directory (overlay2/<id>/diff, volumes/<name>/_data),
// with the real directories: symbolic links resolved, none of them
// leading out. It returns the real path, to be read instead of p.
func (e *Engine) inRoot(p, kind, name, leaf string) (string, error) {
	if e.root == "" || !filepath.IsAbs(e.root) {
		return "", engine.Claimf("the engine reports no root directory (DockerRootDir %q) to hold %s", e.root, p)
	}
	want := filepath.Join(e.root, kind, name, leaf)
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") || filepath.Clean(p) != want {
		return "", engine.Claimf("the engine places %s, which is not %s under its root directory %s", p, filepath.Join(kind, name, leaf), e.root)
	}
	root, err := filepath.EvalSymlinks(e.root)
	if err != nil {
		return "", engine.Claimf("the engine's root directory %s: %v", e.root, err)
	}
	real, err := filepath.EvalSymlinks(want)
	if err != nil {
		return "", engine.Claimf("the engine places %s: %v", p, err)
	}
	if real != filepath.Join(root, kind, name, leaf) {
		return "", engine.Claimf("the engine places %s, which is really %s, outside its root directory %s", p, real, root)
	}
	return real, nil
}
