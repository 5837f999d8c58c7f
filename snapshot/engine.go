package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

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

// Engine is a connection to a Docker engine, found the standard way
// (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH; else the default
// socket), the API version negotiated.
type Engine struct {
	c    *client.Client
	Info manifest.Engine
}

// Dial connects to the engine and records who it is.
func Dial(ctx context.Context) (*Engine, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEngine, err)
	}
	e := &Engine{c: c}
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
	// A unix socket can be forwarded from another machine: the engine is
	// local when it also reports this machine's hostname.
	h, _ := os.Hostname()
	e.Info.Local = strings.HasPrefix(host, "unix://") && h != "" && h == info.Name
	return e, nil
}

// Close releases the connection.
func (e *Engine) Close() error { return e.c.Close() }

// wrap classifies an engine error.
func (e *Engine) wrap(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	case client.IsErrNotFound(err):
		return fmt.Errorf("%w: %s: %v", ErrNoSuchObject, what, err)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%w: %s: cannot connect (is dockerd running? DOCKER_HOST=%q): %v", ErrEngine, what, os.Getenv("DOCKER_HOST"), err)
	}
	return fmt.Errorf("%w: %s: %v", ErrEngine, what, err)
}

// Client is the underlying engine client.
func (e *Engine) Client() *client.Client { return e.c }

// inspect returns a container's inspect record and its raw JSON.
func (e *Engine) inspect(ctx context.Context, ref string) (container.InspectResponse, []byte, error) {
	ci, raw, err := e.c.ContainerInspectWithRaw(ctx, ref, false)
	if err != nil {
		return ci, nil, e.wrap(err, "container "+ref)
	}
	return ci, raw, nil
}
