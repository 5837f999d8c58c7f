package snapshot

import (
	"context"
	"errors"
	"fmt"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// The runtime's errors, classified by snapshot/engine so that cmd's exit
// codes do not depend on which runtime failed.
var (
	// ErrEngine reports a container runtime that cannot be reached or
	// that failed.
	ErrEngine = engine.ErrEngine
	// ErrNoSuchObject reports a container or image the runtime does not
	// know.
	ErrNoSuchObject = engine.ErrNoSuchObject
	// ErrEngineClaim reports a runtime's answer that amber refuses to act
	// on (errors.Is(err, ErrEngine)).
	ErrEngineClaim = engine.ErrEngineClaim
)

// ErrNotLocal reports an operation that needs the engine's host (memory,
// the overlay upper directory) on a remote engine.
var ErrNotLocal = errors.New("snapshot: the engine is not on this host")

// ErrContainerGone reports a container that stopped existing mid-capture.
var ErrContainerGone = errors.New("snapshot: the container went away during the capture")

// inspect returns a container as the runtime inspects it. The ID names
// the container's cgroup, its layers and its files in the archive: only a
// real one is taken, whichever runtime answers (engine.CheckID: 64 hex
// digits, or the runtime's own grammar).
func inspect(ctx context.Context, rt engine.Runtime, ref string) (*engine.Container, error) {
	ci, err := rt.Container(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := engine.CheckID(rt, ci.ID); err != nil {
		return nil, fmt.Errorf("container %s: %w", ref, err)
	}
	return ci, nil
}
