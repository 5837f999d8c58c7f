package snapshot

import (
	"errors"
	"fmt"
	"strings"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/procmem"
)

// A container's processes' memory, taken by procmem, stored as members
// memory/<pid>-<comm>/{core,maps,...} and recorded as manifest.Process.

// ErrProcAccess reports that /proc of the container's processes cannot be
// read (not root, or a hardened /proc).
var ErrProcAccess = procmem.ErrAccess

// errNotInContainer reports a process whose cgroup does not name the
// container: the engine's PID is not the container's (or was reused).
var errNotInContainer = procmem.ErrNotInContainer

// containerPIDs lists the PIDs of the container's processes (see
// procmem.ContainerPIDs); an init process gone is ErrContainerGone.
func containerPIDs(initPID int, id string, opt procmem.Options) ([]int, error) {
	pids, err := procmem.ContainerPIDs(initPID, id, opt)
	var gone *procmem.GoneError
	if errors.As(err, &gone) {
		return nil, fmt.Errorf("%w: %s", ErrContainerGone, gone.Detail)
	}
	return pids, err
}

// inContainer: see procmem.InContainer.
func inContainer(pid int, id string, opt procmem.Options) error {
	return procmem.InContainer(pid, id, opt)
}

type memberWriter interface {
	add(name string, data []byte) error
	begin(name string, size int64) error
	write(p []byte) error
	end() error
}

// memberStream writes into the member begun on a memberWriter.
type memberStream struct{ mw memberWriter }

func (s memberStream) Write(p []byte) (int, error) {
	if err := s.mw.write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// dumpProcess writes memory/<pid>-<comm>/{core,maps,...} for one process.
// A process that exits on the way is recorded as such; what was taken
// stays. Only a failing archive, or a process amber may not read, is an
// error.
func dumpProcess(pid int, mw memberWriter, opt procmem.Options, progress func(string)) (manifest.Process, error) {
	p := manifest.Process{PID: pid}
	pr, err := procmem.Read(pid, opt)
	if err != nil {
		return p, err
	}
	p.Comm = pr.Comm
	safe := manifest.PathSafe(p.Comm)
	if safe == "" {
		safe = "unknown"
	}
	p.Dir = fmt.Sprintf("memory/%d-%s", pid, safe)
	p.Mappings = pr.Mappings
	for _, f := range pr.Files {
		if err := mw.add(p.Dir+"/"+f.Name, f.Data); err != nil {
			return p, err
		}
	}
	if size := pr.CoreSize(); size >= 0 {
		if progress != nil {
			progress(fmt.Sprintf("memory: process %d (%s), %d MiB", pid, p.Comm, size>>20))
		}
		if err := writeCore(pr, p.Dir+"/core", mw); err != nil {
			return p, err
		}
	}
	p.Bytes = pr.Bytes
	for _, r := range pr.Unreadable {
		p.Unreadable = append(p.Unreadable, manifest.Region{Start: r.Start, End: r.End, Reason: r.Reason})
	}
	p.Lost = strings.Join(pr.Lost, "; ")
	return p, nil
}

// writeCore stores the process's core as the member name.
func writeCore(pr *procmem.Process, name string, mw memberWriter) error {
	core, err := pr.OpenCore()
	if err != nil {
		return err
	}
	defer core.Close()
	if err := mw.begin(name, core.Size()); err != nil {
		return err
	}
	if _, err := core.WriteTo(memberStream{mw}); err != nil {
		return err
	}
	return mw.end()
}
