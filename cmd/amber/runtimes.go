package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/snapshot/docker"
	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/podman"
)

// runtimeFlags choose the container runtime a command talks to.
type runtimeFlags struct {
	name string // "auto" or one of runtimeNames
	// podmanRoot and podmanRunRoot are Podman's storage (podman --root,
	// --runroot), read directly.
	podmanRoot, podmanRunRoot string
}

func (r *runtimeFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&r.name, "runtime", "auto", "container runtime: auto (every one reachable), docker, or podman (its storage, read directly: no service needed)")
	f.StringVar(&r.podmanRoot, "podman-root", podman.DefaultGraphRoot, "Podman's storage graph root (podman --root)")
	f.StringVar(&r.podmanRunRoot, "podman-runroot", podman.DefaultRunRoot, "Podman's run root (podman --runroot), where running containers' pidfiles are")
}

// runtimeNames are the runtimes this build talks to, in the order auto
// tries them.
var runtimeNames = []string{"docker", "podman"}

// dialRuntime connects to one runtime: the one place cmd chooses.
func dialRuntime(ctx context.Context, name string, rf runtimeFlags) (engine.Runtime, error) {
	switch name {
	case "docker":
		return docker.Dial(ctx)
	case "podman":
		return podman.Open(podman.Options{GraphRoot: rf.podmanRoot, RunRoot: rf.podmanRunRoot})
	}
	return nil, usageError{fmt.Errorf("--runtime %q: this build knows %v (or auto)", name, runtimeNames)}
}

// chosenRuntimes are the names --runtime asks for: one, or all for auto.
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

// runtimeFor dials the runtime a capture of refs talks to: the one
// --runtime names, else (auto) the one reachable runtime that knows every
// ref. Two that do is an error naming both; none reachable is the first
// runtime's own error (exit 8), none knowing them an ErrNoSuchObject.
func (e *env) runtimeFor(rf runtimeFlags, refs []string) (engine.Runtime, error) {
	names, err := rf.chosen()
	if err != nil {
		return nil, err
	}
	if len(names) == 1 || len(refs) == 0 {
		return dialRuntime(e.ctx, names[0], rf)
	}
	var found []engine.Runtime
	var foundNames, asked []string
	var firstErr error
	for _, name := range names {
		rt, err := dialRuntime(e.ctx, name, rf)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		asked = append(asked, name)
		if knowsAll(e.ctx, rt, refs) {
			found = append(found, rt)
			foundNames = append(foundNames, name)
			continue
		}
		rt.Close()
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		for _, rt := range found {
			rt.Close()
		}
		return nil, usageError{fmt.Errorf("%s: known to %s; choose one with --runtime", strings.Join(refs, ", "), strings.Join(foundNames, " and "))}
	case len(asked) == 0:
		return nil, firstErr
	}
	return nil, fmt.Errorf("%w: no reachable runtime knows %s (asked %s)", engine.ErrNoSuchObject, strings.Join(refs, ", "), strings.Join(asked, ", "))
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
