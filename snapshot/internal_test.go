//go:build linux

package snapshot

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
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

	"github.com/amber-forensics/amber/fileindex"
	"github.com/amber-forensics/amber/hashing"
	"github.com/amber-forensics/amber/layers"
)

// memberSink collects members as an archive would.
type memberSink struct {
	files   map[string][]byte
	cur     string
	buf     bytes.Buffer
	size    int64
	onBegin func(name string)
}

func (m *memberSink) add(name string, data []byte) error {
	m.files[name] = append([]byte(nil), data...)
	return nil
}
func (m *memberSink) begin(name string, size int64) error {
	m.cur, m.size = name, size
	m.buf.Reset()
	if m.onBegin != nil {
		m.onBegin(name)
	}
	return nil
}
func (m *memberSink) write(p []byte) error { m.buf.Write(p); return nil }
func (m *memberSink) end() error {
	if int64(m.buf.Len()) != m.size {
		return os.ErrInvalid
	}
	m.files[m.cur] = append([]byte(nil), m.buf.Bytes()...)
	return nil
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
	sink := &memberSink{files: map[string][]byte{}}
	p, err := dumpProcess(os.Getpid(), sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Lost != "" {
		t.Errorf("lost: %s", p.Lost)
	}
	core := sink.files[p.Dir+"/core"]
	maps, err := ParseMaps(bytes.NewReader(sink.files[p.Dir+"/maps"]))
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
	// Notes: a PRSTATUS per thread (main thread first), PRPSINFO with the
	// command name, NT_FILE naming this test binary.
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
	for _, f := range []string{"cmdline", "environ", "status", "links", "fds"} {
		if len(sink.files[p.Dir+"/"+f]) == 0 {
			t.Errorf("%s empty", f)
		}
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
	sink := &memberSink{files: map[string][]byte{}}
	sink.onBegin = func(string) {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	p, err := dumpProcess(cmd.Process.Pid, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Lost, "exited") || len(p.Unreadable) == 0 {
		t.Errorf("loss not recorded: %+v", p)
	}
	if _, ok := sink.files[p.Dir+"/core"]; !ok {
		t.Error("no core")
	}
	// Already gone: recorded, not an error.
	p, err = dumpProcess(cmd.Process.Pid, sink, nil)
	if err != nil || !strings.Contains(p.Lost, "exited before") {
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
	sink := &memberSink{files: map[string][]byte{}}
	stat := filepath.Join(procRoot, fmt.Sprint(cmd.Process.Pid), "stat")
	sink.onBegin = func(string) {
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
	}
	p, err := dumpProcess(cmd.Process.Pid, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Lost, "exited") || len(p.Unreadable) == 0 {
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
	old := MaxProcessMemory
	defer func() { MaxProcessMemory = old }()
	MaxProcessMemory = 3 << 12
	maps := []Mapping{{Start: 0, End: 2 << 12, Perms: "r--p"}, {Start: 2 << 12, End: 4 << 12, Perms: "rw-p"}, {Start: 4 << 12, End: 5 << 12, Perms: "r--p"}}
	limitMappings(maps)
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

// layerIndex builds the file index of a layer made of entries.
type ent struct {
	name, body, link string
	typ              byte
	mode             int64
	mtime            int64
}

func layerIndex(t *testing.T, ents ...ent) *fileindex.Index {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.link, ModTime: time.Unix(1700000000+e.mtime, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	b := &fileindex.IndexBuilder{}
	if _, err := fileindex.ScanLayerWith(bytes.NewReader(buf.Bytes()), b, nil, fileindex.ScanOptions{}); err != nil {
		t.Fatal(err)
	}
	built, err := b.Resolve(int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	defer built.Close()
	var ix *fileindex.Index
	if pagedIndexes {
		ix, err = built.Paged()
	} else {
		var ib []byte
		if ib, err = built.Bytes(); err == nil {
			ix, err = fileindex.ParseIndex(ib)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// pagedIndexes has layerIndex read its indexes in pages from a temp file,
// as a container capture keeps a large layer's.
var pagedIndexes bool

// TestChangeList: content-aware A/C/D against hand-built layers, with the
// whiteout cases an OCI runtime applies; with the indexes whole in memory
// and read in pages from temp files.
func TestChangeList(t *testing.T) {
	for _, paged := range []bool{false, true} {
		pagedIndexes = paged
		t.Run(fmt.Sprint("paged=", paged), testChangeList)
	}
	pagedIndexes = false
}

func testChangeList(t *testing.T) {
	d := func(n string) ent { return ent{name: n, typ: tar.TypeDir, mode: 0o755} }
	base := layerIndex(t, d("a/"), ent{name: "a/x", body: "one"}, ent{name: "a/y", body: "y"}, ent{name: "b", body: "file"},
		d("d/"), ent{name: "d/k", body: "k"}, d("e/"), ent{name: "e/f", body: "f"}, ent{name: "g", body: "same"}, ent{name: "s", typ: tar.TypeSymlink, link: "a/x"})
	upper := layerIndex(t, d("a/"), ent{name: "a/x", body: "two"}, ent{name: "a/.wh.y"}, d("b/"), ent{name: "b/n", body: "n"},
		d("d/"), ent{name: "d/.wh..wh..opq"}, ent{name: "d/new", body: "new"}, ent{name: "e/f", body: "f", mtime: 5},
		ent{name: "g", body: "same"}, ent{name: "s", typ: tar.TypeSymlink, link: "b/n"}, ent{name: "z", body: "z"})
	got, err := layers.ContainerChanges(&layers.Stack{Indexes: []*fileindex.Index{base}}, upper)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range got {
		lines = append(lines, string(c.Kind)+" "+c.Path+" "+strings.Join(c.What, ","))
	}
	want := []string{"C /a/x content", "D /a/y ", "C /b type", "A /b/n ", "D /d/k ", "A /d/new ", "C /e/f mtime", "C /s target", "A /z "}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("change list:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// FuzzOpenSource feeds hostile docker-save manifests, OCI indexes and
// image configs to the source reader: an error or a source, never a
// panic or a read outside the tarball.
func FuzzOpenSource(f *testing.F) {
	cfg := []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("a", 64) + `"]}}`)
	f.Add([]byte(`[{"Config":"config.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]`), []byte(nil), cfg)
	f.Add([]byte(nil), []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("b", 64)+`","size":10}]}`), cfg)
	f.Add([]byte(`[{"Config":"../../etc/passwd","Layers":["/abs"]}]`), []byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:x"}]}`), []byte(`{`))
	f.Fuzz(func(t *testing.T, man, index, config []byte) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		add := func(name string, b []byte) {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
			tw.Write(b)
		}
		if len(man) > 0 {
			add("manifest.json", man)
		}
		if len(index) > 0 {
			add("index.json", index)
			add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
		}
		add("config.json", config)
		add("blobs/sha256/"+hashing.Sum(config).Hex(), config)
		tw.WriteHeader(&tar.Header{Name: "l/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../../outside"})
		tw.Close()
		p := filepath.Join(t.TempDir(), "src.tar")
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if s, err := OpenSource(p); err == nil {
			s.Close()
		}
	})
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
		limitMappings(mm)
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
