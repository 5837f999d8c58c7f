package podman

import (
	"context"
	"fmt"
	"os"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/freezer"
	"github.com/amber-forensics/amber/snapshot/procmem"
)

// containerFreezer is the freezer of the running container's cgroup.
func (s *Storage) containerFreezer(id string) (freezer.Freezer, error) {
	st := s.state(id)
	if !st.Running {
		return freezer.Freezer{}, &engine.Fault{Kind: engine.ErrEngine, Err: fmt.Errorf("container %s is not running (%s)", id, st.Note)}
	}
	if err := procmem.InContainer(st.Pid, id, procmem.Options{Root: s.proc}); err != nil {
		return freezer.Freezer{}, err
	}
	return freezer.Of(s.proc, s.cgroup, st.Pid, id)
}

// Pause freezes the container's cgroup, as podman pause does, and
// remembers it: Unpause thaws that same cgroup.
func (s *Storage) Pause(ctx context.Context, id string) error {
	if s.offline {
		return &engine.Fault{Kind: engine.ErrEngine, Err: fmt.Errorf("container %s is on a dead host's disk: nothing runs to pause", id)}
	}
	fz, err := s.containerFreezer(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.frozen[id] = fz
	s.mu.Unlock()
	return fz.Set(ctx, true)
}

// Unpause thaws the cgroup Pause froze; engine.ErrNotPaused when it was
// not frozen.
func (s *Storage) Unpause(ctx context.Context, id string) error {
	if s.offline {
		return engine.ErrNotPaused
	}
	s.mu.Lock()
	fz, ok := s.frozen[id]
	s.mu.Unlock()
	if !ok {
		var err error
		if fz, err = s.containerFreezer(id); err != nil {
			return err
		}
	}
	frozen, err := fz.Frozen()
	if os.IsNotExist(err) {
		return engine.ErrNotPaused // its cgroup is gone with its processes
	}
	if err != nil {
		return err
	}
	if !frozen {
		return engine.ErrNotPaused
	}
	if err := fz.Set(ctx, false); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.frozen, id)
	s.mu.Unlock()
	return nil
}
