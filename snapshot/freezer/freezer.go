package freezer

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
)

// Freezer is one cgroup's freezer.
type Freezer struct {
	dir string
	v1  bool
}

// Of finds the freezer of the cgroup that proc/<pid>/cgroup names
// (proc: procfs, "" for /proc; cgroup: the cgroup mount, "" for
// /sys/fs/cgroup): v1's freezer hierarchy when the process is in one, else
// v2's unified one (also where a hybrid host mounts it, unified/). The
// cgroup's own directory name must contain the container's ID.
func Of(proc, cgroup string, pid int, id string) (Freezer, error) {
	if proc == "" {
		proc = "/proc"
	}
	if cgroup == "" {
		cgroup = "/sys/fs/cgroup"
	}
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return Freezer{}, err
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
	fz := Freezer{}
	switch {
	case v1 != "":
		fz.dir, fz.v1 = filepath.Join(cgroup, "freezer", filepath.Clean("/"+v1)), true
	case v2 != "":
		fz.dir = filepath.Join(cgroup, filepath.Clean("/"+v2))
		if _, err := os.Stat(filepath.Join(fz.dir, "cgroup.freeze")); err != nil {
			// A hybrid host mounts the unified hierarchy here.
			fz.dir = filepath.Join(cgroup, "unified", filepath.Clean("/"+v2))
		}
	default:
		return Freezer{}, fmt.Errorf("process %d is in no freezer cgroup", pid)
	}
	if !names(fz.dir, id) {
		return Freezer{}, engine.Claimf("process %d's cgroup %s does not name container %s", pid, fz.dir, id)
	}
	if real, err := filepath.EvalSymlinks(fz.dir); err != nil || real != fz.dir {
		return Freezer{}, engine.Claimf("container %s's cgroup %s is really %s (%v): refused", id, fz.dir, real, err)
	}
	return fz, nil
}

// names says whether a directory of the cgroup path names the container:
// its full 64-hex ID anywhere in it (libpod-<id>.scope, cri-containerd-<id>
// .scope, <id>), another ID only as the whole element or a runtime's
// <prefix>-<id>.scope (a container "web" is not "webapp").
func names(dir, id string) bool {
	if id == "" {
		return false
	}
	for _, e := range strings.Split(dir, "/") {
		switch {
		case e == id, strings.HasSuffix(e, "-"+id+".scope"):
			return true
		case engine.IsFullID(id) && strings.Contains(e, id):
			return true
		}
	}
	return false
}

// File is the freezer's control file.
func (f Freezer) File() string {
	if f.v1 {
		return filepath.Join(f.dir, "freezer.state")
	}
	return filepath.Join(f.dir, "cgroup.freeze")
}

// Frozen says the cgroup is asked to be frozen (or is freezing).
func (f Freezer) Frozen() (bool, error) {
	b, err := os.ReadFile(f.File())
	if err != nil {
		return false, err
	}
	v := strings.TrimSpace(string(b))
	if f.v1 {
		return v != "THAWED", nil
	}
	return v == "1", nil
}

func (f Freezer) value(freeze bool) string {
	return map[[2]bool]string{{true, true}: "FROZEN", {true, false}: "THAWED", {false, true}: "1", {false, false}: "0"}[[2]bool{f.v1, freeze}]
}

func (f Freezer) write(v string) error {
	w, err := os.OpenFile(f.File(), os.O_WRONLY, 0) // never created: the kernel's file or none
	if err != nil {
		return err
	}
	_, err = w.Write([]byte(v))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// Set asks the kernel to freeze or thaw the cgroup, and when freezing
// waits until every process is frozen.
func (f Freezer) Set(ctx context.Context, freeze bool) error {
	if err := f.write(f.value(freeze)); err != nil {
		return err
	}
	for freeze {
		var done bool
		if f.v1 {
			b, err := os.ReadFile(f.File())
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

// ThawAndHold thaws the cgroup and keeps it thawed for settle (a freeze
// already on its way, from a runtime's shim, may still land);
// engine.ErrNotPaused when it is gone (with its processes) or was never
// frozen meanwhile.
func (f Freezer) ThawAndHold(settle time.Duration) error {
	value := f.value(false)
	thawed := false
	for end := time.Now().Add(settle); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(f.File())
		if os.IsNotExist(err) {
			break
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) == value {
			continue
		}
		if err := f.write(value); err != nil {
			return err
		}
		thawed = true
	}
	if !thawed {
		return engine.ErrNotPaused
	}
	return nil
}
