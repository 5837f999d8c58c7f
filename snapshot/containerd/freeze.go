package containerd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/amber-forensics/amber/snapshot/engine"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// freezerFile finds the cgroup freezer file of the task whose main
// process is pid, as runc pauses it: cgroup v1's
// freezer/<path>/freezer.state, else cgroup v2's <path>/cgroup.freeze. It
// is kept when amber pauses a task so that amber can thaw it itself if
// containerd goes away before the task is resumed: the shim and the
// frozen processes outlive containerd, and nobody else would thaw them.
// The path must name the container and be what it says (no link out).
func freezerFile(pid int, id string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
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
	var dir, file string
	switch {
	case v1 != "":
		dir, file = filepath.Join(cgroupRoot, "freezer", filepath.Clean("/"+v1)), "freezer.state"
	case v2 != "":
		dir, file = filepath.Join(cgroupRoot, filepath.Clean("/"+v2)), "cgroup.freeze"
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			// A hybrid host mounts the unified hierarchy here.
			dir = filepath.Join(cgroupRoot, "unified", filepath.Clean("/"+v2))
		}
	default:
		return "", fmt.Errorf("process %d is in no freezer cgroup", pid)
	}
	if !strings.Contains(filepath.Base(dir), id) {
		return "", engine.Claimf("process %d's cgroup %s does not name container %s", pid, dir, id)
	}
	if real, err := filepath.EvalSymlinks(dir); err != nil || real != dir {
		return "", engine.Claimf("container %s's cgroup %s is really %s (%v): refused", id, dir, real, err)
	}
	return filepath.Join(dir, file), nil
}

// settle is how long thaw watches the cgroup after thawing it: a pause
// containerd passed on to the task's shim just before it went away may
// still be carried out by the shim.
const settle = time.Second

// thaw thaws the cgroup whose freezer file is file, and keeps it thawed
// for settle; engine.ErrNotPaused when it is gone (with its processes) or
// was never frozen meanwhile.
func thaw(file string) error {
	v1 := filepath.Base(file) == "freezer.state"
	value := "0"
	if v1 {
		value = "THAWED"
	}
	thawed := false
	for end := time.Now().Add(settle); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(file)
		if os.IsNotExist(err) {
			break
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) == value {
			continue
		}
		w, err := os.OpenFile(file, os.O_WRONLY, 0) // never created: the kernel's file or none
		if err != nil {
			return err
		}
		_, err = w.Write([]byte(value))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		thawed = true
	}
	if !thawed {
		return engine.ErrNotPaused
	}
	return nil
}
