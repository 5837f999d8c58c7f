//go:build linux

package procmem

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// InContainer checks that the process's cgroup names the container's full
// ID (docker/<id>, docker-<id>.scope, ...), as the kernel tells it; else
// the error wraps ErrNotInContainer. A 64-hex ID may appear anywhere in
// the cgroup; any other ID (containerd's "web") only as the whole last
// element of a cgroup path or as a runtime's scope (cri-containerd-web.scope).
func InContainer(pid int, id string, opt Options) error {
	cg, err := os.ReadFile(filepath.Join(opt.root(), strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return err
	}
	return cgroupNames(pid, cg, id)
}

func cgroupNames(pid int, cg []byte, id string) error {
	if namesContainer(cg, id) {
		return nil
	}
	line := bytes.ReplaceAll(bytes.TrimSpace(cg), []byte("\n"), []byte("; "))
	if len(line) > 400 {
		line = line[:400]
	}
	return fmt.Errorf("%w: process %d is in cgroup %q, which does not name container %s", ErrNotInContainer, pid, line, id)
}

// hexID is Docker's (and Podman's, and the CRI's) container ID: 64 hex
// digits, which no other cgroup name contains by chance.
var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// shortID is any other runtime's container ID: containerd's identifiers
// ([A-Za-z0-9][A-Za-z0-9_.-]*, 76 at most), with room to spare. No '/',
// no "." or "..": it can only ever be one path element.
var shortID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// scopePrefixes are the runtimes that name a container's systemd scope
// <prefix>-<id>.scope (runc's "slice:prefix:name" cgroups path).
var scopePrefixes = []string{"docker", "cri-containerd", "containerd", "crio", "libpod", "nerdctl"}

// namesContainer says whether the cgroup file cg names the container id.
// A short ID ("web") is matched as a whole: the last element of a line's
// path is the ID (ctr's /<namespace>/<id>, the kubelet's cgroupfs
// .../pod<uid>/<id>) or a runtime's scope of it; never part of a name
// (web-server.service, webapp), never a parent (a namespace named like
// the container: /web/other).
func namesContainer(cg []byte, id string) bool {
	if hexID.MatchString(id) {
		return bytes.Contains(cg, []byte(id))
	}
	if !shortID.MatchString(id) {
		return false
	}
	for _, line := range strings.Split(string(cg), "\n") {
		// hierarchy-ID:controller-list:cgroup-path
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			continue
		}
		leaf := f[2][strings.LastIndexByte(f[2], '/')+1:]
		if leaf == id {
			return true
		}
		for _, p := range scopePrefixes {
			if leaf == p+"-"+id+".scope" {
				return true
			}
		}
	}
	return false
}

// ContainerPIDs lists the host PIDs of every process in the cgroup of the
// container's init process (docker exec'd processes included), sorted.
// The engine's initPID is taken only if its cgroup names the container's
// ID (else ErrNotInContainer): never is a host process dumped on the
// engine's word. An init process not in /proc is a *GoneError.
func ContainerPIDs(initPID int, id string, opt Options) ([]int, error) {
	root := opt.root()
	want, err := os.ReadFile(filepath.Join(root, strconv.Itoa(initPID), "cgroup"))
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: %v", ErrAccess, err)
		}
		return nil, &GoneError{fmt.Sprintf("the container's init process %d: %v", initPID, err)}
	}
	if err := cgroupNames(initPID, want, id); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAccess, err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(root, e.Name(), "cgroup"))
		if err != nil || !bytes.Equal(cg, want) {
			continue
		}
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	if len(pids) == 0 || !containsInt(pids, initPID) {
		return nil, &GoneError{fmt.Sprintf("init process %d not found in /proc", initPID)}
	}
	return pids, nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// procFiles are copied as they are from /proc/PID.
var procFiles = []string{"cmdline", "environ", "status", "stat", "maps", "limits", "mountinfo", "cgroup", "net/tcp", "net/tcp6", "net/udp", "net/udp6", "net/unix"}

// procLinks are read as link targets into the "links" file.
var procLinks = []string{"exe", "cwd", "root"}

// errNoRead is the advice of an ErrAccess: an archive without a process's
// memory is better than one of zeros that looks like evidence.
const errNoRead = "%w: %v (run as root on the engine's host, or use --no-memory)"

// Read reads process pid's /proc files and plans its core. A process that
// exits on the way is recorded as such (Lost); what was taken stays. The
// errors: ErrAccess (amber may not read the process), a maps file it
// cannot parse.
func Read(pid int, opt Options) (*Process, error) {
	dir := filepath.Join(opt.root(), strconv.Itoa(pid))
	p := &Process{PID: pid, dir: dir}
	comm, err := os.ReadFile(filepath.Join(dir, "comm"))
	if err != nil {
		p.Comm = "unknown"
		p.Lost = []string{"exited before its memory was read: " + err.Error()}
		return p, nil
	}
	p.Comm = strings.TrimSpace(string(comm))
	// The small files first: maps is needed for the core, and the rest
	// describes the process as the core is taken.
	files, err := p.readFiles()
	if err != nil {
		return nil, err
	}
	maps, err := ParseMaps(bytes.NewReader(files["maps"]))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	p.Mappings = len(maps)
	limitMappings(maps, opt.maxBytes())
	info := procInfo(dir, pid, files, p.Comm)
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		p.Files = append(p.Files, File{Name: strings.ReplaceAll(k, "/", "_"), Data: files[k]})
	}
	if _, ok := files["maps"]; !ok {
		p.Lost = append(p.Lost, "core: no memory map")
		return p, nil
	}
	if p.core, err = planCore(info, maps); err != nil {
		p.Lost = append(p.Lost, "core: "+err.Error())
	}
	return p, nil
}

// readFiles reads procFiles, procLinks and the open files; one that
// cannot be read is lost, unless amber may not read the process's memory
// map or environment at all.
func (p *Process) readFiles() (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, f := range procFiles {
		b, err := readProc(filepath.Join(p.dir, f))
		if errors.Is(err, os.ErrPermission) && (f == "maps" || f == "environ") {
			return nil, fmt.Errorf(errNoRead, ErrAccess, err)
		}
		if err != nil {
			p.Lost = append(p.Lost, f+": "+err.Error())
			continue
		}
		files[f] = b
	}
	var links bytes.Buffer
	for _, l := range procLinks {
		t, err := os.Readlink(filepath.Join(p.dir, l))
		if err != nil {
			t = "? (" + err.Error() + ")"
		}
		fmt.Fprintf(&links, "%s -> %s\n", l, t)
	}
	files["links"] = links.Bytes()
	files["fds"] = fdList(p.dir)
	return files, nil
}

// OpenCore opens the process's memory to write its core (nil when
// CoreSize is -1). Only amber's not being allowed to read it is an error
// (ErrAccess); a process that has exited gets a core of zeros, and Lost
// says so.
func (p *Process) OpenCore() (*Core, error) {
	if p.core == nil {
		return nil, nil
	}
	c := &Core{p: p}
	c.mem, c.merr = os.Open(filepath.Join(p.dir, "mem"))
	switch {
	case errors.Is(c.merr, os.ErrNotExist), errors.Is(c.merr, unix.ESRCH):
		c.merr = errors.New("process exited")
	case errors.Is(c.merr, os.ErrPermission):
		// Not a vanished process: amber may not read it. An archive of
		// zeros would look like evidence; stop instead.
		return nil, fmt.Errorf(errNoRead, ErrAccess, c.merr)
	}
	return c, nil
}

// WriteTo writes the core to w: the headers, then each mapping's bytes at
// its offset, zeros where they cannot be read (recorded in the Process's
// Unreadable). Only w's failing is an error.
func (c *Core) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	if _, err := cw.Write(c.p.core.head); err != nil {
		return cw.n, err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, pageSize)
	for i, m := range c.p.core.maps {
		if _, err := cw.Write(zeros(zero, c.p.core.offs[i]-uint64(cw.n))); err != nil {
			return cw.n, err
		}
		if !m.Dump() {
			c.p.notDumped(m)
			continue
		}
		if err := c.writeMapping(cw, m, buf); err != nil {
			return cw.n, err
		}
	}
	// The headers' padding to a page, when no mapping follows them (a
	// zombie's empty memory map): the core is always the size announced.
	if cw.n < c.p.core.size {
		if _, err := cw.Write(zeros(zero, uint64(c.p.core.size-cw.n))); err != nil {
			return cw.n, err
		}
	}
	if c.merr != nil {
		c.p.Lost = append(c.p.Lost, "memory: "+c.merr.Error())
	}
	if c.gone {
		c.p.Lost = append(c.p.Lost, "the process exited while its memory was read; the rest is zeros")
	}
	return cw.n, nil
}

// notDumped records a readable mapping left out of the core.
func (p *Process) notDumped(m Mapping) {
	if len(m.Perms) > 0 && m.Perms[0] == 'r' {
		why := m.Skip
		if why == "" {
			why = "not dumped: " + m.Path
		}
		p.Unreadable = append(p.Unreadable, Region{Start: m.Start, End: m.End, Reason: why})
	}
}

// writeMapping writes m's bytes, chunk by chunk, from the process's
// memory.
func (c *Core) writeMapping(w io.Writer, m Mapping, buf []byte) error {
	p := c.p
	for a := m.Start; a < m.End; {
		n := min(uint64(len(buf)), m.End-a)
		chunk := buf[:n]
		if c.merr == nil && !c.gone {
			got, err := c.mem.ReadAt(chunk, int64(a))
			switch {
			case got == int(n):
			case exited(err):
				c.gone = true
				clear(chunk[got:])
				p.addRegion(a+uint64(got), a+n, "process exited")
			default:
				// Page by page: keep what can be read.
				readPages(c.mem, chunk, a, p, &c.gone)
			}
		} else {
			why := "process exited"
			if c.merr != nil {
				why = c.merr.Error()
			}
			clear(chunk)
			p.addRegion(a, a+n, why)
		}
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		p.Bytes += int64(n)
		a += n
	}
	return nil
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func zeros(z []byte, n uint64) []byte {
	if n == 0 {
		return nil
	}
	if n > uint64(len(z)) {
		return make([]byte, n)
	}
	return z[:n]
}

// readPages fills chunk page by page from address a; unreadable pages are
// zeros and recorded.
func readPages(mem *os.File, chunk []byte, a uint64, p *Process, gone *bool) int {
	good := 0
	for off := 0; off < len(chunk); off += pageSize {
		end := min(off+pageSize, len(chunk))
		page := chunk[off:end]
		if !*gone {
			n, err := mem.ReadAt(page, int64(a)+int64(off))
			if n == len(page) {
				good += n
				continue
			}
			if exited(err) || !procAlive(p.dir) {
				*gone = true
			}
			clear(page[n:])
			reason := "unreadable"
			if err != nil {
				reason = err.Error()
			}
			if *gone {
				reason = "process exited"
			}
			p.addRegion(a+uint64(off)+uint64(n), a+uint64(end), reason)
			continue
		}
		clear(page)
		p.addRegion(a+uint64(off), a+uint64(end), "process exited")
	}
	return good
}

// exited reports whether a read of /proc/PID/mem failed because the
// process's memory is gone: it reads nothing (io.EOF) once the process has
// exited, even while /proc keeps the entry of a zombie not yet reaped.
func exited(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, unix.ESRCH)
}

func procAlive(dir string) bool {
	_, err := os.Stat(dir)
	return err == nil
}

// addRegion records [s,e) as unreadable, merging with the last region.
func (p *Process) addRegion(s, e uint64, why string) {
	if n := len(p.Unreadable); n > 0 {
		last := &p.Unreadable[n-1]
		if last.End == s && last.Reason == why {
			last.End = e
			return
		}
	}
	p.Unreadable = append(p.Unreadable, Region{Start: s, End: e, Reason: why})
}

// readProc reads a /proc file (their sizes read as 0), bounded.
func readProc(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// fdList lists open files: "fd -> target" lines, with the position and
// flags from fdinfo.
func fdList(dir string) []byte {
	ents, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return []byte("? (" + err.Error() + ")\n")
	}
	sort.Slice(ents, func(i, j int) bool {
		a, _ := strconv.Atoi(ents[i].Name())
		b, _ := strconv.Atoi(ents[j].Name())
		return a < b
	})
	var b bytes.Buffer
	for _, e := range ents {
		t, err := os.Readlink(filepath.Join(dir, "fd", e.Name()))
		if err != nil {
			t = "? (" + err.Error() + ")"
		}
		info, _ := os.ReadFile(filepath.Join(dir, "fdinfo", e.Name()))
		fmt.Fprintf(&b, "%s -> %s\t%s\n", e.Name(), t, strings.Join(strings.Fields(string(info)), " "))
	}
	return b.Bytes()
}

// procInfo gathers what the core's notes need.
func procInfo(dir string, pid int, files map[string][]byte, comm string) *ProcInfo {
	info := &ProcInfo{PID: pid, Comm: comm}
	parseStat(info, files["stat"])
	parseStatus(info, files["status"])
	info.Args = strings.TrimSpace(strings.ReplaceAll(string(files["cmdline"]), "\x00", " "))
	info.Auxv, _ = readProc(filepath.Join(dir, "auxv"))
	tasks, _ := os.ReadDir(filepath.Join(dir, "task"))
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, "task", t.Name(), "syscall"))
		th := parseSyscall(tid, b)
		info.Threads = append(info.Threads, th)
	}
	sort.Slice(info.Threads, func(i, j int) bool { return info.Threads[i].TID < info.Threads[j].TID })
	// The main thread first, as gdb expects.
	for i, t := range info.Threads {
		if t.TID == pid && i > 0 {
			info.Threads[0], info.Threads[i] = info.Threads[i], info.Threads[0]
		}
	}
	return info
}

// parseStat reads /proc/PID/stat: "pid (comm) state ppid pgrp session ...";
// comm may hold spaces and ')'. What it cannot read stays zero.
func parseStat(info *ProcInfo, st []byte) {
	i := bytes.LastIndexByte(st, ')')
	if i <= 0 || i+2 >= len(st) {
		return
	}
	f := strings.Fields(string(st[i+2:]))
	if len(f) <= 16 {
		return
	}
	info.State = f[0][0]
	info.PPID, _ = strconv.Atoi(f[1])
	info.PGRP, _ = strconv.Atoi(f[2])
	info.SID, _ = strconv.Atoi(f[3])
	n, _ := strconv.Atoi(f[16])
	info.Nice = int8(n)
}

// parseStatus reads the real UID and GID of /proc/PID/status.
func parseStatus(info *ProcInfo, status []byte) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				u, _ := strconv.ParseUint(f[0], 10, 32)
				info.UID = uint32(u)
			}
		}
		if v, ok := strings.CutPrefix(line, "Gid:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				g, _ := strconv.ParseUint(f[0], 10, 32)
				info.GID = uint32(g)
			}
		}
	}
}

// parseSyscall reads /proc/PID/task/TID/syscall: "nr a1 a2 a3 a4 a5 a6 sp
// pc", or "-1 sp pc", or "running".
func parseSyscall(tid int, b []byte) Thread {
	th := Thread{TID: tid, Syscall: -1}
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		th.Syscall, _ = strconv.ParseInt(f[0], 10, 64)
		th.SP, _ = strconv.ParseUint(strings.TrimPrefix(f[len(f)-2], "0x"), 16, 64)
		th.PC, _ = strconv.ParseUint(strings.TrimPrefix(f[len(f)-1], "0x"), 16, 64)
	}
	return th
}
