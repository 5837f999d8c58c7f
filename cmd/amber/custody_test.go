package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/amber-forensics/amber/internal/testenv"
	"github.com/amber-forensics/amber/manifest"
)

// captureWebapp captures the committed docker-save fixture with the amber
// binary.
func captureWebapp(t *testing.T, arch string, args ...string) {
	t.Helper()
	src := filepath.Join("..", "..", "testdata", "images", "webapp-docker-save.tar")
	mustAmber(t, append([]string{"capture", "image", src, "-o", arch}, args...)...)
}

var headRE = regexp.MustCompile(`custody head (sha256:[0-9a-f]{64})`)

// lastLineSHA256 is the SHA-256 of a file's last line without its newline,
// by coreutils.
func lastLineSHA256(t *testing.T, p string) string {
	t.Helper()
	return "sha256:" + strings.Fields(testenv.Shell(t, fmt.Sprintf("tail -n 1 %q | tr -d '\\n' | sha256sum", p)))[0]
}

// TestCustodyHeadCatchesEditedLastLine: the last line of the custody
// sidecar has no later prev to protect it, so sed turns a recorded
// "verified result=FAILED" into "intact" and the chain still holds. The
// head verify and log print (the last line's SHA-256, checked here with
// tail and sha256sum), noted outside the archive and given back with
// --expect-head, catches it.
func TestCustodyHeadCatchesEditedLastLine(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	side := arch + ".custody.jsonl"
	sum, err := os.ReadFile(arch + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	// A failing verification, recorded in the log as the last line.
	os.WriteFile(arch+".sha256", []byte(strings.Repeat("0", 64)+"  case.tar.zst\n"), 0o600)
	r := amber(t, "verify", arch)
	if r.code != exitTampered {
		t.Fatalf("verify with a wrong .sha256: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	m := headRE.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("verify prints no custody head:\n%s", r.stdout)
	}
	head := m[1]
	if want := lastLineSHA256(t, side); head != want {
		t.Errorf("verify's custody head %s, the sidecar's last line hashes to %s", head, want)
	}
	if b, _ := os.ReadFile(side); !strings.Contains(string(b), `"result":"FAILED (1 problems)"`) {
		t.Fatalf("no failed verification in the log:\n%s", b)
	}
	os.WriteFile(arch+".sha256", sum, 0o600)
	l := amber(t, "log", arch)
	if l.code != 0 || !strings.Contains(l.stdout, "custody head "+head) {
		t.Errorf("log: exit %d, want it to print custody head %s\n%s%s", l.code, head, l.stdout, l.stderr)
	}
	if r := amber(t, "log", "--expect-head", head, arch); r.code != 0 {
		t.Errorf("log --expect-head of the untouched log: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := amber(t, "verify", "--no-log", "--expect-head", head, arch); r.code != 0 {
		t.Errorf("verify --expect-head of the untouched log: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	testenv.Run(t, "sed", "-i", `s/"result":"FAILED (1 problems)"/"result":"intact"/`, side)
	if b, _ := os.ReadFile(side); strings.Contains(string(b), "FAILED") || !strings.Contains(string(b), `"result":"intact"`) {
		t.Fatalf("sed did not edit the log:\n%s", b)
	}
	// The chain alone cannot see it: that is what the head is for.
	if r := amber(t, "log", arch); r.code != 0 || strings.Contains(r.stdout, head) {
		t.Errorf("log of the edited log, no head given: exit %d (want 0, a new head)\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = amber(t, "log", "--expect-head", head, arch)
	if r.code != exitTampered || !strings.Contains(r.stdout+r.stderr, head) {
		t.Errorf("log --expect-head of the edited log: exit %d, want %d naming %s\n%s%s", r.code, exitTampered, head, r.stdout, r.stderr)
	}
	r = amber(t, "verify", "--no-log", "--expect-head", head, arch)
	if r.code != exitTampered || !strings.Contains(r.stdout, "FAIL custody log") || !strings.Contains(r.stdout, head) {
		t.Errorf("verify --expect-head of the edited log: exit %d, want %d and a FAIL of the custody log naming %s\n%s%s", r.code, exitTampered, head, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "the archive's own hashes hold") {
		t.Errorf("verify does not say the archive itself is intact:\n%s", r.stdout)
	}
}

// appendEvent adds a well-chained event of its own making to an archive's
// custody sidecar, as anyone who can write the file could.
func appendEvent(t *testing.T, arch string, ev manifest.Event) {
	t.Helper()
	m := readManifest(t, arch)
	side := arch + ".custody.jsonl"
	evs, head, err := manifest.ParseCustodyFile(side, m.Custody.Head, m.Custody.Events)
	if err != nil {
		t.Fatal(err)
	}
	line, err := manifest.NewChain(head, m.Custody.Events+len(evs)).Append(ev)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(side, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
}

// TestCustodyEventsCheckedAgainstArchive: every event of the sidecar that
// records the archive's SHA-256 (not only "sealed") is checked against the
// file: a forged "verified" event with a correct chain is found.
func TestCustodyEventsCheckedAgainstArchive(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	forged := strings.Repeat("ab", 32)
	appendEvent(t, arch, manifest.Event{Time: time.Now(), Actor: "mallory", Host: "elsewhere", Action: "verified",
		Details: map[string]string{"result": "intact", "sha256": forged, "tool": "amber 0.1.0-dev"}})
	if r := amber(t, "log", arch); r.code != 0 {
		t.Fatalf("the forged event breaks the chain: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := amber(t, "verify", "--no-log", arch)
	if r.code != exitTampered || !strings.Contains(r.stdout, "FAIL custody log seq 4 (verified") || !strings.Contains(r.stdout, forged) {
		t.Errorf("verify of a log with a forged archive hash: exit %d, want %d and a FAIL naming seq 4 and %s\n%s%s", r.code, exitTampered, forged, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "the archive's own hashes hold") {
		t.Errorf("verify does not say the archive itself is intact:\n%s", r.stdout)
	}
}

// TestCustodyTimeOrder: an event dated before the one it follows is
// reported by verify and log, by its seq.
func TestCustodyTimeOrder(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "case.tar.zst")
	captureWebapp(t, arch)
	appendEvent(t, arch, manifest.Event{Time: time.Now().Add(-time.Hour), Actor: "mallory", Host: "elsewhere", Action: "mounted",
		Details: map[string]string{"mountpoint": "/mnt"}})
	r := amber(t, "verify", "--no-log", arch)
	if r.code != exitTampered || !strings.Contains(r.stdout, "FAIL custody log seq 4 (mounted") || !strings.Contains(r.stdout, "before") {
		t.Errorf("verify of events out of time order: exit %d, want %d naming seq 4\n%s%s", r.code, exitTampered, r.stdout, r.stderr)
	}
	r = amber(t, "log", arch)
	if r.code != exitTampered || !strings.Contains(r.stdout+r.stderr, "seq 4 (mounted") {
		t.Errorf("log of events out of time order: exit %d, want %d naming seq 4\n%s%s", r.code, exitTampered, r.stdout, r.stderr)
	}
}

// TestRenamedArchiveWarns: an archive sealed as B and renamed to A with
// its sidecars still verifies (exit 0: its bytes are what was sealed), with
// a warning line naming both names.
func TestRenamedArchiveWarns(t *testing.T) {
	dir := t.TempDir()
	b := filepath.Join(dir, "B.tar.zst")
	captureWebapp(t, b, "--md5")
	a := filepath.Join(dir, "A.tar.zst")
	for _, ext := range []string{"", ".sha256", ".md5", ".custody.jsonl"} {
		if err := os.Rename(b+ext, a+ext); err != nil {
			t.Fatal(err)
		}
	}
	r := amber(t, "verify", a)
	if r.code != 0 || !regexp.MustCompile(`(?m)^WARN .*B\.tar\.zst.*A\.tar\.zst`).MatchString(r.stdout) {
		t.Errorf("verify of a renamed archive: exit %d, want 0 and a WARN line naming B.tar.zst and A.tar.zst\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := amber(t, "verify", "--json", "--no-log", a); r.code != 0 || !strings.Contains(r.stdout, `"warnings": [`) || !strings.Contains(r.stdout, "B.tar.zst") {
		t.Errorf("verify --json of a renamed archive: exit %d, want warnings\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = amber(t, "log", a)
	if r.code != 0 || !regexp.MustCompile(`(?m)^WARN .*B\.tar\.zst.*A\.tar\.zst`).MatchString(r.stdout) {
		t.Errorf("log of a renamed archive: exit %d, want 0 and a WARN line\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A sum file of another archive is still refused.
	os.WriteFile(a+".sha256", []byte(strings.Repeat("1", 64)+"  B.tar.zst\n"), 0o600)
	if r := amber(t, "verify", "--no-log", a); r.code != exitTampered {
		t.Errorf("verify with a .sha256 of another digest: exit %d\n%s", r.code, r.stdout)
	}
}
