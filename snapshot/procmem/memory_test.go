//go:build linux

package procmem

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// dump reads process pid and writes its core as snapshot stores them:
// the files by name, "core" the core, which must have the size announced.
// onBegin, when set, runs once the process's memory is open.
func dump(pid int, opt Options, onBegin func()) (*Process, map[string][]byte, error) {
	p, err := Read(pid, opt)
	if err != nil {
		return nil, nil, err
	}
	files := map[string][]byte{}
	for _, f := range p.Files {
		files[f.Name] = f.Data
	}
	core, err := p.OpenCore()
	if err != nil || core == nil {
		return p, files, err
	}
	defer core.Close()
	if onBegin != nil {
		onBegin()
	}
	var buf bytes.Buffer
	n, err := core.WriteTo(&buf)
	if err != nil {
		return p, files, err
	}
	if n != core.Size() || int64(buf.Len()) != p.CoreSize() {
		return p, files, fmt.Errorf("core of %d bytes (%d counted), announced %d", buf.Len(), n, core.Size())
	}
	files["core"] = buf.Bytes()
	return p, files, nil
}

// marker is in this process's memory only.
var marker = []byte("amber-core-marker-" + strings.Repeat("q", 40))

// TestCoreOfSelf dumps this test process and reads the core back with Go's
// debug/elf, an independent ELF reader: every mapping has its PT_LOAD, and
// the bytes at the marker's address are the marker.
func TestCoreOfSelf(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("core notes are written for amd64 only (CI runs on amd64)")
	}
	if testing.Short() {
		// make race runs -short: the race detector maps terabytes of
		// readable shadow memory. make unit runs this test.
		t.Skip("under testing.Short (make race): the race detector maps terabytes of shadow memory; make unit runs this test")
	}
	p, files, err := dump(os.Getpid(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Lost != nil {
		t.Errorf("lost: %q", p.Lost)
	}
	core := files["core"]
	maps, err := ParseMaps(bytes.NewReader(files["maps"]))
	if err != nil || len(maps) == 0 {
		t.Fatalf("maps: %v", err)
	}
	f, err := elf.NewFile(bytes.NewReader(core))
	if err != nil {
		t.Fatalf("debug/elf: %v", err)
	}
	if f.Type != elf.ET_CORE || f.Machine != elf.EM_X86_64 {
		t.Errorf("type %v machine %v", f.Type, f.Machine)
	}
	loads := 0
	var notes *elf.Prog
	for _, pr := range f.Progs {
		switch pr.Type {
		case elf.PT_LOAD:
			loads++
		case elf.PT_NOTE:
			notes = pr
		}
	}
	if loads != len(maps) || notes == nil {
		t.Fatalf("%d PT_LOAD for %d mappings; note %v", loads, len(maps), notes)
	}
	addr := uint64(uintptr(unsafe.Pointer(&marker[0])))
	found := false
	for _, pr := range f.Progs {
		if pr.Type == elf.PT_LOAD && addr >= pr.Vaddr && addr+uint64(len(marker)) <= pr.Vaddr+pr.Filesz {
			got := make([]byte, len(marker))
			if _, err := pr.ReadAt(got, int64(addr-pr.Vaddr)); err != nil {
				t.Fatal(err)
			}
			found = bytes.Equal(got, marker)
		}
	}
	if !found {
		t.Errorf("the marker at %#x is not where its PT_LOAD says", addr)
	}
	checkSelfNotes(t, notes)
	for _, f := range []string{"cmdline", "environ", "status", "links", "fds"} {
		if len(files[f]) == 0 {
			t.Errorf("%s empty", f)
		}
	}
}

// checkSelfNotes checks the notes of this process's core: a PRSTATUS per
// thread (main thread first), PRPSINFO with the command name, NT_FILE
// naming this test binary.
func checkSelfNotes(t *testing.T, notes *elf.Prog) {
	t.Helper()
	nb := make([]byte, notes.Filesz)
	notes.ReadAt(nb, 0)
	types := map[uint32]int{}
	var first uint32
	for off := 0; off+12 <= len(nb); {
		le := binary.LittleEndian
		nsz, dsz, typ := le.Uint32(nb[off:]), le.Uint32(nb[off+4:]), le.Uint32(nb[off+8:])
		d := off + 12 + int((nsz+3)&^3)
		if typ == ntPRSTATUS && types[typ] == 0 {
			first = le.Uint32(nb[d+32:])
		}
		if typ == ntFILE {
			exe, _ := os.Executable()
			if !bytes.Contains(nb[d:d+int(dsz)], []byte(exe)) {
				t.Errorf("NT_FILE does not name %s", exe)
			}
		}
		types[typ]++
		off = d + int((dsz+3)&^3)
	}
	if types[ntPRSTATUS] < 1 || types[ntPRPSINFO] != 1 || types[ntFILE] != 1 || types[ntAUXV] != 1 || first != uint32(os.Getpid()) {
		t.Errorf("notes %v, first thread %d", types, first)
	}
}

// TestProcessExitsMidDump: the process is killed once its core is begun;
// the dump goes on with zeros, records the loss, and the core has exactly
// the size announced.
func TestProcessExitsMidDump(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	time.Sleep(50 * time.Millisecond)
	p, files, err := dump(cmd.Process.Pid, Options{}, func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(p.Lost, "; "), "exited") || len(p.Unreadable) == 0 {
		t.Errorf("loss not recorded: %+v", p)
	}
	if _, ok := files["core"]; !ok {
		t.Error("no core")
	}
	// Already gone: recorded, not an error.
	p, files, err = dump(cmd.Process.Pid, Options{}, nil)
	if err != nil || len(p.Lost) != 1 || !strings.Contains(p.Lost[0], "exited before") || p.Comm != "unknown" || len(files) != 0 || p.CoreSize() != -1 {
		t.Errorf("gone process: %+v %v", p, err)
	}
}

// TestProcessZombieMidDump: the process exits once its core is begun but
// is not reaped, so /proc keeps its entry while its memory is gone (reads
// of /proc/PID/mem then return nothing, io.EOF). That is recorded as the
// process exiting, as when it is reaped: the loss in Lost, every region
// after it "process exited". Before, the chunk read's error was dropped
// and each page was recorded as unreadable with "EOF", the exit unsaid.
func TestProcessZombieMidDump(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	time.Sleep(50 * time.Millisecond)
	stat := filepath.Join("/proc", fmt.Sprint(cmd.Process.Pid), "stat")
	p, _, err := dump(cmd.Process.Pid, Options{}, func() {
		cmd.Process.Signal(syscall.SIGKILL)
		for i := 0; ; i++ {
			b, err := os.ReadFile(stat)
			if err == nil && strings.Contains(string(b), ") Z ") {
				return
			}
			if i > 500 {
				t.Fatalf("the process is not a zombie: %s %v", b, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(p.Lost, "; "), "exited") || len(p.Unreadable) == 0 {
		t.Errorf("the exit is not recorded: lost %q", p.Lost)
	}
	exited := false
	for _, r := range p.Unreadable {
		exited = exited || r.Reason == "process exited"
		if strings.Contains(r.Reason, "EOF") {
			t.Errorf("region %x-%x recorded as %q, not as the process's exit", r.Start, r.End, r.Reason)
		}
	}
	if !exited {
		t.Errorf("no region recorded as the process's exit: %+v", p.Unreadable)
	}
}

func TestMemoryLimit(t *testing.T) {
	maps := []Mapping{{Start: 0, End: 2 << 12, Perms: "r--p"}, {Start: 2 << 12, End: 4 << 12, Perms: "rw-p"}, {Start: 4 << 12, End: 5 << 12, Perms: "r--p"}}
	limitMappings(maps, 3<<12)
	if !maps[0].Dump() || maps[1].Dump() || !maps[2].Dump() || maps[1].Skip == "" {
		t.Errorf("%+v", maps)
	}
	c, err := planCore(&ProcInfo{PID: 1}, maps)
	if err == nil && c.size > int64(alignUp(uint64(len(c.head)), pageSize))+3<<12 {
		t.Errorf("core of %d bytes over a limit of %d", c.size, 3<<12)
	}
}

func TestParseMaps(t *testing.T) {
	in := "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus daemon (deleted)\n" +
		"7ffd1-7ffd2 rw-p 00000000 00:00 0                  [stack]\n" +
		"7ffe0-7ffe1 r--p 00000000 00:00 0 \n"
	m, err := ParseMaps(strings.NewReader(in))
	if err != nil || len(m) != 3 {
		t.Fatalf("%v %v", m, err)
	}
	if m[0].Path != "/usr/bin/dbus daemon (deleted)" || m[0].Inode != 173521 || m[0].End != 0x452000 || m[1].Path != "[stack]" || m[2].Path != "" {
		t.Errorf("%+v", m)
	}
	for _, bad := range []string{"x-y r 0 0 0\n", "10-5 r--p 0 00:00 0\n", "1-2\n"} {
		if _, err := ParseMaps(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte("00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		maps, err := ParseMaps(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, m := range maps {
			if m.End < m.Start {
				t.Fatalf("end before start: %+v", m)
			}
		}
		if len(maps) > 0 && len(maps) < 1000 {
			if _, err := planCore(&ProcInfo{PID: 1}, maps[:1]); err != nil && runtime.GOARCH == "amd64" {
				t.Fatal(err)
			}
		}
	})
}

// TestCgroupNames: a process is the container's only when its cgroup, as
// the kernel shows it, names the container's full ID: with the cgroupfs
// and systemd drivers, cgroup v1 and v2. A short ID (containerd's "web")
// must be a whole element of the path, never part of a look-alike's.
func TestCgroupNames(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		cg   string
		id   string
		want bool
	}{
		{"0::/docker/" + id + "\n", id, true},
		{"0::/system.slice/docker-" + id + ".scope\n", id, true},
		{"9:name=systemd:/docker/" + id + "\n4:memory:/docker/" + id + "\n0::/docker/" + id + "\n", id, true},
		{"0::/user.slice/user-0.slice/session-1.scope\n", id, false},
		{"0::/\n", id, false},
		{"0::/docker/" + id[:63] + "\n", id, false},
		{"0::/docker/" + id + "\n", "", false},
		{"0::/docker/" + id + "\n", id[:12], false},
		// containerd's own IDs (ctr run IMG web): the ID is the whole
		// last element of the cgroup path, or a runtime's systemd scope.
		{"0::/amber-test/web\n", "web", true},
		{"4:memory:/amber-test/web\n0::/\n", "web", true},
		{"0::/system.slice/cri-containerd-web.scope\n", "web", true},
		{"0::/kubepods.slice/kubepods-besteffort.slice/cri-containerd-my.app_1.scope\n", "my.app_1", true},
		{"0::/default/default\n", "default", true},
		// Look-alikes of a short ID are not its cgroup.
		{"0::/system.slice/web-server.service\n", "web", false},
		{"0::/kubepods/besteffort/pod1/webapp\n", "web", false},
		{"0::/kubepods/besteffort/pod1/myweb\n", "web", false},
		{"0::/web/other\n", "web", false},
		{"0::/web/init.scope\n", "web", false},
		{"0::/system.slice/session-web.scope\n", "web", false},
		{"0::/system.slice/web.service\n", "web", false},
		{"0::/user.slice/docker-web.scope.d/x\n", "web", false},
		{"0::/a/web\n", "a/web", false},
		{"0::/a/..\n", "..", false},
		{"0::/a/.\n", ".", false},
		{"0::/a/web\n", "web\n", false},
		{"0::/a/" + strings.Repeat("w", 200) + "\n", strings.Repeat("w", 200), false},
		{"0::/a/abc123\n", "abc", false},
	} {
		err := cgroupNames(42, []byte(tc.cg), tc.id)
		if got := err == nil; got != tc.want {
			t.Errorf("cgroup %q, id %q: %v", tc.cg, tc.id, err)
		}
		if err != nil && (!errors.Is(err, ErrNotInContainer) || !strings.Contains(err.Error(), "42")) {
			t.Errorf("error does not say which process: %v", err)
		}
	}
}

// FuzzProcFiles gives hostile /proc files (a compromised container's
// processes can shape their comm, cmdline and mappings) to the readers and
// the core writer: the core's headers must always parse as ELF with one
// PT_NOTE and a PT_LOAD per mapping, and its notes must be the ones written.
func FuzzProcFiles(f *testing.F) {
	f.Add([]byte("42 (sh) S 1 42 42 0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 100 2000000 200 18446744073709551615"),
		[]byte("Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n"),
		[]byte("61 0x0 0x7ffd 0x1 0x0 0x0 0x0 0x7ffc8 0x7f12"), []byte("sh\x00-c\x00sleep 1\x00"),
		[]byte("00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/x\n7ffc000-7ffd000 rw-p 00000000 00:00 0 [stack]\n"))
	f.Add([]byte("1 (a) b) R"), []byte("Uid:"), []byte("running"), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, stat, status, syscall, cmdline, maps []byte) {
		info := &ProcInfo{PID: 1, Comm: "x"}
		parseStat(info, stat)
		parseStatus(info, status)
		info.Args = string(cmdline)
		info.Threads = []Thread{parseSyscall(1, syscall)}
		info.Auxv = cmdline
		mm, err := ParseMaps(bytes.NewReader(maps))
		if err != nil || len(mm) > 64 {
			return
		}
		limitMappings(mm, DefaultMaxBytes)
		c, err := planCore(info, mm)
		if err != nil {
			if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
				t.Fatal(err)
			}
			return
		}
		ef, err := elf.NewFile(bytes.NewReader(c.head))
		if err != nil {
			t.Fatalf("core header does not parse: %v", err)
		}
		if ef.Type != elf.ET_CORE || len(ef.Progs) != 1+len(mm) || ef.Progs[0].Type != elf.PT_NOTE {
			t.Fatalf("type %v, %d program headers for %d mappings", ef.Type, len(ef.Progs), len(mm))
		}
		nb, err := io.ReadAll(ef.Progs[0].Open())
		if err != nil || !bytes.Equal(nb, notes(info, mm, runtime.GOARCH == "amd64")) {
			t.Fatalf("notes read back differ: %v", err)
		}
		for i, p := range ef.Progs[1:] {
			if p.Type != elf.PT_LOAD || p.Vaddr != mm[i].Start || p.Memsz != mm[i].End-mm[i].Start || p.Off != c.offs[i] {
				t.Fatalf("PT_LOAD %d = %+v for %+v", i, p.ProgHeader, mm[i])
			}
		}
	})
}

// TestZombieCoreSize: a process that is a zombie before its memory is read
// (its maps empty: killed while the capture began) has a core of headers
// alone, padded to a page: written at exactly the size announced (the
// archive writer refuses a member short of it, which failed the capture).
func TestZombieCoreSize(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	cmd.Process.Signal(syscall.SIGKILL)
	stat := filepath.Join("/proc", fmt.Sprint(cmd.Process.Pid), "stat")
	for i := 0; ; i++ {
		b, err := os.ReadFile(stat)
		if err == nil && strings.Contains(string(b), ") Z ") {
			break
		}
		if i > 500 {
			t.Fatalf("the process is not a zombie: %s %v", b, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, err := Read(cmd.Process.Pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.OpenCore()
	if err != nil || c == nil {
		t.Fatalf("core of a zombie: %v %v (lost %q)", c, err, p.Lost)
	}
	defer c.Close()
	var buf bytes.Buffer
	n, err := c.WriteTo(&buf)
	if err != nil || n != p.CoreSize() || int64(buf.Len()) != n {
		t.Errorf("core of a zombie: %d bytes written (%d), %d announced: %v", n, buf.Len(), p.CoreSize(), err)
	}
}
