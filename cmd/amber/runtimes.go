package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/snapshot/docker"
	"github.com/amber-forensics/amber/snapshot/engine"
)

// runtimeFlags choose the container runtime a command talks to.
type runtimeFlags struct {
	name      string // "auto" or one of runtimeNames
	namespace string
	address   string
}

func (r *runtimeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.name, "runtime", "auto", "container runtime: auto (every one reachable), or docker")
}

// runtimeNames are the runtimes this build talks to, in the order auto
// tries them.
var runtimeNames = []string{"docker"}

// dialRuntime connects to one runtime: the one place cmd chooses.
func dialRuntime(ctx context.Context, name string, _ runtimeFlags) (engine.Runtime, error) {
	switch name {
	case "docker":
		return docker.Dial(ctx)
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
