package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/procmem"
)

type psRow struct {
	engine.Summary
	// PIDs are every process of the container (its cgroup), the first
	// one first; only the first when /proc cannot tell.
	PIDs []int `json:"pids,omitempty"`
}

func (e *env) newPsCmd() *cobra.Command {
	var rf runtimeFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "ps",
		Short: "List the containers of every reachable runtime",
		Long: `ps lists what each reachable container runtime runs, running or not:
the runtime, the namespace, the Kubernetes pod (from the labels the kubelet
sets), the container's name and ID, its image, its state, and its
processes (from /proc: every process of the container's cgroup). It
changes nothing in any runtime. A runtime that cannot be reached is named
on stderr; ps fails (exit 8) only when none can.`,
		Example: `  amber ps
  amber ps --runtime docker --json | jq -r '.containers[] | select(.state=="running") | .name'`,
		Args: argsRange(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runPs(rf, asJSON) },
	}
	rf.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return c
}

func (e *env) runPs(rf runtimeFlags, asJSON bool) error {
	names, err := rf.chosen()
	if err != nil {
		return err
	}
	rows := []psRow{}
	var unreachable []string
	var firstErr error
	seen := map[string]bool{}
	listed := 0
	for _, name := range names {
		ss, err := e.listRuntime(name, rf, seen)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			// A runtime not installed here is passed over quietly by
			// auto; one that is there and fails is named.
			if len(names) == 1 || !rf.absent(name) {
				unreachable = append(unreachable, name+": "+err.Error())
			}
			continue
		}
		listed++
		for _, s := range ss {
			rows = append(rows, psRow{Summary: s, PIDs: pidsOf(s)})
		}
	}
	if listed == 0 {
		return firstErr
	}
	if asJSON {
		out := map[string]any{"containers": rows}
		if unreachable != nil {
			out["unreachable"] = unreachable
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, u := range unreachable {
		fmt.Fprintf(e.stderr, "amber: not reachable: %s\n", escapeName(u))
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNTIME\tNAMESPACE\tPOD\tCONTAINER\tID\tIMAGE\tSTATE\tPIDS")
	for _, r := range rows {
		id := r.ID
		if len(id) > 12 {
			id = id[:12]
		}
		pids := make([]string, len(r.PIDs))
		for i, p := range r.PIDs {
			pids[i] = strconv.Itoa(p)
		}
		// Names, images and pods are the runtime's (and a container's
		// creator's) text: escaped.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Runtime, dash(escapeName(r.Namespace)), dash(escapeName(r.Pod)),
			escapeName(r.Name), escapeName(id), escapeName(r.Image), escapeName(r.State), dash(strings.Join(pids, ",")))
	}
	return tw.Flush()
}

// listRuntime dials one runtime (each of its namespaces) and lists its
// containers, but those of a storage seen already (storageKey: Podman's
// service reached at DOCKER_HOST too).
func (e *env) listRuntime(name string, rf runtimeFlags, seen map[string]bool) ([]engine.Summary, error) {
	rts, err := dialRuntimes(e.ctx, name, rf)
	if err != nil {
		return nil, err
	}
	defer closeAll(rts)
	var out []engine.Summary
	for _, r := range rts {
		if k := storageKey(r.rt); k != "" {
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		l, ok := r.rt.(engine.Lister)
		if !ok {
			return nil, fmt.Errorf("%s: listing containers is not supported", r.name)
		}
		ss, err := l.List(e.ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, ss...)
	}
	return out, nil
}

// pidsOf lists a running container's processes from its cgroup; the
// first process alone when /proc cannot tell (no access, not Linux).
func pidsOf(s engine.Summary) []int {
	if s.Pid <= 0 {
		return nil
	}
	pids, err := procmem.ContainerPIDs(s.Pid, s.ID, procmem.Options{})
	if err != nil || len(pids) == 0 {
		return []int{s.Pid}
	}
	return pids
}
