package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/amber-forensics/amber/internal/fixture"
	"github.com/amber-forensics/amber/internal/testenv"
)

// privilegedImage has what an attacker would plant for the examiner who
// extracts as root: a root-owned setuid file, a setgid file, a
// world-writable and a sticky directory owned by another uid.
func privilegedImage() fixture.Image {
	return fixture.Image{Tags: []string{"priv:1"}, Layers: [][]byte{fixture.Layer(
		fixture.Entry{Name: "bin/", Type: '5', Mode: 0o755},
		fixture.Entry{Name: "bin/suid", Body: "#!/bin/sh\nid\n", Mode: 0o4755},
		fixture.Entry{Name: "bin/sgid", Body: "sgid\n", Mode: 0o2755, UID: 1234, GID: 1234},
		fixture.Entry{Name: "pub/", Type: '5', Mode: 0o777, UID: 1234, GID: 1234},
		fixture.Entry{Name: "pub/plain", Body: "plain\n", Mode: 0o644},
		fixture.Entry{Name: "tmp/", Type: '5', Mode: 0o1777},
	)}}
}

// statOf asks stat(1), not Go, for octal mode, uid and gid.
func statOf(t *testing.T, p string) string {
	t.Helper()
	return strings.TrimSpace(testenv.Run(t, "stat", "-c", "%a %u %g", p))
}

type extractJSON struct {
	PreserveAll bool `json:"preserve_all"`
	Files       int  `json:"files"`
	Altered     []struct {
		Path         string `json:"path"`
		CapturedMode string `json:"captured_mode"`
		Mode         string `json:"mode"`
		CapturedUID  int    `json:"captured_uid"`
		CapturedGID  int    `json:"captured_gid"`
		UID          int    `json:"uid"`
		GID          int    `json:"gid"`
	} `json:"altered"`
	NotWritten []struct {
		Path  string `json:"path"`
		Error string `json:"error"`
	} `json:"not_written"`
}

// extractEvents returns the details of the custody log's "extracted"
// events, in order.
func extractEvents(t *testing.T, arch string) []map[string]string {
	t.Helper()
	var evs []map[string]string
	sc := bufio.NewScanner(strings.NewReader(mustAmber(t, "log", "--json", arch)))
	for sc.Scan() {
		var ev struct {
			Action  string            `json:"action"`
			Details map[string]string `json:"details"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if ev.Action == "extracted" {
			evs = append(evs, ev.Details)
		}
	}
	return evs
}

// TestExtractDropsPrivileges: extracted by root, an image's setuid and
// setgid files and world-writable directories come out without those
// bits and owned by root, not by the uid the evidence names; --json and
// the custody log say what was altered. --preserve-all keeps everything
// and the custody log records that it was asked.
func TestExtractDropsPrivileges(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	arch := fixture.Capture(t, dir, "priv", privilegedImage())

	dest := filepath.Join(dir, "safe")
	os.Mkdir(dest, 0o755)
	r := amber(t, "extract", "--json", arch, "images/priv_1/rootfs", dest)
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("extract: exit %d", r.code)
	}
	root := filepath.Join(dest, "rootfs")
	for p, want := range map[string]string{
		"bin/suid":  "755 0 0",
		"bin/sgid":  "755 0 0",
		"pub":       "775 0 0",
		"tmp":       "775 0 0",
		"bin":       "755 0 0",
		"pub/plain": "644 0 0",
	} {
		if got := statOf(t, filepath.Join(root, p)); got != want {
			t.Errorf("%s: stat says %q, want %q", p, got, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "bin/suid")); err != nil || string(b) != "#!/bin/sh\nid\n" {
		t.Errorf("bin/suid: %q %v", b, err)
	}
	var res extractJSON
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("extract --json: %v\n%s", err, r.stdout)
	}
	altered := map[string]string{}
	for _, a := range res.Altered {
		rel, _ := filepath.Rel(root, a.Path)
		altered[rel] = strings.Join([]string{a.CapturedMode, a.Mode, strconv.Itoa(a.CapturedUID), strconv.Itoa(a.CapturedGID), strconv.Itoa(a.UID), strconv.Itoa(a.GID)}, " ")
	}
	for p, want := range map[string]string{
		"bin/suid": "4755 0755 0 0 0 0",
		"bin/sgid": "2755 0755 1234 1234 0 0",
		"pub":      "0777 0775 1234 1234 0 0",
		"tmp":      "1777 0775 0 0 0 0",
	} {
		if altered[p] != want {
			t.Errorf("--json altered %s: %q, want %q", p, altered[p], want)
		}
	}
	if len(res.Altered) != 4 || res.PreserveAll {
		t.Errorf("--json: preserve_all %v, %d altered entries, want 4: %+v", res.PreserveAll, len(res.Altered), res.Altered)
	}
	evs := extractEvents(t, arch)
	if len(evs) != 1 {
		t.Fatalf("custody log has %d extractions, want 1", len(evs))
	}
	if ev := evs[0]; ev["preserve_all"] != "false" || ev["altered"] != "4" || ev["not_written"] != "0" {
		t.Errorf("custody event: %v", ev)
	}

	// --preserve-all: bits and owners as captured, and the log says so.
	kept := filepath.Join(dir, "kept")
	os.Mkdir(kept, 0o755)
	out := mustAmber(t, "extract", "--preserve-all", arch, "images/priv_1/rootfs", kept)
	t.Log(out)
	root = filepath.Join(kept, "rootfs")
	for p, want := range map[string]string{
		"bin/suid":  "4755 0 0",
		"bin/sgid":  "2755 1234 1234",
		"pub":       "777 1234 1234",
		"tmp":       "1777 0 0",
		"pub/plain": "644 0 0",
	} {
		if got := statOf(t, filepath.Join(root, p)); got != want {
			t.Errorf("--preserve-all %s: stat says %q, want %q", p, got, want)
		}
	}
	evs = extractEvents(t, arch)
	if len(evs) != 2 || evs[1]["preserve_all"] != "true" || evs[1]["altered"] != "0" {
		t.Errorf("custody events: %v", evs)
	}
	if log := mustAmber(t, "log", arch); !strings.Contains(log, "preserve_all=true") {
		t.Errorf("amber log does not show --preserve-all:\n%s", log)
	}
}

// TestExtractSkipsLongNames: a name of 300 bytes in one component (legal
// in PAX, longer than ext4's 255) does not stop the extraction of a tree:
// it is skipped and named (stderr, --json), a directory so named is
// skipped with what it holds, the rest is extracted, the extraction is
// recorded with the count, and the exit code (13) says it is incomplete.
func TestExtractSkipsLongNames(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("n", 300)
	img := fixture.Image{Tags: []string{"long:1"}, Layers: [][]byte{fixture.Layer(
		fixture.Entry{Name: "a/", Type: '5', Mode: 0o755},
		fixture.Entry{Name: "a/" + long, Body: "too long for ext4\n"},
		fixture.Entry{Name: "a/z-after", Body: "after the long name\n"},
		fixture.Entry{Name: "d" + long + "/", Type: '5', Mode: 0o755},
		fixture.Entry{Name: "d" + long + "/inside", Body: "under a long directory\n"},
		fixture.Entry{Name: "h/", Type: '5', Mode: 0o755},
		fixture.Entry{Name: "h/a" + long, Body: "linked\n"},
		fixture.Hardlink("h/l1", "h/a"+long),
		fixture.Hardlink("h/l2", "h/a"+long),
		fixture.Entry{Name: "z/", Type: '5', Mode: 0o755},
		fixture.Entry{Name: "z/last", Body: "last\n"},
	)}}
	arch := fixture.Capture(t, dir, "long", img)
	dest := filepath.Join(dir, "dest")
	os.Mkdir(dest, 0o755)
	r := amber(t, "extract", "--json", arch, "images/long_1/rootfs", dest)
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != exitIncomplete {
		t.Fatalf("extract with names too long for the file system: exit %d, want %d", r.code, exitIncomplete)
	}
	root := filepath.Join(dest, "rootfs")
	for _, p := range []string{"a/" + long, "d" + long} {
		if !strings.Contains(r.stderr, filepath.Join(root, p)+": file name too long") {
			t.Errorf("stderr does not name %s", p)
		}
	}
	for p, want := range map[string]string{"a/z-after": "after the long name\n", "z/last": "last\n", "h/l1": "linked\n", "h/l2": "linked\n"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s after the skipped entries: %q %v", p, b, err)
		}
	}
	// The links of a name not written are still one inode.
	if got := testenv.Run(t, "stat", "-c", "%i %h", filepath.Join(root, "h/l1"), filepath.Join(root, "h/l2")); !strings.HasSuffix(strings.Fields(got)[1], "2") || strings.Fields(got)[0] != strings.Fields(got)[2] {
		t.Errorf("h/l1 and h/l2 are not one inode of two links: %q", got)
	}
	got := testenv.Run(t, "find", root, "-printf", "%P\n")
	if strings.Contains(got, long[:200]) {
		t.Errorf("a long name was written:\n%s", got)
	}
	var res extractJSON
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("extract --json: %v\n%s", err, r.stdout)
	}
	if len(res.NotWritten) != 3 || res.NotWritten[0].Path != filepath.Join(root, "a", long) ||
		res.NotWritten[1].Path != filepath.Join(root, "d"+long) || res.NotWritten[2].Path != filepath.Join(root, "h", "a"+long) ||
		!strings.Contains(res.NotWritten[0].Error, "file name too long") || res.Files != 3 {
		t.Errorf("--json: files %d, not_written %+v", res.Files, res.NotWritten)
	}
	evs := extractEvents(t, arch)
	if len(evs) != 1 || evs[0]["not_written"] != "3" || evs[0]["files"] != "3" {
		t.Errorf("custody events: %v", evs)
	}
}

// TestUmountOnlyAmber: amber umount refuses a mount point that is not an
// amber mount (a tmpfs), exit 14, and leaves it mounted; --force unmounts
// it. amber's own mounts unmount without --force, live or stale.
func TestUmountOnlyAmber(t *testing.T) {
	testenv.Root(t)
	testenv.FUSE(t)
	dir := t.TempDir()
	tmpfs := filepath.Join(dir, "tmpfs")
	os.Mkdir(tmpfs, 0o755)
	testenv.Run(t, "mount", "-t", "tmpfs", "amber-test-tmpfs", tmpfs)
	t.Cleanup(func() { exec.Command("umount", "-l", tmpfs).Run() })
	mounted := func(p string) bool { return exec.Command("mountpoint", "-q", p).Run() == nil }

	r := amber(t, "umount", tmpfs)
	if r.code != exitForeignMount || !strings.Contains(r.stderr, "not an amber mount") || !strings.Contains(r.stderr, "--force") {
		t.Errorf("umount of a tmpfs: exit %d %q", r.code, r.stderr)
	}
	if !mounted(tmpfs) {
		t.Fatal("the tmpfs was unmounted without --force")
	}
	mustAmber(t, "umount", "--force", tmpfs)
	if mounted(tmpfs) {
		t.Error("umount --force left the tmpfs mounted")
	}

	arch := fixture.Capture(t, dir, "wh", fixture.WhiteoutImage())
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	mustAmber(t, "mount", "--background", "--no-log", arch, mnt)
	mustAmber(t, "umount", mnt)
	if mounted(mnt) {
		t.Error("amber umount left amber's mount")
	}
	// A stale amber mount (its process killed) is still amber's.
	cmd := exec.Command(amberBin, "mount", "--no-log", arch, mnt)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitMounted(t, mnt)
	cmd.Process.Kill()
	cmd.Wait()
	mustAmber(t, "umount", mnt)
	if mounted(mnt) {
		t.Error("amber umount left a stale amber mount")
	}
}
