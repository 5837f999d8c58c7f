//go:build linux

package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/manifest"
	"github.com/amber-forensics/amber/snapshot/procmem"
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

// fakeProc builds a /proc of one process (pid 4242) under root, with a
// mem file shorter than its last mapping: the process seems to exit while
// its stack is read.
func fakeProc(t *testing.T, root string) {
	t.Helper()
	dir := filepath.Join(root, "4242")
	files := map[string]string{
		"comm":               "fake sh\n",
		"cmdline":            "sh\x00-c\x00sleep 1\x00",
		"environ":            "PATH=/bin\x00SECRET=x\x00",
		"status":             "Name:\tfake sh\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n",
		"stat":               "4242 (fake sh) S 1 4242 4242 0 -1 4194560 120 0 0 0 0 0 0 0 20 5 1 0 100 2000000 200 18446744073709551615",
		"limits":             "Limit Soft Hard Units\n",
		"mountinfo":          "1 0 0:1 / / rw - overlay overlay rw\n",
		"cgroup":             "0::/docker/" + strings.Repeat("ab", 32) + "\n",
		"net/tcp":            "  sl  local_address\n",
		"net/tcp6":           "",
		"net/udp":            "  sl  local_address\n",
		"net/udp6":           "",
		"auxv":               "\x06\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
		"fdinfo/0":           "pos:\t0\nflags:\t0100002\nmnt_id:\t5\n",
		"task/4242/syscall":  "61 0x1 0x2 0x3 0x4 0x5 0x6 0x7ffc8 0x4011",
		"task/4243/syscall":  "running",
		"task/4244/syscall":  "-1 0x7ff0 0x4022",
		"task/notanumber/ok": "",
		"maps": "00001000-00003000 r-xp 00000000 08:02 173521 /bin/busy box (deleted)\n" +
			"00003000-00004000 ---p 00000000 00:00 0\n" +
			"00004000-00006000 rw-p 00000000 00:00 0 [heap]\n" +
			"00006000-00007000 r--p 00000000 00:00 0 [vvar]\n" +
			"00007000-0000a000 rw-p 00000000 00:00 0 [stack]\n",
	}
	// net/unix is missing: recorded as lost.
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mem := make([]byte, 0x8000)
	for i := range mem {
		mem[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(filepath.Join(dir, "mem"), mem, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"exe": "/bin/busy box (deleted)", "cwd": "/", "fd/0": "/dev/null", "fd/2": "pipe:[123]", "fd/10": "socket:[9]"} {
		p := filepath.Join(dir, link)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	// root is missing: the links file says why.
}

// TestDumpProcessGolden dumps a made-up /proc process, as the archive
// would store it: the members' names and bytes and the manifest's record
// of the process (the temp directory written as ROOT) are fixed by a
// digest. It holds the moves of the memory code to no change of output.
func TestDumpProcessGolden(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("core notes are written for amd64 only (CI runs on amd64)")
	}
	root := t.TempDir()
	fakeProc(t, root)
	var out []string
	for _, limit := range []uint64{0, 3 << 12} {
		sink := &orderedSink{memberSink: &memberSink{files: map[string][]byte{}}}
		var msgs []string
		p, err := dumpProcessFake(t, root, 4242, limit, sink, func(m string) { msgs = append(msgs, m) })
		if err != nil {
			t.Fatal(err)
		}
		gone, err := dumpProcessFake(t, root, 4343, limit, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range sink.order {
			b := bytes.ReplaceAll(sink.files[n], []byte(root), []byte("ROOT"))
			out = append(out, fmt.Sprintf("%s %x", n, sha256.Sum256(b)))
		}
		for _, p := range []any{p, gone, msgs} {
			j, _ := json.Marshal(p)
			out = append(out, strings.ReplaceAll(string(j), root, "ROOT"))
		}
	}
	got := fmt.Sprintf("%x", sha256.Sum256([]byte(strings.Join(out, "\n"))))
	const want = "b36d1b36332ea2e4365b4588eb11dec271c038968f4ef5a1e8aa2eeef9877c15"
	if got != want {
		t.Errorf("dump digest %s, want %s:\n%s", got, want, strings.Join(out, "\n"))
	}
}

// orderedSink keeps the order of the members, as the archive does.
type orderedSink struct {
	*memberSink
	order []string
}

func (o *orderedSink) add(name string, data []byte) error {
	o.order = append(o.order, name)
	return o.memberSink.add(name, data)
}

func (o *orderedSink) begin(name string, size int64) error {
	o.order = append(o.order, name)
	return o.memberSink.begin(name, size)
}

func dumpProcessFake(t *testing.T, root string, pid int, limit uint64, mw memberWriter, progress func(string)) (manifest.Process, error) {
	return dumpProcess(pid, mw, procmem.Options{Root: root, MaxBytes: limit}, progress)
}
