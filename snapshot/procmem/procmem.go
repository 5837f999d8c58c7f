package procmem

import (
	"errors"
	"os"
)

// DefaultMaxBytes is the per-process bound when Options.MaxBytes is 0.
const DefaultMaxBytes = 64 << 30

// Options configure the reading of processes.
type Options struct {
	// MaxBytes bounds the bytes dumped from one process: mappings past it
	// (a sanitizer's terabytes of shadow memory, a huge sparse file
	// mapped readable) are recorded with no bytes. 0 means
	// DefaultMaxBytes.
	MaxBytes uint64
	// Root is where /proc is; "" means /proc. Tests point it at a made-up
	// one.
	Root string
}

func (o Options) maxBytes() uint64 {
	if o.MaxBytes == 0 {
		return DefaultMaxBytes
	}
	return o.MaxBytes
}

func (o Options) root() string {
	if o.Root == "" {
		return "/proc"
	}
	return o.Root
}

// ErrAccess reports that /proc of the container's processes cannot be read
// (not root, or a hardened /proc). Its text is the one amber has always
// printed, from before this package was split out of snapshot.
var ErrAccess = errors.New("snapshot: cannot read the container's processes in /proc")

// ErrNotInContainer reports a process whose cgroup does not name the
// container: the engine's PID is not the container's (or was reused).
var ErrNotInContainer = errors.New("not in the container's cgroup")

// ErrNeedsLinux: process memory is read from Linux's /proc (cgroup, maps,
// mem); elsewhere there is none to read.
var ErrNeedsLinux = errors.New("process memory capture needs Linux")

// GoneError reports that the container's init process is not (or no
// longer) in /proc: the container went away. Detail says how it was found
// missing.
type GoneError struct{ Detail string }

func (e *GoneError) Error() string { return e.Detail }

// Process is what was read of one process: its /proc files and the plan of
// its core. Once its Core is written, Bytes, Unreadable and Lost are
// complete.
type Process struct {
	PID int
	// Comm is the process's command name (/proc/PID/comm), or "unknown"
	// when the process had exited before it was read (Lost says so; it
	// has no files and no core).
	Comm string
	// Files are /proc/PID's files as they are, and "links" (exe, cwd,
	// root) and "fds" (open files with their fdinfo), in the order to
	// store them; a name holds no '/' ("net/tcp" is "net_tcp").
	Files []File
	// Mappings is the number of lines of maps.
	Mappings int
	// Bytes is how many bytes of the mappings the core holds (zeros where
	// unreadable included).
	Bytes int64
	// Unreadable lists the readable ranges whose bytes the core does not
	// hold, and why.
	Unreadable []Region
	// Lost says what could not be taken, in the order found.
	Lost []string

	dir  string
	core *coreLayout
}

// File is one small file of a process.
type File struct {
	Name string
	Data []byte
}

// Region is a range of a process's address space.
type Region struct {
	Start, End uint64
	Reason     string
}

// CoreSize is the size of the process's core file, or -1 when there is
// none to write (Lost says why).
func (p *Process) CoreSize() int64 {
	if p.core == nil {
		return -1
	}
	return p.core.size
}

// Core is a process's core file being read from its memory.
type Core struct {
	p    *Process
	mem  *os.File
	merr error // why mem could not be opened: its bytes are zeros
	gone bool  // the process exited while its memory was read
}

// Size is the core's size: WriteTo writes exactly this many bytes.
func (c *Core) Size() int64 { return c.p.core.size }

// Close closes the process's memory.
func (c *Core) Close() error {
	if c.mem == nil {
		return nil
	}
	return c.mem.Close()
}
