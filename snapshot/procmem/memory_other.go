//go:build !linux

package procmem

import (
	"fmt"
	"io"
)

// Process memory is read from Linux's /proc (cgroup, maps, mem): elsewhere
// there is none to read. These stubs refuse, naming why (ErrNeedsLinux).

// ContainerPIDs refuses: see ErrNeedsLinux.
func ContainerPIDs(initPID int, id string, opt Options) ([]int, error) {
	return nil, fmt.Errorf("listing the container's processes: %w", ErrNeedsLinux)
}

// InContainer refuses: see ErrNeedsLinux.
func InContainer(pid int, id string, opt Options) error {
	return fmt.Errorf("process %d: %w", pid, ErrNeedsLinux)
}

// Read refuses: see ErrNeedsLinux.
func Read(pid int, opt Options) (*Process, error) {
	return nil, fmt.Errorf("process %d's memory: %w", pid, ErrNeedsLinux)
}

// OpenCore refuses: see ErrNeedsLinux.
func (p *Process) OpenCore() (*Core, error) {
	return nil, fmt.Errorf("process %d's memory: %w", p.PID, ErrNeedsLinux)
}

// WriteTo refuses: see ErrNeedsLinux.
func (c *Core) WriteTo(w io.Writer) (int64, error) {
	return 0, fmt.Errorf("process %d's memory: %w", c.p.PID, ErrNeedsLinux)
}
