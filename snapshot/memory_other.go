//go:build !linux

package snapshot

import (
	"errors"
	"fmt"

	"github.com/amber-forensics/amber/manifest"
)

// ErrProcAccess: see memory.go (Linux).
var ErrProcAccess = errors.New("snapshot: cannot read the container's processes in /proc")

// errNotInContainer: see memory.go (Linux).
var errNotInContainer = errors.New("not in the container's cgroup")

// Process memory is read from Linux's /proc (cgroup, maps, mem): elsewhere
// there is none to read. These stubs refuse, naming why.

func containerPIDs(initPID int, id string) ([]int, error) {
	return nil, fmt.Errorf("listing the container's processes: %w", errNeedsLinux)
}

func inContainer(pid int, id string) error {
	return fmt.Errorf("process %d: %w", pid, errNeedsLinux)
}

func dumpProcess(pid int, mw *prefixed, progress func(string)) (manifest.Process, error) {
	return manifest.Process{PID: pid}, fmt.Errorf("process %d's memory: %w", pid, errNeedsLinux)
}
