package podman

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/amber-forensics/amber/snapshot/engine"
	"github.com/amber-forensics/amber/snapshot/procmem"
)

// freezer is the cgroup freezer of a container's cgroup, as the runtime
// itself pauses it (runc pause, crun pause): cgroup v1's
// freezer/<path>/freezer.state (FROZEN, THAWED), or cgroup v2's
// <path>/cgroup.freeze (1, 0), whose cgroup.events says when the
// processes are frozen.
type freezer struct {
	dir string
	v1  bool
}

// freezerOf finds the freezer of the cgroup /proc/<pid>/cgroup names: v1's
// freezer hierarchy when the process is in one, else v2's unified one.
// The path must name the container and lie under the cgroup mount.
func (s *Storage) freezerOf(pid int, id string) (freezer, error) {
	b, err := os.ReadFile(filepath.Join(s.proc, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return freezer{}, err
	}
	var v1, v2 string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			v2 = f[2]
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "freezer" {
				v1 = f[2]
			}
		}
	}
	fz := freezer{}
	switch {
	case v1 != "":
		fz.dir, fz.v1 = filepath.Join(s.cgroup, "freezer", filepath.Clean("/"+v1)), true
	case v2 != "":
		fz.dir = filepath.Join(s.cgroup, filepath.Clean("/"+v2))
		if _, err := os.Stat(filepath.Join(fz.dir, "cgroup.freeze")); err != nil {
			// A hybrid host mounts the unified hierarchy here.
			fz.dir = filepath.Join(s.cgroup, "unified", filepath.Clean("/"+v2))
		}
	default:
		return freezer{}, fmt.Errorf("process %d is in no freezer cgroup", pid)
	}
	if !strings.Contains(fz.dir, id) {
		return freezer{}, engine.Claimf("process %d's cgroup %s does not name container %s", pid, fz.dir, id)
	}
	real, err := filepath.EvalSymlinks(fz.dir)
	if err != nil {
		return freezer{}, err
	}
	if real != fz.dir {
		return freezer{}, engine.Claimf("container %s's cgroup %s is really %s: refused", id, fz.dir, real)
	}
	return fz, nil
}

func (f freezer) file() string {
	if f.v1 {
		return filepath.Join(f.dir, "freezer.state")
	}
	return filepath.Join(f.dir, "cgroup.freeze")
}

// frozen says the cgroup is asked to be frozen (or is freezing).
func (f freezer) frozen() (bool, error) {
	b, err := os.ReadFile(f.file())
	if err != nil {
		return false, err
	}
	v := strings.TrimSpace(string(b))
	if f.v1 {
		return v != "THAWED", nil
	}
	return v == "1", nil
}

// set asks the kernel to freeze or thaw the cgroup, and when freezing
// waits until every process is frozen.
func (f freezer) set(ctx context.Context, freeze bool) error {
	v := map[[2]bool]string{{true, true}: "FROZEN", {true, false}: "THAWED", {false, true}: "1", {false, false}: "0"}[[2]bool{f.v1, freeze}]
	w, err := os.OpenFile(f.file(), os.O_WRONLY, 0) // never created: the kernel's file or none
	if err != nil {
		return err
	}
	_, err = w.Write([]byte(v))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	for freeze {
		var done bool
		if f.v1 {
			b, err := os.ReadFile(f.file())
			if err != nil {
				return err
			}
			done = strings.TrimSpace(string(b)) == "FROZEN"
		} else {
			b, err := os.ReadFile(filepath.Join(f.dir, "cgroup.events"))
			if err != nil {
				return err
			}
			done = bytes.Contains(b, []byte("frozen 1"))
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// containerFreezer is the freezer of the running container's cgroup.
func (s *Storage) containerFreezer(id string) (freezer, error) {
	st := s.state(id)
	if !st.Running {
		return freezer{}, &engine.Fault{Kind: engine.ErrEngine, Err: fmt.Errorf("container %s is not running (%s)", id, st.Note)}
	}
	if err := procmem.InContainer(st.Pid, id, procmem.Options{Root: s.proc}); err != nil {
		return freezer{}, err
	}
	return s.freezerOf(st.Pid, id)
}

// Pause freezes the container's cgroup, as podman pause does, and
// remembers it: Unpause thaws that same cgroup.
func (s *Storage) Pause(ctx context.Context, id string) error {
	fz, err := s.containerFreezer(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.frozen[id] = fz
	s.mu.Unlock()
	return fz.set(ctx, true)
}

// Unpause thaws the cgroup Pause froze; engine.ErrNotPaused when it was
// not frozen.
func (s *Storage) Unpause(ctx context.Context, id string) error {
	s.mu.Lock()
	fz, ok := s.frozen[id]
	s.mu.Unlock()
	if !ok {
		var err error
		if fz, err = s.containerFreezer(id); err != nil {
			return err
		}
	}
	frozen, err := fz.frozen()
	if os.IsNotExist(err) {
		return engine.ErrNotPaused // its cgroup is gone with its processes
	}
	if err != nil {
		return err
	}
	if !frozen {
		return engine.ErrNotPaused
	}
	if err := fz.set(ctx, false); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.frozen, id)
	s.mu.Unlock()
	return nil
}
