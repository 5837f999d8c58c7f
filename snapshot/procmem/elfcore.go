package procmem

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
)

// An ELF core file of a live process, as the kernel or gdb's gcore would
// write it, but read from /proc/PID/mem without stopping or attaching to
// the process: an ELF header, a PT_NOTE segment (NT_PRSTATUS per thread,
// NT_PRPSINFO, NT_AUXV, NT_FILE) and one PT_LOAD per mapping of
// /proc/PID/maps. Unreadable mappings get a PT_LOAD with no file bytes,
// as in a kernel core; unreadable pages inside a readable mapping are
// zeros and are recorded.

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string
	Offset     uint64
	Dev        string
	Inode      uint64
	Path       string
	// Skip says why a readable mapping's bytes are left out.
	Skip string
}

// limitMappings marks the mappings past max bytes in all (Options.MaxBytes):
// they are recorded with no bytes.
func limitMappings(maps []Mapping, max uint64) {
	var total uint64
	for i := range maps {
		m := &maps[i]
		if !m.Dump() {
			continue
		}
		if total+(m.End-m.Start) > max {
			m.Skip = fmt.Sprintf("over the per-process limit of %d GiB", max>>30)
			continue
		}
		total += m.End - m.Start
	}
}

// Dump reports whether the mapping's bytes go into the core.
func (m Mapping) Dump() bool {
	if len(m.Perms) < 1 || m.Perms[0] != 'r' || m.Skip != "" {
		return false
	}
	switch m.Path {
	case "[vvar]", "[vsyscall]", "[vvar_vclock]":
		return false
	}
	return true
}

// ParseMaps reads /proc/PID/maps. It is tolerant of what it does not
// understand (a line it cannot parse is an error, not a guess).
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("maps: malformed line %q", line)
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps: malformed range %q", f[0])
		}
		var m Mapping
		var err error
		if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
			return nil, fmt.Errorf("maps: malformed range %q", f[0])
		}
		if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil || m.End < m.Start {
			return nil, fmt.Errorf("maps: malformed range %q", f[0])
		}
		m.Perms = f[1]
		if m.Offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
			return nil, fmt.Errorf("maps: malformed offset %q", f[2])
		}
		m.Dev = f[3]
		if m.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
			return nil, fmt.Errorf("maps: malformed inode %q", f[4])
		}
		// The path is the rest of the line after the inode, spaces kept.
		if len(f) > 5 {
			idx := 0
			for i := 0; i < 5; i++ {
				idx += strings.Index(line[idx:], f[i]) + len(f[i])
			}
			m.Path = strings.TrimLeft(line[idx:], " ")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// Thread is one thread's state for NT_PRSTATUS.
type Thread struct {
	TID     int
	SP, PC  uint64
	Syscall int64 // orig_rax; -1 when not in a system call
}

// ProcInfo is the process state for NT_PRPSINFO.
type ProcInfo struct {
	PID, PPID, PGRP, SID int
	UID, GID             uint32
	State                byte
	Nice                 int8
	Comm                 string
	Args                 string
	Threads              []Thread
	Auxv                 []byte
}

const pageSize = 4096

// coreLayout is a planned core file: headers and notes, then the
// segments' bytes at page-aligned offsets.
type coreLayout struct {
	head []byte // ELF header, program headers, notes (and section header)
	maps []Mapping
	offs []uint64 // file offset of each mapping's bytes
	size int64
}

func elfMachine() (uint16, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return 62, true // EM_X86_64
	case "arm64":
		return 183, false // EM_AARCH64: no register layout here
	}
	return 0, false
}

func note(b *bytes.Buffer, typ uint32, desc []byte) {
	le := binary.LittleEndian
	name := []byte("CORE\x00")
	var h [12]byte
	le.PutUint32(h[0:], uint32(len(name)))
	le.PutUint32(h[4:], uint32(len(desc)))
	le.PutUint32(h[8:], typ)
	b.Write(h[:])
	b.Write(name)
	pad4(b)
	b.Write(desc)
	pad4(b)
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

const (
	ntPRSTATUS = 1
	ntPRPSINFO = 3
	ntAUXV     = 6
	ntFILE     = 0x46494c45
)

// notes builds the PT_NOTE contents.
func notes(p *ProcInfo, maps []Mapping, regs bool) []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	if regs {
		for _, t := range p.Threads {
			d := make([]byte, 336)
			le.PutUint32(d[32:], uint32(t.TID))
			le.PutUint32(d[36:], uint32(p.PPID))
			le.PutUint32(d[40:], uint32(p.PGRP))
			le.PutUint32(d[44:], uint32(p.SID))
			reg := d[112:]
			le.PutUint64(reg[15*8:], uint64(t.Syscall)) // orig_rax
			le.PutUint64(reg[16*8:], t.PC)              // rip
			le.PutUint64(reg[19*8:], t.SP)              // rsp
			note(&b, ntPRSTATUS, d)
		}
	}
	ps := make([]byte, 136)
	ps[0] = p.State
	if p.State != 0 {
		ps[1] = p.State
	}
	ps[3] = byte(p.Nice)
	le.PutUint32(ps[16:], p.UID)
	le.PutUint32(ps[20:], p.GID)
	le.PutUint32(ps[24:], uint32(p.PID))
	le.PutUint32(ps[28:], uint32(p.PPID))
	le.PutUint32(ps[32:], uint32(p.PGRP))
	le.PutUint32(ps[36:], uint32(p.SID))
	copy(ps[40:55], p.Comm)
	copy(ps[56:135], p.Args)
	note(&b, ntPRPSINFO, ps)
	if len(p.Auxv) > 0 {
		note(&b, ntAUXV, p.Auxv)
	}
	var files []Mapping
	for _, m := range maps {
		if m.Inode != 0 && strings.HasPrefix(m.Path, "/") {
			files = append(files, m)
		}
	}
	if len(files) > 0 {
		var d bytes.Buffer
		var w [8]byte
		put := func(v uint64) { le.PutUint64(w[:], v); d.Write(w[:]) }
		put(uint64(len(files)))
		put(pageSize)
		for _, m := range files {
			put(m.Start)
			put(m.End)
			put(m.Offset / pageSize)
		}
		for _, m := range files {
			d.WriteString(strings.TrimSuffix(m.Path, " (deleted)"))
			d.WriteByte(0)
		}
		note(&b, ntFILE, d.Bytes())
	}
	return b.Bytes()
}

// planCore lays out the core file of p.
func planCore(p *ProcInfo, maps []Mapping) (*coreLayout, error) {
	machine, regs := elfMachine()
	if machine == 0 {
		return nil, fmt.Errorf("core files are not supported on %s", runtime.GOARCH)
	}
	le := binary.LittleEndian
	nb := notes(p, maps, regs)
	phnum := 1 + len(maps)
	xnum := phnum >= 0xffff
	headLen := 64 + 56*phnum + len(nb)
	if xnum {
		headLen += 64 // one section header holds the real count
	}
	c := &coreLayout{maps: maps}
	off := alignUp(uint64(headLen), pageSize)
	c.offs = make([]uint64, len(maps))
	for i, m := range maps {
		c.offs[i] = off
		if m.Dump() {
			off += m.End - m.Start
		}
	}
	c.size = int64(off)
	h := make([]byte, headLen)
	copy(h, "\x7fELF")
	h[4], h[5], h[6], h[7] = 2, 1, 1, 0 // 64-bit, little-endian, version 1, System V
	le.PutUint16(h[16:], 4)             // ET_CORE
	le.PutUint16(h[18:], machine)
	le.PutUint32(h[20:], 1)
	le.PutUint64(h[32:], 64) // e_phoff
	le.PutUint16(h[52:], 64) // e_ehsize
	le.PutUint16(h[54:], 56) // e_phentsize
	if xnum {
		le.PutUint16(h[56:], 0xffff)
		sh := uint64(64 + 56*phnum + len(nb))
		le.PutUint64(h[40:], sh) // e_shoff
		le.PutUint16(h[58:], 64) // e_shentsize
		le.PutUint16(h[60:], 1)  // e_shnum
		le.PutUint32(h[sh+44:], uint32(phnum))
	} else {
		le.PutUint16(h[56:], uint16(phnum))
	}
	ph := h[64:]
	noteOff := uint64(64 + 56*phnum)
	le.PutUint32(ph[0:], 4) // PT_NOTE
	le.PutUint64(ph[8:], noteOff)
	le.PutUint64(ph[32:], uint64(len(nb)))
	le.PutUint64(ph[48:], 4)
	for i, m := range maps {
		q := ph[56*(i+1):]
		le.PutUint32(q[0:], 1) // PT_LOAD
		var flags uint32
		if strings.Contains(m.Perms, "r") {
			flags |= 4
		}
		if strings.Contains(m.Perms, "w") {
			flags |= 2
		}
		if strings.Contains(m.Perms, "x") {
			flags |= 1
		}
		le.PutUint32(q[4:], flags)
		le.PutUint64(q[8:], c.offs[i])
		le.PutUint64(q[16:], m.Start)
		var filesz uint64
		if m.Dump() {
			filesz = m.End - m.Start
		}
		le.PutUint64(q[32:], filesz)
		le.PutUint64(q[40:], m.End-m.Start)
		le.PutUint64(q[48:], pageSize)
	}
	copy(h[noteOff:], nb)
	c.head = h
	return c, nil
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }
