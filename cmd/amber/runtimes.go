package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/snapshot/containerd"
	"github.com/amber-forensics/amber/snapshot/docker"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/podman"
)

// runtimeFlags choose the container runtime a command talks to.
type runtimeFlags struct {
	name string // "auto" or one of runtimeNames
	// address and namespace are containerd's socket and namespace ("":
	// every namespace but Docker's own).
	address, namespace string
	// podmanRoot and podmanRunRoot are Podman's storage (podman --root,
	// --runroot), read directly ("": the default places). podmanSocket
	// is Podman's API service instead (podman system service).
	podmanRoot, podmanRunRoot, podmanSocket string
}

func (r *runtimeFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&r.name, "runtime", "auto", "container runtime: auto (every one reachable), docker, containerd, or podman (its API service, else its storage read directly: no service needed)")
	f.StringVar(&r.address, "address", containerd.DefaultAddress, "containerd's socket")
	f.StringVar(&r.namespace, "namespace", "", "containerd namespace (k8s.io for Kubernetes, default for ctr); empty: every namespace but Docker's (moby)")
	f.StringVar(&r.podmanRoot, "podman-root", "", "Podman's storage graph root (podman --root), read directly (default "+podman.DefaultGraphRoot+")")
	f.StringVar(&r.podmanRunRoot, "podman-runroot", "", "Podman's run root (podman --runroot), where running containers' pidfiles are (default "+podman.DefaultRunRoot+")")
	f.StringVar(&r.podmanSocket, "podman-socket", "", "Podman's API service (podman system service), e.g. unix://"+defaultPodmanSocket+"; by default that socket when it exists and no --podman-root or --podman-runroot is given, else Podman's storage read directly")
}

// defaultPodmanSocket is rootful Podman's API socket (podman.socket,
// podman system service).
const defaultPodmanSocket = "/run/podman/podman.sock"

// podmanHost is the Podman service --runtime podman talks to, and whether
// --podman-socket named it: the socket named; else, when no storage is
// named, the rootful default socket when there is one; "" is Podman's
// storage, read directly.
func (r runtimeFlags) podmanHost() (host string, named bool, err error) {
	if r.podmanSocket != "" {
		if r.podmanRoot != "" || r.podmanRunRoot != "" {
			return "", false, usageError{errors.New("--podman-socket reaches Podman through its service, --podman-root and --podman-runroot read its storage directly: give one or the other")}
		}
		if strings.HasPrefix(r.podmanSocket, "/") {
			return "unix://" + r.podmanSocket, true, nil
		}
		return r.podmanSocket, true, nil
	}
	if r.podmanRoot != "" || r.podmanRunRoot != "" {
		return "", false, nil
	}
	if fi, err := os.Stat(defaultPodmanSocket); err == nil && fi.Mode()&os.ModeSocket != 0 {
		return "unix://" + defaultPodmanSocket, false, nil
	}
	return "", false, nil
}

// dialPodman reaches Podman's service through the Docker-compatible API
// (snapshot/docker): what answers there must name itself Podman.
func dialPodman(ctx context.Context, host string) (*docker.Engine, error) {
	rt, err := docker.Dial(ctx, docker.WithHost(host))
	if err != nil {
		return nil, err
	}
	if rt.Info().Runtime != "podman" {
		rt.Close()
		return nil, fmt.Errorf("%w: %s answers the Docker API but its version names no Podman Engine: not Podman's service (use --runtime docker with DOCKER_HOST)", engine.ErrEngine, host)
	}
	return rt, nil
}

// runtimeNames are the runtimes this build talks to, in the order auto
// tries them.
var runtimeNames = []string{"docker", "containerd", "podman"}

// namedRuntime is one runtime dialed, with the name it is shown by
// ("containerd/k8s.io" for a containerd namespace).
type namedRuntime struct {
	name string
	rt   engine.Runtime
}

// dialRuntimes connects to one runtime: the one place cmd chooses. A
// containerd with no --namespace is one runtime per namespace (but
// Docker's own, moby: those containers are Docker's).
func dialRuntimes(ctx context.Context, name string, rf runtimeFlags) ([]namedRuntime, error) {
	switch name {
	case "docker":
		rt, err := docker.Dial(ctx)
		if err != nil {
			return nil, err
		}
		return []namedRuntime{{name, rt}}, nil
	case "podman":
		host, named, err := rf.podmanHost()
		if err != nil {
			return nil, err
		}
		if host != "" {
			rt, err := dialPodman(ctx, host)
			if err == nil {
				return []namedRuntime{{name, rt}}, nil
			}
			if named {
				return nil, err
			}
			// The default socket with no service behind it: the
			// storage, read directly.
		}
		rt, err := podman.Open(podman.Options{GraphRoot: rf.podmanRoot, RunRoot: rf.podmanRunRoot})
		if err != nil {
			return nil, err
		}
		return []namedRuntime{{name, rt}}, nil
	case "containerd":
		if rf.namespace != "" {
			rt, err := containerd.Dial(ctx, rf.address, rf.namespace)
			if err != nil {
				return nil, err
			}
			return []namedRuntime{{name + "/" + rf.namespace, rt}}, nil
		}
		first, err := containerd.Dial(ctx, rf.address, "default")
		if err != nil {
			return nil, err
		}
		nss, err := first.Namespaces(ctx)
		first.Close()
		if err != nil {
			return nil, err
		}
		var out []namedRuntime
		for _, ns := range nss {
			if ns == containerd.DockerNamespace {
				continue
			}
			rt, err := containerd.Dial(ctx, rf.address, ns)
			if err != nil {
				closeAll(out)
				return nil, err
			}
			out = append(out, namedRuntime{name + "/" + ns, rt})
		}
		return out, nil
	}
	return nil, usageError{fmt.Errorf("--runtime %q: this build knows %v (or auto)", name, runtimeNames)}
}

func closeAll(rts []namedRuntime) {
	for _, r := range rts {
		r.rt.Close()
	}
}

// chosen are the names --runtime asks for: one, or all for auto.
func (r runtimeFlags) chosen() ([]string, error) {
	if r.name == "" || r.name == "auto" {
		return runtimeNames, nil
	}
	for _, n := range runtimeNames {
		if n == r.name {
			return []string{n}, nil
		}
	}
	return nil, usageError{fmt.Errorf("--runtime %q: this build knows %v (or auto)", r.name, runtimeNames)}
}

// absent says that a runtime is not installed on this host at all, as
// far as auto can tell without asking it: no socket, no storage, and no
// flag or environment naming one. Auto passes over such a runtime quietly;
// one that is there and fails is an error.
func (r runtimeFlags) absent(name string) bool {
	missing := func(p string) bool {
		_, err := os.Stat(p)
		return errors.Is(err, fs.ErrNotExist)
	}
	switch name {
	case "docker":
		return os.Getenv("DOCKER_HOST") == "" && missing("/var/run/docker.sock")
	case "containerd":
		return missing(r.address)
	case "podman":
		if r.podmanSocket != "" || r.podmanRoot != "" || r.podmanRunRoot != "" {
			return false
		}
		return missing(defaultPodmanSocket) && missing(podman.DefaultGraphRoot)
	}
	return false
}

// runtimeFor dials the runtime a capture of refs talks to: the one
// --runtime names, else (auto) the one reachable runtime that knows every
// ref. Two that do is an error naming both; none reachable is the first
// runtime's own error (exit 8), none knowing them an ErrNoSuchObject.
func (e *env) runtimeFor(rf runtimeFlags, refs []string) (engine.Runtime, error) {
	names, err := rf.chosen()
	if err != nil {
		return nil, err
	}
	var candidates []namedRuntime
	// firstErr is the first error of a runtime that is there; absentErr
	// that of one that is not installed (the answer only when no runtime
	// is there at all: Docker's, first, says how to reach one).
	var firstErr, absentErr error
	for _, name := range names {
		rts, err := dialRuntimes(e.ctx, name, rf)
		if err != nil {
			switch {
			case len(names) == 1:
				return nil, err // the runtime asked for: its own error
			case rf.absent(name):
				if absentErr == nil {
					absentErr = err
				}
			case firstErr == nil:
				firstErr = err
			}
			continue
		}
		candidates = append(candidates, rts...)
	}
	candidates = dedupe(candidates)
	if len(candidates) == 0 {
		switch {
		case firstErr != nil:
			return nil, firstErr
		case absentErr != nil:
			return nil, absentErr
		}
		return nil, fmt.Errorf("%w: no namespace to look in", engine.ErrNoSuchObject)
	}
	// The one runtime named, or nothing to look for: no asking around.
	if len(names) == 1 || len(refs) == 0 {
		closeAll(candidates[1:])
		return candidates[0].rt, nil
	}
	var found, asked []namedRuntime
	for _, c := range candidates {
		asked = append(asked, c)
		if knowsAll(e.ctx, c.rt, refs) {
			found = append(found, c)
		} else {
			c.rt.Close()
		}
	}
	switch {
	case len(found) == 1:
		return found[0].rt, nil
	case len(found) == 0 && firstErr != nil:
		// A runtime could not be asked: the containers may be its. Its
		// error is the answer (exit 8), with what the others said.
		return nil, fmt.Errorf("%w (and %s: no %s)", firstErr, names2(asked), strings.Join(refs, ", "))
	case len(found) == 0:
		return nil, fmt.Errorf("%w: no reachable runtime knows %s (asked %s)", engine.ErrNoSuchObject, strings.Join(refs, ", "), names2(asked))
	}
	closeAll(found)
	return nil, usageError{fmt.Errorf("%s: known to %s; choose one with --runtime (and --namespace)", strings.Join(refs, ", "), strings.ReplaceAll(names2(found), ", ", " and "))}
}

// storageKey names the storage a runtime reads, to tell one runtime reached
// twice from two: the Docker API at DOCKER_HOST may be Podman's service
// (podman-docker links /var/run/docker.sock to its socket), which --runtime
// podman reaches too, or whose storage it reads directly. The kind, the
// host's name and the graph root (real path, on this host) say which
// storage; "" when the runtime does not say (containerd: one per
// namespace, never twice).
func storageKey(rt engine.Runtime) string {
	g, ok := rt.(interface{ GraphRoot() string })
	if !ok || g.GraphRoot() == "" {
		return ""
	}
	info, root := rt.Info(), g.GraphRoot()
	if info.Local {
		if r, err := filepath.EvalSymlinks(root); err == nil {
			root = r
		}
	}
	kind := info.Runtime
	if kind == "" {
		kind = "docker"
	}
	return kind + "\x00" + info.Name + "\x00" + root
}

// dedupe keeps one of the candidates that read the same storage (Podman
// reached at DOCKER_HOST and at its own socket), so that a container is
// not "known to both": the one reached under its own name (podman rather
// than docker) is kept, the others closed.
func dedupe(cands []namedRuntime) []namedRuntime {
	var out []namedRuntime
	at := map[string]int{}
	for _, c := range cands {
		k := storageKey(c.rt)
		i, seen := at[k]
		switch {
		case k == "" || !seen:
			at[k] = len(out)
			out = append(out, c)
		case c.name == c.rt.Info().Runtime && out[i].name != out[i].rt.Info().Runtime:
			out[i].rt.Close()
			out[i] = c
		default:
			c.rt.Close()
		}
	}
	return out
}

func names2(rts []namedRuntime) string {
	var s []string
	for _, r := range rts {
		s = append(s, r.name)
	}
	return strings.Join(s, ", ")
}

// knowsAll says whether rt has every container of refs.
func knowsAll(ctx context.Context, rt engine.Runtime, refs []string) bool {
	for _, ref := range refs {
		if _, err := rt.Container(ctx, ref); err != nil {
			return false
		}
	}
	return true
}
