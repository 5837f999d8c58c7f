// Package docker is the Docker engine behind snapshot/engine's Runtime:
// the engine found the standard way (DOCKER_HOST, DOCKER_API_VERSION,
// DOCKER_CERT_PATH; else the default socket), or at the host WithHost
// names, the API version negotiated. Podman's service (podman system
// service) answers the same API: it is recorded as runtime podman, and its
// overlay upper directories are read where its graph root keeps them.
// It is the only package that imports Docker's client, and it hardens the
// boundary: every answer decoded in memory is bounded (boundedTransport),
// an ID that is not one and a storage place outside the engine's root
// directory are refused (engine.ErrEngineClaim), and the client's errors
// are classified (engine.Fault) before they cross the interface.
package docker
